"""The kubelet's pod-resources API (gRPC v1 on a unix socket): which container holds which device.

`PodResourcesClient.read()` calls `List` (every pod's containers with their
device-plugin devices and, where the kubelet reports them, their DRA claims'
devices) and `GetAllocatableResources` (every device the kubelet can hand
out) and returns a `KubeletSnapshot` of plain dataclasses. Whatever stands in
the way becomes `PodResourcesUnavailable` with the reason in an operator's
words: no socket (not mounted), no permission (the socket is root's), the
kubelet not answering within the deadline, or an API it does not serve.
`GetAllocatableResources` alone being unimplemented (kubelets before 1.23,
or with its feature gate off) is not a failure: allocatable is then unknown.

The channel is opened on the first read and kept; `close()` closes it.
Nothing here talks to the API server.
"""

from __future__ import annotations

import os
import stat
import threading
from dataclasses import dataclass

import grpc

from proto.podresources.v1 import api_pb2 as pb
from proto.podresources.v1 import api_pb2_grpc as pb_grpc

__all__ = [
    "DEFAULT_SOCKET",
    "SOCKET_ENV",
    "KubeletDevice",
    "KubeletSnapshot",
    "PodResourcesClient",
    "PodResourcesUnavailable",
]

SOCKET_ENV = "AIOS_POD_RESOURCES_SOCKET"
DEFAULT_SOCKET = "/var/lib/kubelet/pod-resources/kubelet.sock"
# What one read may bring back: enough for a node's pods many times over, and
# a bound on what a broken kubelet could make the agent hold.
_MAX_MESSAGE_BYTES = 16 * 1024 * 1024
_MAX_DEVICES = 4096


class PodResourcesUnavailable(Exception):
    """The pod-resources API cannot be read; `reason` says why, for the operator."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class KubeletDevice:
    """One device the kubelet assigned to one container."""

    namespace: str
    pod: str
    container: str
    resource: str  # device plugin resource ("nvidia.com/gpu"), or the DRA driver ("gpu.nvidia.com")
    device_id: str  # device plugin id, or the DRA device name
    claim: str = ""  # DRA: "<namespace>/<name>"
    cdi_devices: tuple[str, ...] = ()  # DRA: the CDI names of the device


@dataclass(frozen=True)
class KubeletSnapshot:
    pods: int
    devices: tuple[KubeletDevice, ...]
    allocatable: dict[str, tuple[str, ...]] | None  # resource -> device ids; None: the kubelet did not say
    truncated: bool = False  # more than _MAX_DEVICES devices: the rest were left out


class PodResourcesClient:
    def __init__(self, socket_path: str = DEFAULT_SOCKET, *, timeout_s: float = 2.0):
        self.socket_path = socket_path
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._channel: grpc.Channel | None = None
        self._stub: pb_grpc.PodResourcesListerStub | None = None

    def read(self) -> KubeletSnapshot:
        with self._lock:
            stub = self._open()
            listed = self._call(stub.List, pb.ListPodResourcesRequest(), "List")
            try:
                allocatable_msg = self._call(
                    stub.GetAllocatableResources, pb.AllocatableResourcesRequest(), "GetAllocatableResources"
                )
                allocatable = _allocatable(allocatable_msg)
            except _Unimplemented:
                allocatable = None
        devices, truncated = _devices(listed)
        return KubeletSnapshot(len(listed.pod_resources), devices, allocatable, truncated)

    def _open(self) -> pb_grpc.PodResourcesListerStub:
        path = self.socket_path
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:
            self._drop()
            raise PodResourcesUnavailable(
                f"no kubelet pod-resources socket at {path} (mount /var/lib/kubelet/pod-resources read-only: docs/rbac.md)"
            ) from None
        except OSError as exc:
            self._drop()
            raise PodResourcesUnavailable(f"cannot reach {path}: {exc.strerror or exc}") from exc
        if not stat.S_ISSOCK(mode):
            self._drop()
            raise PodResourcesUnavailable(f"{path} is not a socket")
        if not os.access(path, os.W_OK):
            self._drop()
            raise PodResourcesUnavailable(
                f"no permission to connect to {path}: the kubelet's socket is root's, "
                "so the agent must run as uid 0 (docs/rbac.md)"
            )
        if self._stub is None:
            self._channel = grpc.insecure_channel(
                f"unix://{path}",
                options=[("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES), ("grpc.enable_http_proxy", 0)],
            )
            self._stub = pb_grpc.PodResourcesListerStub(self._channel)
        return self._stub

    def _call(self, method, request, name: str):
        try:
            return method(request, timeout=self.timeout_s)
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            details = (exc.details() if hasattr(exc, "details") else "") or ""
            if code == grpc.StatusCode.UNIMPLEMENTED:
                if name == "List":
                    raise PodResourcesUnavailable(
                        f"the kubelet at {self.socket_path} does not serve pod-resources v1 List "
                        "(Kubernetes 1.20 or later needed)"
                    ) from exc
                raise _Unimplemented(name) from exc
            self._drop()  # a kubelet restart leaves a dead channel: dial again next time
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise PodResourcesUnavailable(
                    f"the kubelet did not answer {name} within {self.timeout_s:g} s on {self.socket_path}"
                ) from exc
            if code == grpc.StatusCode.UNAVAILABLE:
                raise PodResourcesUnavailable(f"the kubelet is not answering on {self.socket_path}: {details}") from exc
            raise PodResourcesUnavailable(
                f"pod-resources {name} failed: {code.name if code else 'error'}: {details}"
            ) from exc

    def _drop(self) -> None:
        if self._channel is not None:
            self._channel.close()
        self._channel = None
        self._stub = None

    def close(self) -> None:
        with self._lock:
            self._drop()


class _Unimplemented(Exception):
    pass


def _devices(listed: pb.ListPodResourcesResponse) -> tuple[tuple[KubeletDevice, ...], bool]:
    found: list[KubeletDevice] = []
    for pod in listed.pod_resources:
        for container in pod.containers:
            for devices in container.devices:
                for device_id in devices.device_ids:
                    found.append(KubeletDevice(pod.namespace, pod.name, container.name, devices.resource_name, device_id))
            for dynamic in container.dynamic_resources:
                claim = f"{dynamic.claim_namespace}/{dynamic.claim_name}"
                for resource in dynamic.claim_resources:
                    found.append(
                        KubeletDevice(
                            pod.namespace,
                            pod.name,
                            container.name,
                            resource.driver_name,
                            resource.device_name,
                            claim,
                            tuple(cdi.name for cdi in resource.cdi_devices),
                        )
                    )
            if len(found) > _MAX_DEVICES:
                return tuple(found[:_MAX_DEVICES]), True
    return tuple(found), False


def _allocatable(msg: pb.AllocatableResourcesResponse) -> dict[str, tuple[str, ...]]:
    by_resource: dict[str, list[str]] = {}
    for devices in msg.devices:
        by_resource.setdefault(devices.resource_name, []).extend(devices.device_ids)
    return {name: tuple(ids) for name, ids in by_resource.items()}

"""A kubelet pod-resources v1 server on a unix socket, for tests (the real gRPC, the published API).

`PodResourcesServer(socket_path)` serves `List`, `GetAllocatableResources` and
`Get` from what the test sets (`pods`, `allocatable`); `unimplemented` makes
the named methods answer UNIMPLEMENTED, as an old kubelet would; `calls`
counts the calls by method. `start()` / `stop()`.

`pod(...)`, `container(...)`, `devices(...)` and `dra(...)` build the
messages tersely.
"""

from __future__ import annotations

import threading
from collections import Counter
from concurrent import futures

import grpc

from proto.podresources.v1 import api_pb2 as pb
from proto.podresources.v1 import api_pb2_grpc as pb_grpc

__all__ = ["PodResourcesServer", "container", "devices", "dra", "pod"]


def devices(resource: str, *ids: str, numa: int | None = None) -> pb.ContainerDevices:
    topology = pb.TopologyInfo(nodes=[pb.NUMANode(ID=numa)]) if numa is not None else None
    return pb.ContainerDevices(resource_name=resource, device_ids=list(ids), topology=topology)


def dra(claim_namespace: str, claim_name: str, driver: str, pool: str, *device_names: str, cdi=()) -> pb.DynamicResource:
    return pb.DynamicResource(
        claim_namespace=claim_namespace,
        claim_name=claim_name,
        claim_resources=[
            pb.ClaimResource(
                driver_name=driver,
                pool_name=pool,
                device_name=name,
                cdi_devices=[pb.CDIDevice(name=c) for c in cdi],
            )
            for name in device_names
        ],
    )


def container(name: str, *device_groups: pb.ContainerDevices, dynamic=()) -> pb.ContainerResources:
    return pb.ContainerResources(name=name, devices=list(device_groups), dynamic_resources=list(dynamic))


def pod(namespace: str, name: str, *containers: pb.ContainerResources) -> pb.PodResources:
    return pb.PodResources(namespace=namespace, name=name, containers=list(containers))


class _Servicer(pb_grpc.PodResourcesListerServicer):
    def __init__(self, server: PodResourcesServer):
        self._server = server

    def _check(self, method: str, context) -> None:
        self._server.calls[method] += 1
        if method in self._server.unimplemented:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, f"unknown method {method}")

    def List(self, request, context):
        self._check("List", context)
        with self._server.lock:
            return pb.ListPodResourcesResponse(pod_resources=list(self._server.pods))

    def GetAllocatableResources(self, request, context):
        self._check("GetAllocatableResources", context)
        with self._server.lock:
            return pb.AllocatableResourcesResponse(devices=list(self._server.allocatable))

    def Get(self, request, context):
        self._check("Get", context)
        with self._server.lock:
            for p in self._server.pods:
                if p.name == request.pod_name and p.namespace == request.pod_namespace:
                    return pb.GetPodResourcesResponse(pod_resources=p)
        context.abort(grpc.StatusCode.NOT_FOUND, f"pod {request.pod_namespace}/{request.pod_name} not found")


class PodResourcesServer:
    def __init__(self, socket_path: str):
        self.socket_path = socket_path
        self.lock = threading.Lock()
        self.pods: list[pb.PodResources] = []
        self.allocatable: list[pb.ContainerDevices] = []
        self.unimplemented: set[str] = set()
        self.calls: Counter[str] = Counter()
        self._server: grpc.Server | None = None

    def set_pods(self, *pods: pb.PodResources) -> None:
        with self.lock:
            self.pods = list(pods)

    def set_allocatable(self, *device_groups: pb.ContainerDevices) -> None:
        with self.lock:
            self.allocatable = list(device_groups)

    def start(self) -> PodResourcesServer:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        pb_grpc.add_PodResourcesListerServicer_to_server(_Servicer(self), server)
        if server.add_insecure_port(f"unix://{self.socket_path}") == 0:
            raise RuntimeError(f"cannot listen on unix://{self.socket_path}")
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None).wait(5)
            self._server = None

    def __enter__(self) -> PodResourcesServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

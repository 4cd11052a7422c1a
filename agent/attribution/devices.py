"""Which GPU (and MIG device) a device the kubelet names is. Pure.

How the kubelet names GPUs depends on who allocated them:

- NVIDIA's device plugin (`nvidia.com/gpu`, with MIG `nvidia.com/mig-<profile>`
  in its "mixed" strategy, or MIG devices as `nvidia.com/gpu` in "single"):
  the GPU or MIG UUID by default, the NVML index ("0"; MIG "0:1", GPU index
  and MIG device index) with `DEVICE_ID_STRATEGY=index`; a time-sliced
  (shared) GPU's replicas carry a "::<n>" suffix ("GPU-...::3");
- DRA (driver "gpu.nvidia.com"): the device name of its ResourceSlice, "gpu-0"
  for GPU 0 (a MIG device: "gpu-0-mig-..."), plus the CDI device names the
  container gets, which may carry a UUID.

A device that resolves to none of the node's GPUs keeps `gpu_uuid` empty;
a device of another kind (a NIC, an FPGA) is not a GPU allocation at all
(`is_gpu_resource`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from agent.attribution.pod_resources import KubeletDevice
from proto.telemetry.v1.readings import DeviceAllocation, GpuSample

__all__ = ["GpuTargets", "allocations", "is_gpu_resource", "resolve"]

_UUID = re.compile(r"(?:GPU|MIG)-[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")
_DRA_NAME = re.compile(r"gpu-(\d+)(?:-mig-.*)?")
_INDEX = re.compile(r"(\d+)(?::(\d+))?")


@dataclass(frozen=True)
class GpuTargets:
    """The node's GPUs and MIG devices, by the names the kubelet may use."""

    by_uuid: dict[str, tuple[str, str]]  # GPU or MIG UUID -> (gpu uuid, mig uuid)
    by_index: dict[str, tuple[str, str]]  # "0", "0:1" -> (gpu uuid, mig uuid)

    @classmethod
    def of(cls, gpus: Iterable[GpuSample]) -> GpuTargets:
        """From a sample's GPUs (their MIG devices: `migs`)."""
        by_uuid: dict[str, tuple[str, str]] = {}
        by_index: dict[str, tuple[str, str]] = {}
        for gpu in gpus:
            if not gpu.uuid:
                continue
            by_uuid[gpu.uuid] = (gpu.uuid, "")
            by_index[str(gpu.index)] = (gpu.uuid, "")
            for mig in gpu.migs:
                by_uuid[mig.uuid] = (gpu.uuid, mig.uuid)
                by_index[f"{gpu.index}:{mig.index}"] = (gpu.uuid, mig.uuid)
        return cls(by_uuid, by_index)


def is_gpu_resource(device: KubeletDevice) -> bool:
    """A device-plugin resource or DRA driver of NVIDIA GPUs."""
    resource = device.resource
    return resource.startswith("nvidia.com/") or resource == "gpu.nvidia.com" or resource.endswith(".nvidia.com")


def resolve(device: KubeletDevice, targets: GpuTargets) -> tuple[str, str]:
    """(gpu uuid, mig uuid) of the device; ("", "") when it is none of the node's."""
    device_id = device.device_id.partition("::")[0]  # a time-sliced replica is its GPU
    found = targets.by_uuid.get(device_id)
    if found is not None:
        return found
    if _INDEX.fullmatch(device_id):
        return targets.by_index.get(device_id, ("", ""))
    if device.claim:
        for name in device.cdi_devices:
            for uuid in _UUID.findall(name):
                if uuid in targets.by_uuid:
                    return targets.by_uuid[uuid]
            _, _, cdi_id = name.rpartition("=")
            if cdi_id in targets.by_uuid:
                return targets.by_uuid[cdi_id]
            if cdi_id.isdigit() and cdi_id in targets.by_index:
                return targets.by_index[cdi_id]
        dra = _DRA_NAME.fullmatch(device_id)
        if dra:
            return targets.by_index.get(dra.group(1), ("", ""))
    for uuid in _UUID.findall(device_id):  # e.g. the R470 form "MIG-GPU-<uuid>/<gi>/<ci>"
        if uuid in targets.by_uuid:
            return targets.by_uuid[uuid]
    return "", ""


def allocations(devices: Iterable[KubeletDevice], targets: GpuTargets) -> tuple[DeviceAllocation, ...]:
    """The GPU devices among the kubelet's, resolved, in a stable order."""
    found = []
    for device in devices:
        gpu_uuid, mig_uuid = resolve(device, targets)
        if not gpu_uuid and not is_gpu_resource(device):
            continue  # not a GPU (a NIC, ...)
        found.append(
            DeviceAllocation(
                namespace=device.namespace,
                pod=device.pod,
                container=device.container,
                resource=device.resource,
                device_id=device.device_id,
                gpu_uuid=gpu_uuid,
                mig_uuid=mig_uuid,
                claim=device.claim,
            )
        )
    found.sort(key=lambda a: (a.gpu_uuid, a.mig_uuid, a.namespace, a.pod, a.container, a.device_id))
    return tuple(found)

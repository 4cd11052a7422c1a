"""Pure views of a sample's `Attribution`, shared by the agent and the aggregator.

One definition of "who is on this GPU" for every consumer (the metrics, the
stability policies' `nodes_data`, the queries):

- `holders`: the containers the kubelet assigned each device to, by device
  key (the GPU UUID for a whole GPU, the MIG UUID for a MIG device);
- `sole_holder`: the one container holding a device, or none when nobody or
  several do (a time-sliced GPU, a GPU split into MIG devices): the labels a
  per-GPU series carries;
- `owners_by_pid`: each GPU process's owner.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from proto.telemetry.v1.readings import Attribution, DeviceAllocation, GpuSample, ProcessOwner

__all__ = ["NO_HOLDER", "Holder", "gpu_keys", "holders", "owners_by_pid", "sole_holder"]


@dataclass(frozen=True, order=True)
class Holder:
    namespace: str
    pod: str
    container: str


NO_HOLDER = Holder("", "", "")


def holders(attribution: Attribution | None) -> dict[str, tuple[DeviceAllocation, ...]]:
    """Allocations by device key, in the allocations' (stable) order."""
    found: dict[str, list[DeviceAllocation]] = {}
    if attribution is not None:
        for allocation in attribution.allocations:
            key = allocation.mig_uuid or allocation.gpu_uuid
            if key:
                found.setdefault(key, []).append(allocation)
    return {key: tuple(allocations) for key, allocations in found.items()}


def sole_holder(allocations: Iterable[DeviceAllocation]) -> Holder:
    """The one container holding the device, else NO_HOLDER."""
    distinct = {Holder(a.namespace, a.pod, a.container) for a in allocations}
    return next(iter(distinct)) if len(distinct) == 1 else NO_HOLDER


def owners_by_pid(attribution: Attribution | None) -> dict[int, ProcessOwner]:
    if attribution is None:
        return {}
    return {pid: owner for owner in attribution.owners for pid in owner.pids}


def gpu_keys(gpu: GpuSample) -> tuple[str, ...]:
    """The GPU's device keys: its UUID and its MIG devices' UUIDs."""
    return (gpu.uuid, *(mig.uuid for mig in gpu.migs))

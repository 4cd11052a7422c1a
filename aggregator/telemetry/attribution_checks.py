"""Checks on the "who is on the GPU" parts of a sample, before it is stored. Pure.

What `wire_checks` does not already cover (every double finite and
non-negative): how many processes, MIG devices, allocations and owners a
sample may carry, how long their names may be, that kinds and scopes are the
known ones and that percentages stay within 0..100. Bounds are generous for a
real node (a GPU runs at most a few hundred processes, MIG makes at most 7
devices, Kubernetes names are at most 253 characters) and stop a broken or
hostile agent from making the aggregator hold unbounded data.
Returns None when acceptable, else the reason with the field path.
"""

from __future__ import annotations

from proto.telemetry.v1 import telemetry_pb2 as pb
from proto.telemetry.v1.readings import OWNER_SCOPES, PROCESS_KINDS

__all__ = ["MAX_ALLOCATIONS", "MAX_OWNERS", "MAX_PIDS", "MAX_PROCESSES_PER_GPU", "check_attribution"]

MAX_PROCESSES_PER_GPU = 1024
MAX_MIGS_PER_GPU = 16
MAX_ALLOCATIONS = 4096
MAX_OWNERS = 4096
MAX_PIDS = 16384  # over all owners
_NAME = 253  # a Kubernetes name, a resource name
_ID = 128  # a container id, a pod UID, a UUID
_DEVICE_ID = 512
_REASON = 1024
_KINDS = frozenset(PROCESS_KINDS)
_SCOPES = frozenset(OWNER_SCOPES)


def check_attribution(sample: pb.NodeSample) -> str | None:
    for i, gpu in enumerate(sample.gpus):
        problem = _check_gpu(gpu)
        if problem:
            return f"sample.gpus[{i}].{problem}"
    if sample.HasField("attribution"):
        problem = _check_attribution(sample.attribution)
        if problem:
            return f"sample.attribution.{problem}"
    return None


def _check_gpu(gpu: pb.GpuSample) -> str | None:
    processes = gpu.processes
    if len(processes) > MAX_PROCESSES_PER_GPU:
        return f"processes: {len(processes)} processes, at most {MAX_PROCESSES_PER_GPU}"
    for k, process in enumerate(processes):
        if process.kind not in _KINDS:
            return f"processes[{k}].kind: {process.kind[:40]!r} is not one of {', '.join(PROCESS_KINDS)}"
        if len(process.mig_uuid) > _ID:
            return f"processes[{k}].mig_uuid: longer than {_ID} characters"
        if process.sm_utilization_pct > 100 or process.memory_utilization_pct > 100:
            return f"processes[{k}]: a utilization above 100 %"
    if len(gpu.migs) > MAX_MIGS_PER_GPU:
        return f"migs: {len(gpu.migs)} MIG devices, at most {MAX_MIGS_PER_GPU}"
    for k, mig in enumerate(gpu.migs):
        if len(mig.uuid) > _ID:
            return f"migs[{k}].uuid: longer than {_ID} characters"
        if mig.utilization_gpu_pct > 100:
            return f"migs[{k}].utilization_gpu_pct: {mig.utilization_gpu_pct} is above 100"
        if mig.HasField("memory_total_bytes") and mig.memory_used_bytes > mig.memory_total_bytes:
            return f"migs[{k}].memory_used_bytes: more than memory_total_bytes"
    return None


def _check_attribution(attribution: pb.Attribution) -> str | None:
    if len(attribution.reason) > _REASON:
        return f"reason: longer than {_REASON} characters"
    if len(attribution.allocations) > MAX_ALLOCATIONS:
        return f"allocations: {len(attribution.allocations)}, at most {MAX_ALLOCATIONS}"
    for k, allocation in enumerate(attribution.allocations):
        for name, limit in (
            ("namespace", _NAME), ("pod", _NAME), ("container", _NAME), ("resource", _NAME),
            ("device_id", _DEVICE_ID), ("gpu_uuid", _ID), ("mig_uuid", _ID), ("claim", 2 * _NAME + 1),
        ):  # fmt: skip
            if len(getattr(allocation, name)) > limit:
                return f"allocations[{k}].{name}: longer than {limit} characters"
    if len(attribution.owners) > MAX_OWNERS:
        return f"owners: {len(attribution.owners)}, at most {MAX_OWNERS}"
    pids = 0
    for k, owner in enumerate(attribution.owners):
        if owner.scope not in _SCOPES:
            return f"owners[{k}].scope: {owner.scope[:40]!r} is not one of {', '.join(OWNER_SCOPES)}"
        for name, limit in (
            ("namespace", _NAME), ("pod", _NAME), ("container", _NAME), ("pod_uid", _ID), ("container_id", _ID),
            ("runtime", _ID),
        ):  # fmt: skip
            if len(getattr(owner, name)) > limit:
                return f"owners[{k}].{name}: longer than {limit} characters"
        pids += len(owner.pids)
        if pids > MAX_PIDS:
            return f"owners[{k}].pids: more than {MAX_PIDS} pids in all"
    for k, count in enumerate(attribution.allocatable):
        if len(count.resource) > _NAME:
            return f"allocatable[{k}].resource: longer than {_NAME} characters"
    return None

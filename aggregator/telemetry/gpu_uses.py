"""Which pods are on which GPUs, across the cluster, from each node's latest sample. Pure.

A `GpuUse` is one container on one GPU (or one MIG device of it): there
because the kubelet assigned it the device (`allocated`), because its
processes run there (`pids`, `used_memory_bytes`), or both. Processes whose
pod could not be named (docs/attribution.md) appear with the pod's UID and
empty names; host processes and containers outside Kubernetes are not pods
and do not appear. The answers of "which GPUs does pod P use"
(`uses_of_pod`) and "which pods use GPU G" (`uses_of_gpu`) are these uses,
filtered, in a stable order.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from aggregator.telemetry.model import NodeState
from proto.telemetry.v1.attribution import owners_by_pid

__all__ = ["GpuUse", "node_gpu_uses", "uses_of_gpu", "uses_of_pod"]


@dataclass(frozen=True)
class GpuUse:
    node_id: str
    gpu_index: int
    gpu_uuid: str
    mig_uuid: str
    namespace: str
    pod: str
    container: str
    allocated: bool
    pids: tuple[int, ...] = ()
    used_memory_bytes: int | None = None  # of its processes; None where NVML did not tell
    resource: str = ""
    claim: str = ""
    pod_uid: str = ""


def node_gpu_uses(state: NodeState) -> list[GpuUse]:
    sample = state.latest
    if sample is None or sample.attribution is None:
        return []
    attribution = sample.attribution
    index_of = {g.uuid: g.index for g in sample.gpus}
    owners = owners_by_pid(attribution)
    # (gpu uuid, mig uuid, namespace, pod, container, pod uid) -> [allocation or None, pids, memory]
    uses: dict[tuple, list] = {}
    for allocation in attribution.allocations:
        if allocation.gpu_uuid not in index_of:
            continue
        key = (allocation.gpu_uuid, allocation.mig_uuid, allocation.namespace, allocation.pod, allocation.container, "")
        uses.setdefault(key, [allocation, [], None])
    for gpu in sample.gpus:
        for process in gpu.processes:
            owner = owners.get(process.pid)
            if owner is None or owner.scope != "pod":
                continue
            named = bool(owner.pod)
            key = (gpu.uuid, process.mig_uuid, owner.namespace, owner.pod, owner.container, "" if named else owner.pod_uid)
            use = uses.get(key)
            if use is None and named:
                # its pod holds the device under another container's name: count it there
                use = next((v for k, v in uses.items() if k[:4] == key[:4] and v[0] is not None), None)
            if use is None:
                use = uses[key] = [None, [], None]
            use[1].append(process.pid)
            if process.used_memory_bytes is not None:
                use[2] = (use[2] or 0) + process.used_memory_bytes
    found = []
    uid_of = {(o.namespace, o.pod): o.pod_uid for o in attribution.owners if o.pod}
    for (gpu_uuid, mig_uuid, namespace, pod, container, pod_uid), (allocation, pids, memory) in uses.items():
        found.append(
            GpuUse(
                node_id=state.node_id,
                gpu_index=index_of[gpu_uuid],
                gpu_uuid=gpu_uuid,
                mig_uuid=mig_uuid,
                namespace=namespace,
                pod=pod,
                container=container,
                allocated=allocation is not None,
                pids=tuple(sorted(pids)),
                used_memory_bytes=memory,
                resource=allocation.resource if allocation is not None else "",
                claim=allocation.claim if allocation is not None else "",
                pod_uid=pod_uid or uid_of.get((namespace, pod), ""),
            )
        )
    found.sort(key=lambda u: (u.node_id, u.gpu_index, u.mig_uuid, u.namespace, u.pod, u.container, u.pod_uid))
    return found


def uses_of_pod(states: Iterable[NodeState], namespace: str, pod: str) -> list[GpuUse]:
    """The GPUs pod `namespace/pod` uses (any namespace when `namespace` is empty)."""
    return [
        use
        for state in sorted(states, key=lambda s: s.node_id)
        for use in node_gpu_uses(state)
        if use.pod == pod and (not namespace or use.namespace == namespace)
    ]


def uses_of_gpu(
    states: Iterable[NodeState], *, gpu_uuid: str = "", node: str = "", gpu_index: int | None = None
) -> list[GpuUse] | None:
    """The pods on a GPU (by GPU or MIG UUID, or by node id or name and GPU index); None: no such GPU."""
    found_gpu = False
    uses = []
    for state in sorted(states, key=lambda s: s.node_id):
        if gpu_uuid:
            gpus = {g.uuid for g in state.inventory.gpus}
            migs = {m.uuid for g in state.inventory.gpus for m in g.mig_devices}
            if state.latest is not None:
                gpus |= {g.uuid for g in state.latest.gpus}
                migs |= {m.uuid for g in state.latest.gpus for m in g.migs}
            if gpu_uuid not in gpus and gpu_uuid not in migs:
                continue
            found_gpu = True
            uses += [u for u in node_gpu_uses(state) if gpu_uuid in (u.gpu_uuid, u.mig_uuid)]
        else:
            if node not in (state.node_id, state.inventory.node_name):
                continue
            indexes = {g.index for g in state.inventory.gpus}
            if state.latest is not None:
                indexes |= {g.index for g in state.latest.gpus}
            if gpu_index not in indexes:
                continue
            found_gpu = True
            uses += [u for u in node_gpu_uses(state) if u.gpu_index == gpu_index]
    return uses if found_gpu else None

"""`nodes_data`: what a stability policy (and the network's controller) reads about each node.

Pure functions from the registry's `NodeState`s to the JSON-ready entries of
docs/network-formats.md §5, plus what the agents measure beyond that shape. Units:

- sizes are MB (1024*1024 bytes), like everywhere in the network's formats;
- `memory.allocatable` is the memory the host reports *available* (what a new
  workload could still get), `disk.allocatable` the free space of the host's
  root filesystem; `usage_percent` is `100 * (total - allocatable) / total`;
- `cpu_utilization_percent` and `gpus[].utilization` are percent (0..100);
- times are unix seconds; `age_s`/`duration_s` are seconds before `now`, so a
  policy needs no clock of its own.

A value that was not measured is `null`, never a made-up 0.

Beyond the contract's keys every entry carries `state` (`healthy`,
`unhealthy` or `stale`: `status` keeps the contract's two values and a stale
node is `unhealthy` there), `stale`, `last_seen`, `seconds_since_seen`,
`gpu_count`, `nvml_status`, and per GPU `uuid`, `name`, `lost` (and `lost_reason`,
both from the one GPU health rule, `proto/health/gpu_rule.py`), `temperature_c`,
`power_draw_w` and `health`: XIDs (code, count, first/last time, age),
uncorrectable ECC counts, row-remap pending/failure, and the throttle reasons
in force with how long they have lasted (see `ThrottleTracker`).

Who is on each GPU (docs/attribution.md), where the agent attributes:
per GPU `pods` (the containers the kubelet assigned it, or one of its MIG
devices, to), `processes` (pid, kind, `used_memory_mb`, `sm_utilization` and
`memory_utilization` percent, `mig_uuid`, and the owner: `scope`, `namespace`,
`pod`, `container`, `pod_uid`, `container_id`), `migs` (each MIG device's
memory, utilization and pods), `allocated` (null where the kubelet could not
be read) and `in_use` (a process runs on it); per node `gpu_attribution`:
whether the kubelet answered (`available`, `reason`, `refreshed_at`,
`age_s`), what it can allocate (`allocatable` by resource), and the counts
`gpus_allocated`, `gpus_in_use`, `gpus_allocated_idle` (allocated, nothing
running) and `gpus_in_use_unallocated` (running with no pod given it). An
agent that does not attribute leaves `gpu_attribution` null and the lists empty.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from aggregator.telemetry.model import NodeState
from proto.health.gpu_rule import lost_reason
from proto.telemetry.v1.attribution import owners_by_pid
from proto.telemetry.v1.readings import MIB, Attribution, DeviceAllocation, GpuInventory, GpuSample, HealthEvent

__all__ = ["ThrottleKey", "ThrottleTracker", "build_node_entry", "build_nodes_data", "healthy_node_ids"]

# (node_id, gpu_index, reason)
ThrottleKey = tuple[str, int, str]


@dataclass
class ThrottleTracker:
    """Remembers since when each throttle reason has been in force on each GPU.

    A sample only says which reasons are active *now*; how long one has lasted
    needs memory across samples. Feed it every node's latest sample (the
    checker does so on each check and on each health event): a reason seen for
    the first time starts at that sample's timestamp, a reason that is gone is
    forgotten. Resolution is therefore the feeding interval.
    """

    since: dict[ThrottleKey, float] = field(default_factory=dict)
    _seen_sample: dict[str, float] = field(default_factory=dict)

    def observe(self, states: Iterable[NodeState]) -> None:
        present_nodes = set()
        for state in states:
            present_nodes.add(state.node_id)
            sample = state.latest
            if sample is None or self._seen_sample.get(state.node_id) == sample.timestamp:
                continue
            self._seen_sample[state.node_id] = sample.timestamp
            active = {
                (state.node_id, gpu.index, reason)
                for gpu in sample.gpus
                for reason in gpu.throttle_reasons
            }
            for key in [k for k in self.since if k[0] == state.node_id and k not in active]:
                del self.since[key]
            for key in active:
                self.since.setdefault(key, sample.timestamp)
        for key in [k for k in self.since if k[0] not in present_nodes]:
            del self.since[key]
        for node_id in [n for n in self._seen_sample if n not in present_nodes]:
            del self._seen_sample[node_id]


def build_nodes_data(
    states: Iterable[NodeState], now: float, throttle_since: dict[ThrottleKey, float] | None = None
) -> list[dict]:
    """One entry per node, sorted by node id."""
    since = throttle_since or {}
    return [build_node_entry(s, now, since) for s in sorted(states, key=lambda s: s.node_id)]


def healthy_node_ids(nodes_data: Iterable[dict]) -> list[str]:
    return [entry["node_id"] for entry in nodes_data if entry["state"] == "healthy"]


def build_node_entry(state: NodeState, now: float, throttle_since: dict[ThrottleKey, float]) -> dict:
    sample = state.latest
    host = sample.host if sample is not None else None
    inventory_host = state.inventory.host

    memory_total = _first(host.memory_total_mb if host else None, inventory_host.memory_total_mb if inventory_host else None)
    memory_free = host.memory_available_mb if host else None
    disk_total = host.fs_total_mb if host else None
    disk_free = (
        (host.fs_total_bytes - host.fs_used_bytes) // MIB  # from the bytes: rounded once
        if host is not None and host.fs_total_bytes is not None and host.fs_used_bytes is not None
        else None
    )

    gpus = _gpu_entries(state, now, throttle_since)
    attribution = sample.attribution if sample is not None else None
    _add_gpu_use(gpus, state, attribution)
    stale = state.status == "stale"
    state_name = "stale" if stale else ("unhealthy" if state.status != "healthy" or any(g["lost"] for g in gpus) else "healthy")
    return {
        "node_id": state.node_id,
        "status": "healthy" if state_name == "healthy" else "unhealthy",
        "state": state_name,
        "stale": stale,
        "last_seen": state.last_seen,
        "seconds_since_seen": _round(max(0.0, now - state.last_seen)),
        "cpu_utilization_percent": _round(host.cpu_percent) if host else None,
        "memory": _capacity(memory_total, memory_free),
        "disk": _capacity(disk_total, disk_free),
        "gpu_count": len(gpus),
        "nvml_status": state.inventory.nvml_status,
        "gpu_attribution": _attribution_entry(attribution, gpus, now) if attribution is not None else None,
        "gpus": gpus,
    }


_MB = 1024 * 1024


def _add_gpu_use(gpus: list[dict], state: NodeState, attribution: Attribution | None) -> None:
    """Each GPU entry's pods, processes, MIG devices, `allocated` and `in_use`."""
    samples = {g.uuid: g for g in state.latest.gpus} if state.latest is not None else {}
    profiles = {m.uuid: m.profile for g in state.inventory.gpus for m in g.mig_devices}
    by_gpu: dict[str, list[DeviceAllocation]] = {}
    owners = {}
    if attribution is not None:
        for allocation in attribution.allocations:
            by_gpu.setdefault(allocation.gpu_uuid, []).append(allocation)
        owners = owners_by_pid(attribution)
    for entry in gpus:
        sample = samples.get(entry["uuid"])
        allocations = by_gpu.get(entry["uuid"], [])
        processes = sample.processes if sample is not None else ()
        entry["pods"] = [_pod_entry(a) for a in allocations]
        entry["processes"] = [_process_entry(p, owners.get(p.pid)) for p in processes]
        entry["migs"] = [_mig_entry(m, profiles.get(m.uuid, ""), allocations) for m in sample.migs] if sample else []
        entry["allocated"] = bool(allocations) if attribution is not None and attribution.available else None
        if processes:
            entry["in_use"] = True
        elif sample is not None and sample.compute_processes is not None:
            entry["in_use"] = sample.compute_processes > 0  # an agent that lists no processes still counts them
        else:
            entry["in_use"] = None


def _pod_entry(allocation: DeviceAllocation) -> dict:
    return {
        "namespace": allocation.namespace,
        "pod": allocation.pod,
        "container": allocation.container,
        "resource": allocation.resource,
        "mig_uuid": allocation.mig_uuid,
        "claim": allocation.claim,
    }


def _process_entry(process, owner) -> dict:
    return {
        "pid": process.pid,
        "kind": process.kind,
        "used_memory_mb": None if process.used_memory_bytes is None else process.used_memory_bytes // _MB,
        "sm_utilization": process.sm_utilization_pct,
        "memory_utilization": process.memory_utilization_pct,
        "mig_uuid": process.mig_uuid,
        "scope": owner.scope if owner is not None else "unknown",
        "namespace": owner.namespace if owner is not None else "",
        "pod": owner.pod if owner is not None else "",
        "container": owner.container if owner is not None else "",
        "pod_uid": owner.pod_uid if owner is not None else "",
        "container_id": owner.container_id if owner is not None else "",
    }


def _mig_entry(mig, profile: str, allocations: list[DeviceAllocation]) -> dict:
    total = None if mig.memory_total_bytes is None else mig.memory_total_bytes // _MB
    used = None if mig.memory_used_bytes is None else mig.memory_used_bytes // _MB
    return {
        "index": mig.index,
        "uuid": mig.uuid,
        "profile": profile,
        "memory": {
            "total": total,
            "used": used,
            "usage_percent": round(100.0 * used / total, 2) if total and used is not None else None,
        },
        "utilization": mig.utilization_gpu_pct,
        "pods": [_pod_entry(a) for a in allocations if a.mig_uuid == mig.uuid],
    }


def _attribution_entry(attribution: Attribution, gpus: list[dict], now: float) -> dict:
    allocated = [g for g in gpus if g["allocated"]]
    in_use = [g for g in gpus if g["in_use"]]
    return {
        "available": attribution.available,
        "reason": attribution.reason,
        "refreshed_at": attribution.refreshed_at,
        "age_s": _round(max(0.0, now - attribution.refreshed_at)) if attribution.refreshed_at is not None else None,
        "pods": attribution.pods,
        "allocatable": {c.resource: c.allocatable for c in attribution.allocatable},
        "gpus_allocated": len(allocated) if attribution.available else None,
        "gpus_in_use": len(in_use),
        "gpus_allocated_idle": sum(1 for g in allocated if not g["in_use"]) if attribution.available else None,
        "gpus_in_use_unallocated": sum(1 for g in in_use if not g["allocated"]) if attribution.available else None,
    }


def _capacity(total: int | None, free: int | None) -> dict:
    usage = None
    if total and free is not None:
        usage = _round(100.0 * (total - free) / total)
    return {"total": total, "allocatable": free, "usage_percent": usage}


def _gpu_entries(state: NodeState, now: float, throttle_since: dict[ThrottleKey, float]) -> list[dict]:
    samples = {g.index: g for g in state.latest.gpus} if state.latest is not None else {}
    inventory = {g.index: g for g in state.inventory.gpus}
    events_by_gpu: dict[int, list[HealthEvent]] = {}
    for event in state.health_events:
        if event.gpu_index is not None:
            events_by_gpu.setdefault(event.gpu_index, []).append(event)
    indexes = sorted(set(inventory) | set(samples))
    sample_time = state.latest.timestamp if state.latest is not None else None
    return [
        _gpu_entry(state.node_id, i, inventory.get(i), samples.get(i), events_by_gpu.get(i, []), sample_time, now, throttle_since)
        for i in indexes
    ]


def _gpu_entry(
    node_id: str,
    index: int,
    inv: GpuInventory | None,
    sample: GpuSample | None,
    events: list[HealthEvent],
    sample_time: float | None,  # of the node's latest sample; None: none yet
    now: float,
    throttle_since: dict[ThrottleKey, float],
) -> dict:
    # written out flat on purpose: this runs for every GPU of the cluster (40,000
    # at 5,000 nodes x 8) on every check, see benchmarks/stability_check.py
    if sample is not None:
        # the bytes read straight, MB here: no property call per field at 40,000 GPUs a check
        total_bytes = sample.memory_total_bytes
        if total_bytes is None and inv is not None:
            total_bytes = inv.memory_bytes
        total = None if total_bytes is None else total_bytes // MIB
        used_bytes = sample.memory_used_bytes
        used = None if used_bytes is None else used_bytes // MIB
        utilization = sample.utilization_gpu_pct
        throttles = []
        for reason in sample.throttle_reasons:
            started = throttle_since.get((node_id, index, reason))
            throttles.append(
                {
                    "reason": reason,
                    "since": started,
                    "duration_s": round(max(0.0, now - started), 2) if started is not None else None,
                }
            )
        health = {
            "xids": _xid_summary(events, now) if events else [],
            "ecc_uncorrected_volatile": sample.ecc_uncorrected_volatile,
            "ecc_uncorrected_aggregate": sample.ecc_uncorrected_aggregate,
            "ecc_uncorrectable_events": sum(1 for e in events if e.kind == "ecc_uncorrectable"),
            "row_remap_failure": bool(sample.remapped_rows_failure or any(e.kind == "row_remap_failure" for e in events)),
            "row_remap_pending": bool(sample.remapped_rows_pending),
            "retired_pages_pending": bool(sample.retired_pages_pending),
            "throttle": throttles,
            "error": sample.error,
        }
    else:
        total = inv.memory_mb if inv else None
        used = utilization = None
        health = {
            "xids": _xid_summary(events, now) if events else [],
            "ecc_uncorrected_volatile": None,
            "ecc_uncorrected_aggregate": None,
            "ecc_uncorrectable_events": sum(1 for e in events if e.kind == "ecc_uncorrectable"),
            "row_remap_failure": any(e.kind == "row_remap_failure" for e in events),
            "row_remap_pending": False,
            "retired_pages_pending": False,
            "throttle": [],
            "error": "",
        }
    why_lost = lost_reason(sample, events, sample_time=sample_time)
    return {
        "id": index,
        "uuid": (sample.uuid if sample is not None and sample.uuid else (inv.uuid if inv else "")),
        "name": inv.name if inv else "",
        "utilization": round(float(utilization), 2) if utilization is not None else None,
        "memory": {
            "total": total,
            "used": used,
            "usage_percent": round(100.0 * used / total, 2) if total and used is not None else None,
        },
        "temperature_c": sample.temperature_c if sample is not None else None,
        "power_draw_w": sample.power_draw_w if sample is not None else None,
        "lost": why_lost is not None,
        "lost_reason": why_lost,
        "health": health,
    }


def _xid_summary(events: list[HealthEvent], now: float) -> list[dict]:
    by_code: dict[int, dict] = {}
    for event in events:
        if event.kind != "xid" or event.xid is None:
            continue
        entry = by_code.setdefault(
            event.xid, {"code": event.xid, "count": 0, "first_time": event.timestamp, "last_time": event.timestamp}
        )
        entry["count"] += 1
        entry["first_time"] = min(entry["first_time"], event.timestamp)
        entry["last_time"] = max(entry["last_time"], event.timestamp)
    for entry in by_code.values():
        entry["age_s"] = _round(max(0.0, now - entry["last_time"]))
    return [by_code[code] for code in sorted(by_code)]


def _first(*values):
    for value in values:
        if value is not None:
            return value
    return None


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 2)

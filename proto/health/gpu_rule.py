"""The one rule deciding whether a GPU is healthy, from the typed readings and the node's recent health events.

A GPU is unhealthy while it has a `GpuProblem`. The problems, by class
(`ProblemKind`, one per Kubernetes Node condition type):

- `lost` (GPULost): the GPU stopped answering. Decided by `lost_reason`: the
  newer of the node's latest sample and the GPU's latest `gpu_lost` /
  `gpu_recovered` event wins; in a sample, a GPU is lost when it says so or
  when the node's inventory has it but the sample does not. Recovery action:
  reboot the node (XID 79's bucket).
- `xid_critical` (GPUXidCritical): an XID from `HealthRule.fatal_xids`
  (default: the catalogue's unhealthy buckets, `default_fatal_xids()`) within
  the last `event_window_s`; the action is the XID's catalogue resolution.
  Also (cause `recovery_action`) a GPU whose driver's recovery action, in the
  latest sample, asks for a reset, a reboot or support
  (`proto.health.recovery_action`): the driver knows, XID or not.
- `memory_errors` (GPUMemoryErrors): a non-zero volatile uncorrectable ECC
  count in the latest sample (cleared by a GPU reset), or an
  `ecc_uncorrectable` event within the window: reset the GPU; a row-remap
  failure (flag in the sample, or a `row_remap_failure` event within the
  window): the GPU is out of spare rows, contact support. Optional
  (`HealthRule.pending_repairs`): a pending row remap or pending page
  retirement, which wait for a GPU reset.
- `unresponsive` (GPUUnresponsive), optional (`HealthRule.unresponsive`): the
  latest sample could not read the GPU (`error`) though it is not lost.
- `thermal_throttling` (GPUThermalThrottling), optional
  (`HealthRule.throttle_threshold_s`): a hardware or thermal slowdown reason
  in force for longer than the threshold (how long comes from the caller,
  which remembers since when: see `aggregator/stability/nodes_data.py`).

The registry (`/healthy_nodes`), the aggregator's metrics, the stability
policy's `nodes_data` and, through its generated defaults, the default
stability policy all judge with this module; the agent uses it for Node
conditions. Everything here is pure: the time is passed in.

`GpuReading` is what the rule reads of a GPU's sample: the readings'
`GpuSample` and the protobuf `GpuSample` both fit, so the aggregator can judge
a sample at the wire edge without decoding it into dataclasses.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from proto.health.recovery_action import recovery_action_name, resolution_of_recovery_action
from proto.health.xid_catalog import UNHEALTHY_RESOLUTIONS, Resolution, default_fatal_xids, lookup_xid, recovery_action_text
from proto.telemetry.v1.readings import HealthEvent, NodeInventory, NodeSample

__all__ = [
    "DEFAULT_RULE",
    "DEFAULT_THROTTLE_REASONS",
    "GpuProblem",
    "GpuReading",
    "HealthRule",
    "ProblemCause",
    "ProblemKind",
    "event_problems",
    "gpu_problem_labels",
    "lost_events_after",
    "lost_reason",
    "node_problems",
    "sample_problems",
]


class ProblemKind(str, enum.Enum):
    """The class of a GPU problem; each maps one-to-one onto a Node condition type."""

    XID_CRITICAL = "xid_critical"
    LOST = "lost"
    MEMORY_ERRORS = "memory_errors"
    UNRESPONSIVE = "unresponsive"
    THERMAL_THROTTLING = "thermal_throttling"

    @property
    def condition_type(self) -> str:
        return _CONDITION_TYPES[self]


_CONDITION_TYPES = {
    ProblemKind.XID_CRITICAL: "GPUXidCritical",
    ProblemKind.LOST: "GPULost",
    ProblemKind.MEMORY_ERRORS: "GPUMemoryErrors",
    ProblemKind.UNRESPONSIVE: "GPUUnresponsive",
    ProblemKind.THERMAL_THROTTLING: "GPUThermalThrottling",
}


class ProblemCause(str, enum.Enum):
    """What exactly was seen (several causes share a kind). The values are the health-event kinds where one exists."""

    XID = "xid"
    LOST = "lost"
    ECC_UNCORRECTABLE = "ecc_uncorrectable"
    ROW_REMAP_FAILURE = "row_remap_failure"
    ROW_REMAP_PENDING = "row_remap_pending"
    RETIRED_PAGES_PENDING = "retired_pages_pending"
    READ_ERROR = "read_error"
    THROTTLE = "throttle"
    RECOVERY_ACTION = "recovery_action"  # the driver's GPU recovery action (NVML field) asks for one


# Slowdowns that mean cooling or power-supply trouble. `sw_power_cap` is left
# out: a busy GPU sits at its power cap in normal operation.
DEFAULT_THROTTLE_REASONS = frozenset({"hw_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown", "sw_thermal_slowdown"})


@dataclass(frozen=True)
class HealthRule:
    """The rule's settings; the defaults are the registry's (what `/healthy_nodes` uses)."""

    fatal_xids: frozenset[int] = field(default_factory=default_fatal_xids)
    event_window_s: float = 600.0  # how long an XID, ECC or row-remap event keeps a GPU unhealthy
    pending_repairs: bool = False  # a pending row remap / page retirement is a problem
    unresponsive: bool = False  # a GPU the sample could not read (not lost) is a problem
    throttle_reasons: frozenset[str] = DEFAULT_THROTTLE_REASONS
    throttle_threshold_s: float | None = None  # None: throttling is not judged


DEFAULT_RULE = HealthRule()


@dataclass(frozen=True)
class GpuProblem:
    kind: ProblemKind
    cause: ProblemCause
    gpu_index: int | None  # None: a node-level event (an XID the driver could not tie to a GPU)
    gpu_uuid: str
    detail: str  # for people: what was seen, e.g. "XID 79: GPU has fallen off the bus ..."
    resolution: Resolution
    xid: int | None = None
    since: float | None = None  # the event's or sample's timestamp, where known

    @property
    def label(self) -> str:
        """Short and stable, e.g. "gpu 1 lost", "gpu 0 xid 79", "node xid 48", "gpu 2 ecc_uncorrectable"."""
        where = "node" if self.gpu_index is None else f"gpu {self.gpu_index}"
        what = f"xid {self.xid}" if self.cause is ProblemCause.XID else self.cause.value
        return f"{where} {what}"

    @property
    def action(self) -> str:
        """The recovery action in words: "reset the GPU", "reboot the node", ..."""
        return recovery_action_text(self.resolution)

    @property
    def message(self) -> str:
        """One line naming the GPU, what was seen and the action, for conditions and logs."""
        gpu = "node" if self.gpu_index is None else f"GPU {self.gpu_index}" + (f" ({self.gpu_uuid})" if self.gpu_uuid else "")
        return f"{gpu}: {self.detail}; {self.action}"


class GpuReading(Protocol):
    """What the rule reads of one GPU in a sample (the readings' or the protobuf `GpuSample`)."""

    @property
    def index(self) -> int: ...
    @property
    def uuid(self) -> str: ...
    @property
    def lost(self) -> bool: ...
    @property
    def error(self) -> str: ...
    @property
    def ecc_uncorrected_volatile(self) -> int | None: ...
    @property
    def remapped_rows_failure(self) -> bool | None: ...
    @property
    def remapped_rows_pending(self) -> bool | None: ...
    @property
    def retired_pages_pending(self) -> bool | None: ...


_LOST_EVENT_KINDS = ("gpu_lost", "gpu_recovered")
_MISSING = "in the inventory but missing from the latest sample"


# ------------------------------------------------------------------ lost


def lost_reason(sample: GpuReading | None, events: Sequence[HealthEvent], *, sample_time: float | None) -> str | None:
    """Why the GPU counts as lost, or None. The one "lost GPU" decision.

    `sample`: the GPU's entry in the node's latest sample (None: not in it);
    `sample_time`: that sample's timestamp (None: the node sent none yet);
    `events`: the GPU's health events, most recent first. Whichever is newer
    decides: the latest `gpu_lost`/`gpu_recovered` event, or the sample.
    """
    latest = next((e for e in events if e.kind in _LOST_EVENT_KINDS), None)
    event_reason = None
    if latest is not None and latest.kind == "gpu_lost":
        event_reason = latest.nvml_error or latest.message or "gpu_lost event"
    if latest is not None and (sample_time is None or latest.timestamp > sample_time):
        return event_reason
    if sample_time is None:
        return None
    if sample is None:
        return event_reason or _MISSING  # the event says why it went missing
    return (sample.error or "the GPU stopped answering") if sample.lost else None


def lost_events_after(events: Iterable[HealthEvent], after: float | None) -> dict[int, HealthEvent]:
    """GPU index -> its latest `gpu_lost`/`gpu_recovered` event, for those newer than `after` (events most recent first)."""
    latest: dict[int, HealthEvent] = {}
    for event in events:
        if event.kind in _LOST_EVENT_KINDS and event.gpu_index is not None and event.gpu_index not in latest:
            latest[event.gpu_index] = event
    return {i: e for i, e in latest.items() if after is None or e.timestamp > after}


def _lost(index: int | None, uuid: str, reason: str, since: float | None) -> GpuProblem:
    return GpuProblem(
        ProblemKind.LOST, ProblemCause.LOST, index, uuid, f"GPU lost: {reason}", Resolution.REBOOT_NODE, since=since
    )


# ------------------------------------------------------------------ samples


def _gpu_sample_problems(gpu: GpuReading, rule: HealthRule, since: float | None) -> list[GpuProblem]:
    index, uuid = gpu.index, gpu.uuid
    if gpu.lost:
        return [_lost(index, uuid, gpu.error or "the GPU stopped answering", since)]
    problems = []
    # the readings' dataclass has None when unset; the protobuf has 0 (NONE) for an unset optional
    action_code = getattr(gpu, "recovery_action", None)
    action = resolution_of_recovery_action(action_code)
    if action_code is not None and action in UNHEALTHY_RESOLUTIONS:
        problems.append(GpuProblem(
            ProblemKind.XID_CRITICAL, ProblemCause.RECOVERY_ACTION, index, uuid,
            f"the driver's recovery action is {recovery_action_name(action_code)}", action, since=since,
        ))
    if gpu.remapped_rows_failure:
        problems.append(GpuProblem(
            ProblemKind.MEMORY_ERRORS, ProblemCause.ROW_REMAP_FAILURE, index, uuid,
            "row remapping failed: no spare memory rows left", Resolution.CONTACT_SUPPORT, since=since,
        ))
    if gpu.ecc_uncorrected_volatile:
        problems.append(GpuProblem(
            ProblemKind.MEMORY_ERRORS, ProblemCause.ECC_UNCORRECTABLE, index, uuid,
            f"{gpu.ecc_uncorrected_volatile} uncorrectable ECC error(s) since the last reset", Resolution.RESET_GPU, since=since,
        ))
    if rule.pending_repairs and gpu.remapped_rows_pending:
        problems.append(GpuProblem(
            ProblemKind.MEMORY_ERRORS, ProblemCause.ROW_REMAP_PENDING, index, uuid,
            "a row remap waits for a GPU reset", Resolution.RESET_GPU, since=since,
        ))
    if rule.pending_repairs and gpu.retired_pages_pending:
        problems.append(GpuProblem(
            ProblemKind.MEMORY_ERRORS, ProblemCause.RETIRED_PAGES_PENDING, index, uuid,
            "a page retirement waits for a GPU reset", Resolution.RESET_GPU, since=since,
        ))
    if rule.unresponsive and gpu.error:
        problems.append(GpuProblem(
            ProblemKind.UNRESPONSIVE, ProblemCause.READ_ERROR, index, uuid,
            f"the GPU could not be read: {gpu.error}", Resolution.RESET_GPU, since=since,
        ))
    return problems


def sample_problems(
    gpus: Iterable[GpuReading],
    expected: Mapping[int, str] | None = None,
    rule: HealthRule = DEFAULT_RULE,
    *,
    sample_time: float | None = None,
) -> tuple[GpuProblem, ...]:
    """What one sample shows: each GPU's own problems, and GPUs `expected` (index -> uuid, the inventory) but absent (lost)."""
    problems: list[GpuProblem] = []
    seen = set()
    for gpu in gpus:
        seen.add(gpu.index)
        problems += _gpu_sample_problems(gpu, rule, sample_time)
    for index, uuid in sorted((expected or {}).items()):
        if index not in seen:
            problems.append(_lost(index, uuid, _MISSING, sample_time))
    return tuple(problems)


# ------------------------------------------------------------------ events


def _event_problem(event: HealthEvent, rule: HealthRule) -> GpuProblem | None:
    index, uuid, at = event.gpu_index, event.gpu_uuid, event.timestamp
    if event.kind == "xid" and event.xid is not None and event.xid in rule.fatal_xids:
        entry = lookup_xid(event.xid)
        resolution = entry.resolution if entry is not None else Resolution.CONTACT_SUPPORT
        if resolution in (Resolution.NONE, Resolution.RESTART_APPLICATION):
            # an operator made a benign XID fatal: the GPU needs at least a reset to be trusted again
            resolution = Resolution.RESET_GPU
        detail = f"XID {event.xid}" + (f" ({entry.mnemonic}): {entry.description}" if entry is not None else "")
        return GpuProblem(ProblemKind.XID_CRITICAL, ProblemCause.XID, index, uuid, detail, resolution, xid=event.xid, since=at)
    if event.kind == "ecc_uncorrectable":
        return GpuProblem(ProblemKind.MEMORY_ERRORS, ProblemCause.ECC_UNCORRECTABLE, index, uuid,
                          event.message or "uncorrectable ECC errors", Resolution.RESET_GPU, since=at)
    if event.kind == "row_remap_failure":
        return GpuProblem(ProblemKind.MEMORY_ERRORS, ProblemCause.ROW_REMAP_FAILURE, index, uuid,
                          event.message or "row remapping failed", Resolution.CONTACT_SUPPORT, since=at)
    if event.kind == "row_remap_pending" and rule.pending_repairs:
        return GpuProblem(ProblemKind.MEMORY_ERRORS, ProblemCause.ROW_REMAP_PENDING, index, uuid,
                          event.message or "a row remap waits for a GPU reset", Resolution.RESET_GPU, since=at)
    return None


def event_problems(events: Iterable[HealthEvent], now: float, rule: HealthRule = DEFAULT_RULE) -> tuple[GpuProblem, ...]:
    """Problems opened by events (fatal XIDs, ECC, row remap) no older than `rule.event_window_s`; lost/recovered excluded."""
    problems = []
    for event in events:
        if now - event.timestamp > rule.event_window_s:
            continue
        problem = _event_problem(event, rule)
        if problem is not None:
            problems.append(problem)
    return tuple(problems)


# ------------------------------------------------------------------ a node


def _throttle_problems(
    sample: NodeSample, throttle_since: Mapping[tuple[int, str], float], now: float, rule: HealthRule
) -> list[GpuProblem]:
    threshold = rule.throttle_threshold_s
    if threshold is None:
        return []
    problems = []
    for gpu in sample.gpus:
        for reason in gpu.throttle_reasons:
            since = throttle_since.get((gpu.index, reason))
            if reason in rule.throttle_reasons and since is not None and now - since > threshold:
                problems.append(GpuProblem(
                    ProblemKind.THERMAL_THROTTLING, ProblemCause.THROTTLE, gpu.index, gpu.uuid,
                    f"{reason} for {round(now - since)}s (threshold {threshold:g}s)", Resolution.CONTACT_SUPPORT, since=since,
                ))
    return problems


def _dedupe(problems: Iterable[GpuProblem]) -> tuple[GpuProblem, ...]:
    """One problem per label, the first (samples before events, events most recent first) kept."""
    by_label: dict[str, GpuProblem] = {}
    for problem in problems:
        by_label.setdefault(problem.label, problem)
    return tuple(by_label.values())


def node_problems(
    inventory: NodeInventory,
    sample: NodeSample | None,
    events: Sequence[HealthEvent],
    now: float,
    rule: HealthRule = DEFAULT_RULE,
    throttle_since: Mapping[tuple[int, str], float] | None = None,
) -> tuple[GpuProblem, ...]:
    """Every open problem of a node's GPUs (events most recent first; `throttle_since`: (gpu index, reason) -> since)."""
    sample_time = sample.timestamp if sample is not None else None
    expected = {g.index: g.uuid for g in inventory.gpus}
    problems = list(sample_problems(sample.gpus, expected, rule, sample_time=sample_time)) if sample is not None else []
    problems = _apply_lost_events(problems, events, sample_time, expected)
    problems += event_problems(events, now, rule)
    if sample is not None and throttle_since:
        problems += _throttle_problems(sample, throttle_since, now, rule)
    return _dedupe(problems)


def _apply_lost_events(
    problems: list[GpuProblem], events: Sequence[HealthEvent], sample_time: float | None, uuids: Mapping[int, str]
) -> list[GpuProblem]:
    """Lost/recovered events newer than the sample override what the sample said about those GPUs."""
    newer = lost_events_after(events, sample_time)
    if not newer:
        return problems
    kept = [p for p in problems if not (p.kind is ProblemKind.LOST and p.gpu_index in newer)]
    for index, event in sorted(newer.items()):
        reason = lost_reason(None, [event], sample_time=sample_time)
        if reason is not None:
            kept.append(_lost(index, event.gpu_uuid or uuids.get(index, ""), reason, event.timestamp))
    return kept


def gpu_problem_labels(
    sample_labels: Sequence[str], sample_time: float | None, events: Sequence[HealthEvent], now: float,
    rule: HealthRule = DEFAULT_RULE,
) -> tuple[str, ...]:
    """`node_problems` for a holder that keeps only the labels of its latest sample's problems (the registry).

    `sample_labels`: `p.label` of `sample_problems(...)` for the latest sample, taken at the wire edge.
    """
    # one pass over the events (this runs on every message the registry records)
    lost_seen: set[int] = set()
    lost_newer: dict[int, bool] = {}  # gpu index -> lost, for lost/recovered events newer than the sample
    from_events = []
    window = rule.event_window_s
    for event in events:
        if event.kind in _LOST_EVENT_KINDS:
            index = event.gpu_index
            if index is not None and index not in lost_seen:
                lost_seen.add(index)
                if sample_time is None or event.timestamp > sample_time:
                    lost_newer[index] = event.kind == "gpu_lost"
        elif now - event.timestamp <= window:
            problem = _event_problem(event, rule)
            if problem is not None:
                from_events.append(problem.label)
    labels = list(sample_labels)
    for index, lost in sorted(lost_newer.items()):
        label = f"gpu {index} {ProblemCause.LOST.value}"
        if label in labels:
            labels.remove(label)
        if lost:
            labels.append(label)
    return tuple(dict.fromkeys(labels + from_events))

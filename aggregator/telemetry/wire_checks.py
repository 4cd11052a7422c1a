"""Pure checks and extractions on what agents send, before anything is stored.

`check_*` return None when a message is acceptable, else the reason, naming
the field path (e.g. `sample.gpus[2].power_draw_w: NaN`), which goes back to
the agent in a Refusal and into the log. Counters are unsigned on the wire,
so "negative counter" can only mean a negative rate, size or reading in a
double field: every double must be finite and non-negative, except
temperatures, which must only be finite.

Ranges (docs/limits.md): what a SQLite integer column holds (signed 64-bit:
`seq`, `dropped_samples`) and what is plausible (an XID below 2^32, an
interval between 0.1 s and 1 h). Node ids follow the character set of
Kubernetes node names and `nodeID` label values (`NODE_ID_PATTERN`); the
other identifiers of a hello are printable ASCII without spaces, so no log
line or table row ever carries a control character from an agent. Values
shown with `!r` in reasons are escaped by repr.
"""

from __future__ import annotations

import math
import operator
import re
from typing import Any

from google.protobuf.descriptor import FieldDescriptor

from aggregator.telemetry.attribution_checks import check_attribution
from aggregator.telemetry.model import SampleFigures
from proto.health.gpu_rule import sample_problems
from proto.telemetry.v1 import telemetry_pb2 as pb
from proto.telemetry.v1.readings import HEALTH_KINDS

__all__ = [
    "MAX_DROPPED_PER_MESSAGE",
    "MAX_INTERVAL_S",
    "MAX_SEQ",
    "MAX_XID",
    "MIN_INTERVAL_S",
    "NODE_ID_PATTERN",
    "check_dropped",
    "check_health",
    "check_hello",
    "check_inventory",
    "check_node_id",
    "check_sample",
    "check_seq",
    "sample_figures",
]

# DNS-1123 subdomains (Kubernetes node names: lowercase, digits, '-', '.', up to 253) and
# label values (`nodeID`: also upper case and '_', up to 63), both: alphanumeric at both ends
NODE_ID_PATTERN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,251}[A-Za-z0-9])?")
# agent_instance, agent_version, cluster_id: printable ASCII without spaces
_TOKEN = re.compile(r"[\x21-\x7e]{1,128}")
MAX_SEQ = 2**63 - 1  # SQLite's INTEGER is signed 64-bit
MAX_DROPPED_PER_MESSAGE = 2**32 - 1  # an agent's buffer holds about a thousand samples
MAX_XID = 2**32 - 1  # NVIDIA's XIDs are small numbers; the driver reports them as 32-bit
MIN_INTERVAL_S = 0.1
MAX_INTERVAL_S = 3600.0

_FLOATS = (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT)
_MAY_BE_NEGATIVE = frozenset({"temperature_c"})
_HEALTH_KINDS = frozenset(HEALTH_KINDS)


class _NumberPlan:
    """Per message type: its double fields and the message fields holding doubles."""

    __slots__ = ("get_non_negative", "non_negative", "repeated", "signed", "singular")

    def __init__(self, descriptor: Any) -> None:
        self.non_negative: list[str] = []
        self.signed: list[str] = []
        self.singular: list[tuple[str, _NumberPlan]] = []
        self.repeated: list[tuple[str, _NumberPlan]] = []
        for fd in descriptor.fields:
            if fd.type == FieldDescriptor.TYPE_MESSAGE:
                child = _plan(fd.message_type)
                if child.has_numbers():
                    (self.repeated if fd.is_repeated else self.singular).append((fd.name, child))
            elif fd.type in _FLOATS and not fd.is_repeated:
                (self.signed if fd.name in _MAY_BE_NEGATIVE else self.non_negative).append(fd.name)

        # one C-level call fetching every double at once
        self.get_non_negative = _tuple_getter(self.non_negative)

    def has_numbers(self) -> bool:
        return bool(self.non_negative or self.signed or self.singular or self.repeated)


def _tuple_getter(names: list[str]):
    if len(names) == 1:
        single = operator.attrgetter(names[0])
        return lambda msg: (single(msg),)
    return operator.attrgetter(*names) if names else (lambda msg: ())


_PLANS: dict[str, _NumberPlan] = {}


def _plan(descriptor: Any) -> _NumberPlan:
    plan = _PLANS.get(descriptor.full_name)
    if plan is None:
        plan = _PLANS[descriptor.full_name] = _NumberPlan(descriptor)
    return plan


def _bad_number(msg: Any, plan: _NumberPlan) -> str | None:
    """Where the first NaN/inf/negative double in `msg` is ("gpus[2].power_draw_w: ..."), or None.

    The fast path sums each message's doubles (NaN and inf survive a sum, a
    negative shows in the minimum) and looks field by field only on failure,
    and builds no path strings unless something is wrong: this runs for every
    sample, so it must cost a few microseconds.
    """
    names = plan.non_negative
    if names:
        values = plan.get_non_negative(msg)
        if not math.isfinite(sum(values)) or min(values) < 0:
            for name, value in zip(names, values):
                if not math.isfinite(value):
                    return f"{name}: {value} is not a finite number"
                if value < 0:
                    return f"{name}: {value} is negative"
    for name in plan.signed:
        value = getattr(msg, name)
        if not math.isfinite(value):
            return f"{name}: {value} is not a finite number"
    for name, child in plan.singular:
        if msg.HasField(name):
            found = _bad_number(getattr(msg, name), child)
            if found:
                return f"{name}.{found}"
    for name, child in plan.repeated:
        for i, item in enumerate(getattr(msg, name)):
            found = _bad_number(item, child)
            if found:
                return f"{name}[{i}].{found}"
    return None


def _check_numbers(msg: Any, path: str) -> str | None:
    found = _bad_number(msg, _plan(msg.DESCRIPTOR))
    return f"{path}.{found}" if found else None


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # C0 controls but tab and newline, and DEL


def _bad_string(msg: Any, path: str) -> str | None:
    """The first string field holding a control character (inventories and events: rare, so a plain walk)."""
    for fd, value in msg.ListFields():
        if fd.type == FieldDescriptor.TYPE_STRING:
            for i, text in enumerate(value if fd.is_repeated else (value,)):
                if _CONTROL.search(text):
                    where = f"{path}.{fd.name}[{i}]" if fd.is_repeated else f"{path}.{fd.name}"
                    return f"{where}: {text[:80]!r} holds a control character"
        elif fd.type == FieldDescriptor.TYPE_MESSAGE:
            for i, child in enumerate(value if fd.is_repeated else (value,)):
                found = _bad_string(child, f"{path}.{fd.name}[{i}]" if fd.is_repeated else f"{path}.{fd.name}")
                if found:
                    return found
    return None


def check_inventory(inv: pb.NodeInventory, node_id: str, path: str = "inventory") -> str | None:
    if inv.node_id and inv.node_id != node_id:
        return f"{path}.node_id: {inv.node_id[:80]!r} does not match the hello's node id {node_id!r}"
    seen = set()
    for i, gpu in enumerate(inv.gpus):
        if gpu.index in seen:
            return f"{path}.gpus[{i}].index: GPU index {gpu.index} appears twice"
        seen.add(gpu.index)
    return _check_numbers(inv, path) or _bad_string(inv, path)


def check_node_id(node_id: str, path: str = "hello.node_id") -> str | None:
    if not node_id:
        return f"{path}: empty"
    if not NODE_ID_PATTERN.fullmatch(node_id):
        return (f"{path}: {node_id[:80]!r} is not a node id (1-253 letters, digits, '.', '_' or '-', "
                "starting and ending with a letter or digit)")
    return None


def check_hello(hello: pb.Hello) -> str | None:
    problem = check_node_id(hello.node_id)
    if problem:
        return problem
    if not hello.agent_instance:
        return "hello.agent_instance: empty"
    for name in ("agent_instance", "agent_version", "cluster_id"):
        value = getattr(hello, name)
        if value and not _TOKEN.fullmatch(value):
            return f"hello.{name}: {value[:80]!r} is not 1-128 printable ASCII characters without spaces"
    if not hello.HasField("inventory"):
        return "hello.inventory: missing"
    if not (math.isfinite(hello.interval_s) and MIN_INTERVAL_S <= hello.interval_s <= MAX_INTERVAL_S):
        return f"hello.interval_s: {hello.interval_s} is not between {MIN_INTERVAL_S:g} and {MAX_INTERVAL_S:g} seconds"
    return check_inventory(hello.inventory, hello.node_id, "hello.inventory")


def check_seq(seq: int, previous: int) -> str | None:
    """A message's seq: within what SQLite holds, and above the previous one on the same stream."""
    if seq <= 0:
        return f"seq: {seq} (every message after the hello needs seq >= 1)"
    if seq > MAX_SEQ:
        return f"seq: {seq} is over {MAX_SEQ}"
    if seq <= previous:
        return f"seq: {seq} is not above {previous}, the previous seq on this stream"
    return None


def check_dropped(dropped_samples: int) -> str | None:
    if dropped_samples > MAX_DROPPED_PER_MESSAGE:
        return f"dropped_samples: {dropped_samples} is over {MAX_DROPPED_PER_MESSAGE}"
    return None


def check_sample(sample: pb.NodeSample, gpu_indices: frozenset[int]) -> str | None:
    if not math.isfinite(sample.timestamp) or sample.timestamp <= 0:
        return f"sample.timestamp: {sample.timestamp} is not a positive finite number"
    seen = set()
    for i, gpu in enumerate(sample.gpus):
        # a lost GPU leaves the inventory, but samples keep reporting it as lost
        if gpu.index not in gpu_indices and not gpu.lost:
            return f"sample.gpus[{i}].index: GPU index {gpu.index} is not in the node's inventory"
        if gpu.index in seen:
            return f"sample.gpus[{i}].index: GPU index {gpu.index} appears twice"
        seen.add(gpu.index)
    return _check_numbers(sample, "sample") or check_attribution(sample)


def check_health(event: pb.HealthEvent, gpu_indices: frozenset[int]) -> str | None:
    if event.kind not in _HEALTH_KINDS:
        return f"health.kind: {event.kind[:80]!r} is not one of {', '.join(HEALTH_KINDS)}"
    if event.HasField("xid") and event.xid > MAX_XID:
        return f"health.xid: {event.xid} is over {MAX_XID}"
    if not math.isfinite(event.timestamp) or event.timestamp <= 0:
        return f"health.timestamp: {event.timestamp} is not a positive finite number"
    # a lost GPU may already be gone from the inventory; its events still count
    if (
        event.HasField("gpu_index")
        and event.gpu_index not in gpu_indices
        and event.kind not in ("gpu_lost", "gpu_recovered", "xid", "nvml_error")
    ):
        return f"health.gpu_index: GPU index {event.gpu_index} is not in the node's inventory"
    return _bad_string(event, "health")


def sample_figures(sample: pb.NodeSample, gpu_indices: frozenset[int] = frozenset()) -> SampleFigures:
    """The few numbers the registry keeps per sample (status, rolling averages).

    `gpu_indices`: the node's inventory; a GPU in it but not in the sample is lost.
    """
    host = sample.host
    cpu = host.cpu_percent if host.HasField("cpu_percent") else None
    mem = None
    if host.HasField("memory_used_mb") and host.HasField("memory_total_mb") and host.memory_total_mb:
        mem = 100.0 * host.memory_used_mb / host.memory_total_mb
    utils = [gpu.utilization_gpu_pct for gpu in sample.gpus if gpu.HasField("utilization_gpu_pct")]
    problems = sample_problems(sample.gpus, dict.fromkeys(gpu_indices, ""), sample_time=sample.timestamp)
    return SampleFigures(
        timestamp=sample.timestamp,
        cpu_percent=cpu,
        gpu_utilization_pct=sum(utils) / len(utils) if utils else None,
        memory_used_pct=mem,
        gpu_problems=tuple(dict.fromkeys(p.label for p in problems)),
    )

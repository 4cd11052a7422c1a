"""Pure checks and extractions on what agents send, before anything is stored.

`check_*` return None when a message is acceptable, else the reason, naming
the field path (e.g. `sample.gpus[2].power_draw_w: NaN`), which goes back to
the agent in a Refusal and into the log. Counters are unsigned on the wire,
so "negative counter" can only mean a negative rate, size or reading in a
double field: every double must be finite and non-negative, except
temperatures, which must only be finite.
"""

from __future__ import annotations

import math
import operator
from typing import Any

from google.protobuf.descriptor import FieldDescriptor

from aggregator.telemetry.attribution_checks import check_attribution
from aggregator.telemetry.model import SampleFigures
from proto.health.gpu_rule import sample_problems
from proto.telemetry.v1 import telemetry_pb2 as pb
from proto.telemetry.v1.readings import HEALTH_KINDS

__all__ = [
    "check_health",
    "check_hello",
    "check_inventory",
    "check_sample",
    "sample_figures",
]

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


def check_inventory(inv: pb.NodeInventory, node_id: str, path: str = "inventory") -> str | None:
    if inv.node_id and inv.node_id != node_id:
        return f"{path}.node_id: {inv.node_id!r} does not match the hello's node id {node_id!r}"
    seen = set()
    for i, gpu in enumerate(inv.gpus):
        if gpu.index in seen:
            return f"{path}.gpus[{i}].index: GPU index {gpu.index} appears twice"
        seen.add(gpu.index)
    return _check_numbers(inv, path)


def check_hello(hello: pb.Hello) -> str | None:
    if not hello.node_id:
        return "hello.node_id: empty"
    if not hello.agent_instance:
        return "hello.agent_instance: empty"
    if not hello.HasField("inventory"):
        return "hello.inventory: missing"
    if not math.isfinite(hello.interval_s) or hello.interval_s < 0:
        return f"hello.interval_s: {hello.interval_s} is not a non-negative finite number"
    return check_inventory(hello.inventory, hello.node_id, "hello.inventory")


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
        return f"health.kind: {event.kind!r} is not one of {', '.join(HEALTH_KINDS)}"
    if not math.isfinite(event.timestamp) or event.timestamp <= 0:
        return f"health.timestamp: {event.timestamp} is not a positive finite number"
    # a lost GPU may already be gone from the inventory; its events still count
    if (
        event.HasField("gpu_index")
        and event.gpu_index not in gpu_indices
        and event.kind not in ("gpu_lost", "gpu_recovered", "xid", "nvml_error")
    ):
        return f"health.gpu_index: GPU index {event.gpu_index} is not in the node's inventory"
    return None


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

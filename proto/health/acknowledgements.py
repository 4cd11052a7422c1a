"""Operator acknowledgements: which health events no longer count.

An operator acknowledges a node's GPU problems through the stability policy's
`acknowledge` management action (`POST /mgmt`); the aggregator records it and
sends it to the node's agent (`Acknowledgement` on the stream). Both then
judge the node with the health rule (`proto.health.gpu_rule`) over the events
that are not acknowledged, so the Node conditions (agent) and the quarantine
(aggregator) clear together.

What an acknowledgement clears: the problems that events opened (critical
XIDs, uncorrectable-ECC and row-remap events), up to its `up_to` time; newer
events count again. What it cannot clear: what the latest sample shows of the
hardware now (a lost GPU, a non-zero volatile ECC count, a failed row remap,
a hung NVML call, the driver asking for a reset): those end when the GPU's
state does (it answers again, it is reset).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from proto.telemetry.v1.readings import Acknowledgement, HealthEvent

__all__ = ["ACKNOWLEDGEABLE_KINDS", "covers", "unacknowledged"]

# the event kinds whose problems an acknowledgement ends (gpu_lost/gpu_recovered
# are state, not problems to acknowledge)
ACKNOWLEDGEABLE_KINDS = frozenset({"xid", "ecc_uncorrectable", "row_remap_failure", "row_remap_pending"})


def covers(ack: Acknowledgement, event: HealthEvent) -> bool:
    """Whether `ack` acknowledges `event` (pure)."""
    if event.kind not in ACKNOWLEDGEABLE_KINDS or event.timestamp > ack.up_to:
        return False
    if ack.gpu_index is not None and event.gpu_index != ack.gpu_index:
        return False
    return not ack.xids or (event.kind == "xid" and event.xid in ack.xids)


def unacknowledged(events: Iterable[HealthEvent], acks: Sequence[Acknowledgement]) -> tuple[HealthEvent, ...]:
    """The events no acknowledgement covers, in their order."""
    if not acks:
        return tuple(events)
    return tuple(e for e in events if not any(covers(a, e) for a in acks))

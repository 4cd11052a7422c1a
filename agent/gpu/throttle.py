"""Decode NVML's clock-event ("throttle") reason bitmask into names.

Bits from nvml.h (nvmlClocksEventReason* / nvmlClocksThrottleReason*). A bit
this table does not know is kept as "unknown_0x..." rather than dropped.
"""

from __future__ import annotations

from proto.telemetry.v1.readings import THROTTLE_REASONS

__all__ = ["CLOCK_EVENT_REASONS", "decode_clock_event_reasons"]

# nvml.h's bits are consecutive from 0x1 in the order of THROTTLE_REASONS.
CLOCK_EVENT_REASONS: tuple[tuple[int, str], ...] = tuple(
    (1 << bit, name) for bit, name in enumerate(THROTTLE_REASONS)
)
_KNOWN_MASK = sum(bit for bit, _ in CLOCK_EVENT_REASONS)


def decode_clock_event_reasons(mask: int) -> tuple[str, ...]:
    """Names of the set bits, lowest bit first; no bits set gives ()."""
    names = [name for bit, name in CLOCK_EVENT_REASONS if mask & bit]
    unknown = mask & ~_KNOWN_MASK
    bit = 1
    while unknown:
        if unknown & bit:
            names.append(f"unknown_{bit:#x}")
            unknown &= ~bit
        bit <<= 1
    return tuple(names)

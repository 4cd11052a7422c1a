"""Decode NVML's clock-event ("throttle") reason bitmask into names.

Bits from nvml.h (nvmlClocksEventReason* / nvmlClocksThrottleReason*). A bit
this table does not know is kept as "unknown_0x..." rather than dropped.
"""

from __future__ import annotations

__all__ = ["CLOCK_EVENT_REASONS", "decode_clock_event_reasons"]

CLOCK_EVENT_REASONS: tuple[tuple[int, str], ...] = (
    (0x0000000000000001, "gpu_idle"),
    (0x0000000000000002, "applications_clocks_setting"),
    (0x0000000000000004, "sw_power_cap"),
    (0x0000000000000008, "hw_slowdown"),
    (0x0000000000000010, "sync_boost"),
    (0x0000000000000020, "sw_thermal_slowdown"),
    (0x0000000000000040, "hw_thermal_slowdown"),
    (0x0000000000000080, "hw_power_brake_slowdown"),
    (0x0000000000000100, "display_clock_setting"),
    (0x0000000000000200, "board_limit"),
    (0x0000000000000400, "reliability"),
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

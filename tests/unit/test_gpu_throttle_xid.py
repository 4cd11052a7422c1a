"""Pure decoders: clock-event reason bits and XID descriptions."""

from agent.gpu.throttle import decode_clock_event_reasons
from proto.health.xid_catalog import describe_xid


def test_no_reason():
    assert decode_clock_event_reasons(0) == ()


def test_idle():
    assert decode_clock_event_reasons(0x1) == ("gpu_idle",)


def test_power_cap_and_thermal():
    assert decode_clock_event_reasons(0x4 | 0x20 | 0x40) == (
        "sw_power_cap",
        "sw_thermal_slowdown",
        "hw_thermal_slowdown",
    )


def test_every_known_bit():
    assert decode_clock_event_reasons(0x7FF) == (
        "gpu_idle",
        "applications_clocks_setting",
        "sw_power_cap",
        "hw_slowdown",
        "sync_boost",
        "sw_thermal_slowdown",
        "hw_thermal_slowdown",
        "hw_power_brake_slowdown",
        "display_clock_setting",
        "board_limit",
        "reliability",
    )


def test_unknown_bits_are_kept():
    assert decode_clock_event_reasons(0x8 | 0x1000 | (1 << 40)) == (
        "hw_slowdown",
        "unknown_0x1000",
        "unknown_0x10000000000",
    )


def test_xid_descriptions():
    assert describe_xid(79) == "XID 79: GPU has fallen off the bus"
    assert describe_xid(48) == "XID 48: uncorrectable (double-bit) ECC memory error"
    assert describe_xid(94) == "XID 94: uncorrectable memory error contained to one application"
    assert describe_xid(4242) == "XID 4242"

"""The agent's exposition from literal readings: names, labels, values, promtool's lint."""

import pytest
from prometheus_client import generate_latest

from agent.metrics import (
    DEFAULT_METRICS_PORT,
    AgentMetricsProviders,
    AgentMetricsState,
    MetricsConfigError,
    StreamStatus,
    build_agent_registry,
    metrics_port_from_env,
)
from proto.telemetry.v1.readings import NodeSample
from tests.metrics_fixtures.exposition import names, parse_exposition, promtool_check, value
from tests.metrics_fixtures.readings import INVENTORY, SAMPLE_1, SAMPLE_2

GPU0 = {"node": "node-a", "gpu": "0", "uuid": "GPU-aaaa", "model": "NVIDIA A100-SXM4-80GB"}
GPU1 = {"node": "node-a", "gpu": "1", "uuid": "GPU-bbbb", "model": "NVIDIA A100-SXM4-80GB"}
NODE = {"node": "node-a"}


def _exposition(state: AgentMetricsState, stream=None, process_metrics=False) -> str:
    registry = build_agent_registry(AgentMetricsProviders(state.readings, stream=stream), process_metrics=process_metrics)
    return generate_latest(registry).decode()


@pytest.fixture
def state():
    s = AgentMetricsState()
    s.record(INVENTORY, SAMPLE_1)
    s.record(None, SAMPLE_2)
    return s


def test_gpu_gauges_in_base_units(state):
    m = parse_exposition(_exposition(state))
    assert value(m, "aios_gpu_utilization_ratio", **GPU0) == 0.87
    assert value(m, "aios_gpu_memory_utilization_ratio", **GPU0) == 0.41
    assert value(m, "aios_gpu_memory_used_bytes", **GPU0) == 61_440 * 1024 * 1024
    assert value(m, "aios_gpu_memory_free_bytes", **GPU0) == 20_480 * 1024 * 1024
    assert value(m, "aios_gpu_memory_total_bytes", **GPU0) == 85_899_345_920
    assert value(m, "aios_gpu_temperature_celsius", **GPU0) == 71.0
    assert value(m, "aios_gpu_power_draw_watts", **GPU0) == 310.0
    assert value(m, "aios_gpu_power_limit_watts", **GPU0) == 400.0
    assert value(m, "aios_gpu_sm_clock_hertz", **GPU0) == 1_410_000_000
    assert value(m, "aios_gpu_memory_clock_hertz", **GPU0) == 1_593_000_000
    assert value(m, "aios_gpu_info", **GPU0, pci_bus_id="00000000:07:00.0", compute_capability="8.0",
                 architecture="ampere") == 1  # mig_enabled="" (not known) is no label


def test_gpu_health_series(state):
    m = parse_exposition(_exposition(state))
    # XIDs accumulate over samples: 79 seen in both, 48 in the first only.
    assert value(m, "aios_gpu_xid_errors_total", **GPU0, xid="79") == 2
    assert value(m, "aios_gpu_xid_errors_total", **GPU0, xid="48") == 1
    assert value(m, "aios_gpu_ecc_volatile_errors_total", **GPU0, type="corrected") == 3
    assert value(m, "aios_gpu_ecc_aggregate_errors_total", **GPU0, type="uncorrected") == 1
    assert value(m, "aios_gpu_throttle_reason", **GPU0, reason="sw_power_cap") == 1
    assert value(m, "aios_gpu_throttle_reason", **GPU0, reason="hw_thermal_slowdown") == 0
    assert value(m, "aios_gpu_retired_pages", **GPU0) == 2
    assert value(m, "aios_gpu_remapped_rows", **GPU0, type="uncorrectable") == 1
    assert value(m, "aios_gpu_remapped_rows_failure", **GPU0) == 0
    assert value(m, "aios_gpu_pcie_replays_total", **GPU0) == 6
    assert value(m, "aios_gpu_nvlink_active", **GPU0, link="1") == 0
    assert value(m, "aios_gpu_lost", **GPU0) == 0
    assert value(m, "aios_gpu_lost", **GPU1) == 1
    # A lost GPU has no readings: no made-up zeros.
    assert ("aios_gpu_temperature_celsius", frozenset(GPU1.items())) not in m
    assert not [k for k in m if k[0] == "aios_gpu_throttle_reason" and ("gpu", "1") in k[1]]


def test_host_gauges_and_counters(state):
    m = parse_exposition(_exposition(state))
    assert value(m, "aios_node_cpu_utilization_ratio", **NODE) == 0.375
    assert value(m, "aios_node_load1", **NODE) == 4.25
    assert value(m, "aios_node_memory_available_bytes", **NODE) == 300_000 * 1024 * 1024
    assert value(m, "aios_node_swap_used_bytes", **NODE) == 1024 ** 3
    assert value(m, "aios_node_disk_read_bytes_per_second", **NODE) == 10_485_760
    assert value(m, "aios_node_disk_busy_ratio", **NODE) == 0.125
    assert value(m, "aios_node_network_receive_bytes_total", **NODE, device="eth0") == 12_000_000_000
    assert value(m, "aios_node_network_transmit_bytes_per_second", **NODE, device="eth0") == 1_000_000
    assert value(m, "aios_node_network_speed_bytes", **NODE, device="eth0") == 3_125_000_000  # 25 Gbit/s
    assert value(m, "aios_node_processes", **NODE) == 812
    assert value(m, "aios_node_threads", **NODE) == 4_100
    assert value(m, "aios_node_gpus", **NODE) == 2
    assert value(m, "aios_node_nvml_up", **NODE) == 1
    # ib0 has no rate yet (one sample) and no known speed.
    assert ("aios_node_network_transmit_bytes_per_second", frozenset({"node": "node-a", "device": "ib0"}.items())) not in m
    assert ("aios_node_network_speed_bytes", frozenset({"node": "node-a", "device": "ib0"}.items())) not in m


def test_agent_health_and_stream_state(state):
    stream = StreamStatus(connected=False, reconnects_total=3, dropped_samples_total=7)
    m = parse_exposition(_exposition(state, stream=lambda: stream))
    # From the latest sample: host succeeded again.
    assert value(m, "aios_agent_collector_success", **NODE, collector="host") == 1
    assert value(m, "aios_agent_collector_duration_seconds", **NODE, collector="gpu") == 0.005
    assert value(m, "aios_agent_last_sample_timestamp_seconds", **NODE) == 1_790_000_010.0
    assert value(m, "aios_agent_health_events_total", **NODE, kind="xid") == 3
    assert value(m, "aios_agent_health_events_total", **NODE, kind="gpu_lost") == 1
    assert value(m, "aios_agent_stream_connected", **NODE) == 0
    assert value(m, "aios_agent_stream_reconnects_total", **NODE) == 3
    assert value(m, "aios_agent_dropped_samples_total", **NODE) == 7


def test_failed_collector_shows_zero():
    s = AgentMetricsState()
    s.record(INVENTORY, SAMPLE_1)
    m = parse_exposition(_exposition(s))
    assert value(m, "aios_agent_collector_success", **NODE, collector="host") == 0
    assert value(m, "aios_agent_collector_duration_seconds", **NODE, collector="host") == 0.25


def test_scrape_reads_state_only():
    """Before any sample there is nothing to show but the agent's process; no collection runs."""
    s = AgentMetricsState()
    m = parse_exposition(_exposition(s, process_metrics=False))
    assert m == {}
    s.set_inventory(INVENTORY)
    m = parse_exposition(_exposition(s))
    assert value(m, "aios_node_gpus", **NODE) == 2
    assert "aios_gpu_temperature_celsius" not in names(m)


def test_unsupported_throttle_reasons_are_left_out():
    s = AgentMetricsState()
    gpu = SAMPLE_2.gpus[0].__class__(index=0, uuid="GPU-aaaa", temperature_c=30.0, unsupported=("throttle_reasons",))
    s.record(INVENTORY, NodeSample(timestamp=1.0, host=None, gpus=(gpu,)))
    m = parse_exposition(_exposition(s))
    assert value(m, "aios_gpu_temperature_celsius", **GPU0) == 30.0
    assert "aios_gpu_throttle_reason" not in names(m)


def test_exposition_passes_promtool(state):
    promtool_check(_exposition(state, stream=lambda: StreamStatus(True, 1, 0), process_metrics=True))


def test_metrics_port_setting():
    assert metrics_port_from_env({}) == DEFAULT_METRICS_PORT == 9402
    assert metrics_port_from_env({"AIOS_METRICS_PORT": " 9500 "}) == 9500
    with pytest.raises(MetricsConfigError, match="AIOS_METRICS_PORT='nine'"):
        metrics_port_from_env({"AIOS_METRICS_PORT": "nine"})
    with pytest.raises(MetricsConfigError, match="must be between 0 and 65535"):
        metrics_port_from_env({"AIOS_METRICS_PORT": "70000"})


def test_stream_status_from_the_stream_clients_stats():
    from types import SimpleNamespace

    stats = SimpleNamespace(connected=True, connects=4, dropped_samples=9, buffered=2)
    assert StreamStatus.from_stream_stats(stats) == StreamStatus(connected=True, reconnects_total=3, dropped_samples_total=9)
    never = SimpleNamespace(connected=False, connects=0, dropped_samples=0)
    assert StreamStatus.from_stream_stats(never) == StreamStatus(False, 0, 0)


def test_a_gpu_gone_from_the_inventory_keeps_its_model_label():
    from dataclasses import replace

    s = AgentMetricsState()
    s.record(INVENTORY, SAMPLE_1)
    # After GPU 1 is lost the daemon re-reads the inventory, which no longer lists it.
    s.record(replace(INVENTORY, gpus=INVENTORY.gpus[:1]), SAMPLE_2)
    m = parse_exposition(_exposition(s))
    assert value(m, "aios_gpu_lost", **GPU1) == 1
    assert value(m, "aios_node_gpus", **NODE) == 1

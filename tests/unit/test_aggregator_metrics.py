"""The aggregator's exposition from a literal registry snapshot."""

from prometheus_client import generate_latest

from aggregator.telemetry.metrics import (
    AggregatorMetricsProviders,
    StabilityVerdict,
    build_aggregator_registry,
    cluster_metric_families,
)
from tests.metrics_fixtures.exposition import names, parse_exposition, promtool_check, value
from tests.metrics_fixtures.readings import node_states

C = {"cluster": "cluster-7"}
MiB = 1024 ** 2


def _providers(**kw):
    base = dict(
        nodes=node_states,
        cluster_id="cluster-7",
        stability=lambda: StabilityVerdict(is_stable=False, checked_at=1_790_000_000.0),
        policy_errors=lambda: 4,
        clock=lambda: 1_790_000_030.0,
    )
    base.update(kw)
    return AggregatorMetricsProviders(**base)


def _parsed(**kw):
    return parse_exposition(generate_latest(build_aggregator_registry(_providers(**kw), process_metrics=False)).decode())


def test_cluster_figures():
    m = _parsed()
    assert value(m, "aios_cluster_nodes", **C, status="healthy") == 1
    assert value(m, "aios_cluster_nodes", **C, status="unhealthy") == 1
    assert value(m, "aios_cluster_nodes", **C, status="stale") == 1
    assert value(m, "aios_cluster_node_status", **C, node="node-b", status="healthy") == 1
    assert value(m, "aios_cluster_node_status", **C, node="node-b", status="stale") == 0
    assert value(m, "aios_cluster_node_last_seen_timestamp_seconds", **C, node="node-c") == 1_789_999_000.0
    assert value(m, "aios_cluster_gpus", **C) == 3
    assert value(m, "aios_cluster_gpus_lost", **C) == 1
    assert value(m, "aios_cluster_gpu_memory_total_bytes", **C) == (81_920 * 2 + 81_559) * MiB
    assert value(m, "aios_cluster_gpu_memory_used_bytes", **C) == (61_440 + 10_000) * MiB
    assert value(m, "aios_cluster_gpu_utilization_ratio", **C) == 0.66  # mean of 87 % and 45 %
    assert value(m, "aios_cluster_samples_received_total", **C) == 205
    assert value(m, "aios_cluster_dropped_samples_total", **C) == 3
    assert value(m, "aios_cluster_stable", **C) == 0
    assert value(m, "aios_cluster_stability_verdict_age_seconds", **C) == 30.0
    assert value(m, "aios_cluster_stability_check_timestamp_seconds", **C) == 1_790_000_000.0
    assert value(m, "aios_cluster_policy_errors_total", **C) == 4
    assert not {n for n in names(m) if n.startswith(("aios_gpu_", "aios_node_"))}


def test_per_node_series_merge_under_one_name():
    m = _parsed(per_node=True)
    assert value(m, "aios_gpu_temperature_celsius", node="node-a", gpu="0", uuid="GPU-aaaa",
                 model="NVIDIA A100-SXM4-80GB") == 71.0
    assert value(m, "aios_gpu_temperature_celsius", node="node-b", gpu="0", uuid="GPU-cccc",
                 model="NVIDIA H100 80GB HBM3") == 55.0
    assert value(m, "aios_node_gpus", node="node-c") == 0
    assert value(m, "aios_node_nvml_up", node="node-c") == 0
    assert value(m, "aios_node_memory_used_bytes", node="node-b") == 200_000 * MiB


def test_no_verdict_no_nodes():
    m = _parsed(nodes=lambda: [], stability=lambda: None, policy_errors=None)
    assert value(m, "aios_cluster_nodes", **C, status="healthy") == 0
    assert value(m, "aios_cluster_gpus", **C) == 0
    assert value(m, "aios_cluster_samples_received_total", **C) == 0
    assert not {"aios_cluster_stable", "aios_cluster_policy_errors_total", "aios_cluster_gpu_utilization_ratio"} & names(m)


def test_pure_builder_takes_now_from_the_caller():
    families = cluster_metric_families([], cluster_id="x", now=100.0, stability=StabilityVerdict(True, 40.0))
    by_name = {f.name: f.samples[0].value for f in families if f.samples}
    assert by_name["aios_cluster_stable"] == 1
    assert by_name["aios_cluster_stability_verdict_age_seconds"] == 60.0


def test_exposition_passes_promtool():
    registry = build_aggregator_registry(_providers(per_node=True))
    promtool_check(generate_latest(registry).decode())


def test_failed_stability_check_has_no_verdict():
    m = _parsed(stability=lambda: StabilityVerdict(is_stable=None, checked_at=1_790_000_020.0))
    assert value(m, "aios_cluster_stability_check_success", **C) == 0
    assert value(m, "aios_cluster_stability_verdict_age_seconds", **C) == 10.0
    assert "aios_cluster_stable" not in names(m)
    m = _parsed()
    assert value(m, "aios_cluster_stability_check_success", **C) == 1

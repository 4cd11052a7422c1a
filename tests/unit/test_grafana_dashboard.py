"""The Grafana dashboard: valid, laid out, and asking only for series we export."""

import json
import re
import shutil
import subprocess

import pytest
from prometheus_client import generate_latest

from agent.metrics import AgentMetricsProviders, AgentMetricsState, StreamStatus, build_agent_registry
from aggregator.telemetry.metrics import AggregatorMetricsProviders, StabilityVerdict, build_aggregator_registry
from tests.metrics_fixtures.dashboard import (
    METRIC_NAME,
    all_panels,
    expressions,
    load_dashboard,
    selector_labels,
    template_queries,
)
from tests.metrics_fixtures.exposition import parse_exposition
from tests.metrics_fixtures.quarantine import quarantine_collector
from tests.metrics_fixtures.readings import ATTRIBUTED_INVENTORY, ATTRIBUTED_SAMPLE, INVENTORY, SAMPLE_1, node_states


def _exported_labels() -> dict[str, set[str]]:
    """{sample name: label names} over everything the agent and the aggregator serve."""
    state = AgentMetricsState()
    state.record(INVENTORY, SAMPLE_1)
    agent = build_agent_registry(AgentMetricsProviders(state.readings, stream=lambda: StreamStatus(True)))
    attributed = AgentMetricsState()  # a node whose GPUs carry pods
    attributed.record(ATTRIBUTED_INVENTORY, ATTRIBUTED_SAMPLE)
    pods = build_agent_registry(AgentMetricsProviders(attributed.readings), process_metrics=False)
    aggregator = build_aggregator_registry(
        AggregatorMetricsProviders(
            node_states, "c", lambda: StabilityVerdict(True, 1.0), lambda: 0, per_node=True, clock=lambda: 2.0
        )
    )
    aggregator.register(quarantine_collector())
    labels: dict[str, set[str]] = {}
    for registry in (agent, pods, aggregator):
        for name, pairs in parse_exposition(generate_latest(registry).decode()):
            labels.setdefault(name, set()).update(k for k, _ in pairs)
    return labels


@pytest.fixture(scope="module")
def dashboard():
    return load_dashboard()


def test_every_metric_the_dashboard_asks_for_is_exported(dashboard):
    exported = _exported_labels()
    used = set()
    for title, expr in expressions(dashboard):
        names = set(METRIC_NAME.findall(expr))
        assert names, f"panel {title!r}: no aios metric in {expr!r}"
        used |= names
        missing = names - set(exported)
        assert not missing, f"panel {title!r} asks for {sorted(missing)}, which nothing exports"
        for metric, labels in selector_labels(expr):
            assert labels <= exported[metric], f"panel {title!r}: {metric} has no label(s) {labels - exported[metric]}"
    for query in template_queries(dashboard):
        metric, label = re.fullmatch(r"label_values\((\w+), (\w+)\)", query).groups()
        assert label in exported[metric], query
    # The dashboard covers the figures: GPUs, health, stability, ingest, agents.
    for name in (
        "aios_cluster_stable", "aios_cluster_stability_verdict_age_seconds", "aios_cluster_nodes",
        "aios_cluster_samples_received_total", "aios_cluster_policy_errors_total", "aios_gpu_utilization_ratio",
        "aios_gpu_xid_errors_total", "aios_gpu_throttle_reason", "aios_gpu_lost", "aios_agent_collector_success",
        "aios_agent_stream_connected", "aios_cluster_quarantine_nodes", "aios_cluster_quarantine_node",
        "aios_gpu_pod_info", "aios_gpu_process_memory_used_bytes",
    ):
        assert name in used, f"the dashboard shows nothing of {name}"


def test_layout(dashboard):
    panels = all_panels(dashboard)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    boxes = []
    for p in panels:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["w"] > 0 and g["x"] + g["w"] <= 24, p["title"]
        for other_title, (x, y, w, h) in boxes:
            overlap = g["x"] < x + w and x < g["x"] + g["w"] and g["y"] < y + h and y < g["y"] + g["h"]
            assert not overlap, f"panels {p['title']!r} and {other_title!r} overlap"
        boxes.append((p["title"], (g["x"], g["y"], g["w"], g["h"])))
        if p["type"] != "row":
            assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
            assert p["targets"], p["title"]
            refs = [t["refId"] for t in p["targets"]]
            assert len(refs) == len(set(refs)), p["title"]
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36


def test_promtool_parses_every_expression(dashboard, tmp_path):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package `prometheus`; .ci/run installs it)")
    # As recording rules, promtool parses every expression with Prometheus' own parser.
    lines = ["groups:", "  - name: dashboard", "    rules:"]
    for i, (_, expr) in enumerate(expressions(dashboard)):
        lines += [f"      - record: dashboard:expr_{i}", f"        expr: {json.dumps(expr)}"]
    rules = tmp_path / "rules.yml"
    rules.write_text("\n".join(lines) + "\n")
    result = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr

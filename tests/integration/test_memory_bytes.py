"""NVML's bytes, not whole MiB, all the way: the readings, the stream, the aggregator's store and queries,
both /metrics; MB (rounded down) only where the network's formats say MB (the annotation, nodes_data).

The fake NVML is given a board whose memory is not a whole number of MiB (7,516,205,123 B total,
as the issue saw it: 7,168 MiB + 12,355 B), with used memory off a MiB boundary too.
"""

from __future__ import annotations

import json
import re
import urllib.request
from dataclasses import replace

import pytest
from prometheus_client.parser import text_string_to_metric_families

from proto.telemetry.v1.readings import MIB
from tests.fakenvml.presets import t4
from tests.fakenvml.probe import ProbeProcess
from tests.support.telemetry import AgentProcess, AggregatorProcess, get_node
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

TOTAL = 7_516_205_123  # 7,168 MiB + 12,355 B
USED = 1_200 * MIB + 4_321
RESERVED = 255 * MIB
FREE = TOTAL - USED - RESERVED


@pytest.fixture
def odd_board(fake_nvml):
    board = replace(t4(0), memory_total_mb=TOTAL // MIB, memory_total_extra_bytes=TOTAL % MIB,
                    memory_used_mb=USED // MIB, memory_used_extra_bytes=USED % MIB, memory_reserved_mb=255)
    assert board.memory_bytes == (TOTAL, USED, RESERVED, FREE)
    return fake_nvml.configure(gpus=[board])


def test_the_readings_keep_nvmls_bytes_and_the_annotation_says_mb(odd_board):
    with ProbeProcess(odd_board.env) as probe:
        inventory, sample, annotation = probe.inventory(), probe.sample(), probe.annotation()
    assert inventory["gpus"][0]["memory_bytes"] == TOTAL
    gpu = sample["gpus"][0]
    assert (gpu["memory_total_bytes"], gpu["memory_used_bytes"], gpu["memory_free_bytes"],
            gpu["memory_reserved_bytes"]) == (TOTAL, USED, FREE, RESERVED)
    # the network's annotation: integer MB (1024*1024), rounded down
    assert json.loads(annotation)[0]["memory"] == 7168


def metric_values(text: str, name: str) -> dict[tuple, float]:
    return {tuple(sorted(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples if s.name == name}


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return answer.read().decode()


def test_bytes_reach_both_metrics_endpoints_and_the_aggregators_queries(tmp_path, odd_board):
    aggregator = AggregatorProcess(tmp_path, extra_args=("--no-kubernetes", "--per-node-metrics")).start()
    agent = AgentProcess(tmp_path, "node-m", aggregator.address, env=odd_board.env)
    try:
        port = int(wait_for(lambda: re.search(r"metrics and /healthz on port (\d+)", agent.log_path.read_text()),
                            timeout_s=60, what="the agent's start line").group(1))
        agent_metrics = wait_for(lambda: (text := scrape(f"http://127.0.0.1:{port}/metrics"))
                                 and "aios_gpu_memory_used_bytes" in text and text, what="the agent's GPU series")
        detail = wait_for(lambda: (d := get_node(aggregator.address, "node-m")) and d.latest_sample.gpus and d,
                          what="node-m's sample in the aggregator")
        aggregator_metrics = wait_for(
            lambda: (text := scrape(f"{aggregator.http_url}/metrics")) and "aios_gpu_memory_used_bytes" in text and text,
            what="node-m's series on the aggregator")
    finally:
        agent.stop()
        aggregator.stop()

    for text in (agent_metrics, aggregator_metrics):
        for name, expected in (("aios_gpu_memory_total_bytes", TOTAL), ("aios_gpu_memory_used_bytes", USED),
                               ("aios_gpu_memory_free_bytes", FREE), ("aios_gpu_memory_reserved_bytes", RESERVED)):
            (value,) = metric_values(text, name).values()
            assert value == expected, (name, value)
    (cluster_total,) = metric_values(aggregator_metrics, "aios_cluster_gpu_memory_total_bytes").values()
    assert cluster_total == TOTAL

    # over gRPC and out of the aggregator's store: the bytes, and the deprecated MiB beside them
    gpu = detail.latest_sample.gpus[0]
    assert (gpu.memory_total_bytes, gpu.memory_used_bytes, gpu.memory_free_bytes) == (TOTAL, USED, FREE)
    assert (gpu.memory_total_mb, gpu.memory_used_mb) == (7168, 1200)
    assert detail.inventory.gpus[0].memory_bytes == TOTAL and detail.inventory.gpus[0].memory_mb == 7168
    assert detail.summary.gpu_memory_mb == 7168  # the node table's MB column

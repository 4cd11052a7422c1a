"""The aggregator's checks on the attribution parts of a sample: sizes, kinds, scopes and ranges."""

import pytest

from aggregator.telemetry import wire_checks
from aggregator.telemetry.attribution_checks import MAX_PROCESSES_PER_GPU, check_attribution
from proto.telemetry.v1 import convert
from proto.telemetry.v1 import telemetry_pb2 as pb
from tests.metrics_fixtures.readings import ATTRIBUTED_SAMPLE


def _msg() -> pb.NodeSample:
    return convert.sample_to_pb(ATTRIBUTED_SAMPLE)


def test_a_real_attributed_sample_passes():
    assert check_attribution(_msg()) is None
    assert wire_checks.check_sample(_msg(), frozenset({0, 1})) is None


def _many_processes(m):
    for pid in range(MAX_PROCESSES_PER_GPU):
        m.gpus[0].processes.add(pid=10_000 + pid, kind="compute")


@pytest.mark.parametrize(
    "mutate, reason",
    [
        (lambda m: setattr(m.gpus[0].processes[0], "kind", "mining"),
         "sample.gpus[0].processes[0].kind: 'mining' is not one of compute, graphics, compute+graphics"),
        (lambda m: setattr(m.gpus[0].processes[1], "sm_utilization_pct", 250.0),
         "sample.gpus[0].processes[1]: a utilization above 100 %"),
        (_many_processes, "sample.gpus[0].processes: 1027 processes, at most 1024"),
        (lambda m: setattr(m.gpus[1].migs[0], "memory_used_bytes", 2**50),
         "sample.gpus[1].migs[0].memory_used_bytes: more than memory_total_bytes"),
        (lambda m: setattr(m.attribution.owners[0], "scope", "guest"),
         "sample.attribution.owners[0].scope: 'guest' is not one of pod, container, host, unknown"),
        (lambda m: setattr(m.attribution.allocations[0], "pod", "p" * 300),
         "sample.attribution.allocations[0].pod: longer than 253 characters"),
        (lambda m: setattr(m.attribution, "reason", "x" * 5000), "sample.attribution.reason: longer than 1024 characters"),
        (lambda m: m.attribution.owners[1].pids.extend(range(1, 20_000)),
         "sample.attribution.owners[1].pids: more than 16384 pids in all"),
    ],
)  # fmt: skip
def test_bad_attribution_is_refused_naming_the_field(mutate, reason):
    msg = _msg()
    mutate(msg)
    assert check_attribution(msg) == reason
    assert wire_checks.check_sample(msg, frozenset({0, 1})) == reason


def test_a_sample_without_attribution_passes_as_before():
    msg = _msg()
    msg.ClearField("attribution")
    for gpu in msg.gpus:
        gpu.ClearField("processes")
        gpu.ClearField("migs")
    assert check_attribution(msg) is None

"""Validation of incoming agent messages and the figures read from samples."""

import math

import pytest

from aggregator.telemetry import wire_checks
from proto.telemetry.v1 import convert
from proto.telemetry.v1 import telemetry_pb2 as pb
from proto.telemetry.v1.readings import HealthEvent
from tests.support.telemetry import inventory, sample

GPUS = frozenset({0, 1})


def test_a_good_sample_passes_and_its_figures_are_read():
    msg = convert.sample_to_pb(sample(3))
    assert wire_checks.check_sample(msg, GPUS) is None
    fig = wire_checks.sample_figures(msg)
    assert (fig.timestamp, fig.cpu_percent, fig.gpu_problems) == (1_764_400_003.0, 3.0, ())
    assert fig.gpu_utilization_pct == pytest.approx(3.5)
    assert fig.memory_used_pct == pytest.approx(100 * 1003 / 257_000)


@pytest.mark.parametrize(
    "mutate, reason",
    [
        (lambda m: setattr(m.gpus[0], "temperature_c", math.inf), "sample.gpus[0].temperature_c: inf is not a finite number"),
        (lambda m: setattr(m.host, "cpu_percent", math.nan), "sample.host.cpu_percent: nan is not a finite number"),
        (lambda m: setattr(m.host, "load1", -0.5), "sample.host.load1: -0.5 is negative"),
        (lambda m: m.host.nics.add(name="eth0", tx_bytes_per_s=-1), "sample.host.nics[0].tx_bytes_per_s: -1.0 is negative"),
        (lambda m: setattr(m.gpus[1], "index", 5), "sample.gpus[1].index: GPU index 5 is not in the node's inventory"),
        (lambda m: setattr(m.gpus[1], "index", 0), "sample.gpus[1].index: GPU index 0 appears twice"),
        (lambda m: setattr(m, "timestamp", 0.0), "sample.timestamp: 0.0 is not a positive finite number"),
        (lambda m: m.collectors.add(name="gpu", duration_s=-1.0), "sample.collectors[0].duration_s: -1.0 is negative"),
    ],
)
def test_bad_samples_are_refused_naming_the_field(mutate, reason):
    msg = convert.sample_to_pb(sample(3))
    mutate(msg)
    assert wire_checks.check_sample(msg, GPUS) == reason


def test_negative_temperature_is_allowed():
    msg = convert.sample_to_pb(sample(3))
    msg.gpus[0].temperature_c = -5.0
    assert wire_checks.check_sample(msg, GPUS) is None


def test_sample_problems():
    msg = convert.sample_to_pb(sample(3))
    msg.gpus[0].lost = True
    msg.gpus[1].remapped_rows_failure = True
    msg.gpus[1].ecc_uncorrected_volatile = 2
    assert wire_checks.sample_figures(msg).gpu_problems == (
        "gpu 0 lost", "gpu 1 row_remap_failure", "gpu 1 ecc_uncorrectable")
    # a GPU of the inventory missing from the sample is lost too
    assert wire_checks.sample_figures(msg, frozenset({0, 1, 2, 5})).gpu_problems == (
        "gpu 0 lost", "gpu 1 row_remap_failure", "gpu 1 ecc_uncorrectable", "gpu 2 lost", "gpu 5 lost")


def test_hello_and_inventory_checks():
    hello = pb.Hello(node_id="a", agent_instance="x", inventory=convert.inventory_to_pb(inventory("a")), interval_s=10)
    assert wire_checks.check_hello(hello) is None
    assert wire_checks.check_hello(pb.Hello(node_id="a", agent_instance="x")) == "hello.inventory: missing"
    assert wire_checks.check_hello(pb.Hello(agent_instance="x")) == "hello.node_id: empty"
    other = convert.inventory_to_pb(inventory("b"))
    assert "does not match the hello's node id 'a'" in wire_checks.check_inventory(other, "a")
    dup = convert.inventory_to_pb(inventory("a"))
    dup.gpus[1].index = 0
    assert wire_checks.check_inventory(dup, "a") == "inventory.gpus[1].index: GPU index 0 appears twice"
    neg = convert.inventory_to_pb(inventory("a"))
    neg.gpus[0].power_limit_w = -1
    assert wire_checks.check_inventory(neg, "a") == "inventory.gpus[0].power_limit_w: -1.0 is negative"


def test_health_checks():
    ok = convert.health_to_pb(HealthEvent("xid", 5.0, gpu_index=1, xid=79))
    assert wire_checks.check_health(ok, GPUS) is None
    assert "is not one of" in wire_checks.check_health(pb.HealthEvent(kind="meltdown", timestamp=5.0), GPUS)
    bad = convert.health_to_pb(HealthEvent("row_remap_failure", 5.0, gpu_index=9))
    assert wire_checks.check_health(bad, GPUS) == "health.gpu_index: GPU index 9 is not in the node's inventory"
    # a lost GPU may already have left the inventory
    assert wire_checks.check_health(convert.health_to_pb(HealthEvent("gpu_lost", 5.0, gpu_index=9)), GPUS) is None


def test_a_lost_gpu_may_be_missing_from_the_inventory():
    msg = convert.sample_to_pb(sample(3))
    msg.gpus[1].lost = True
    assert wire_checks.check_sample(msg, frozenset({0})) is None
    msg.gpus[1].lost = False
    assert "GPU index 1 is not in the node's inventory" in wire_checks.check_sample(msg, frozenset({0}))

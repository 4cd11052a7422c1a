"""The agent's GPU health tracker on literal readings: which Node conditions it asks for."""

from dataclasses import replace

import pytest

from agent.gpu.health_tracker import GpuHealthTracker, agent_rule_from_env
from proto.telemetry.v1.readings import Acknowledgement, GpuInventory, GpuSample, HealthEvent, NodeInventory, NodeSample

T0 = 1_764_400_000.0
INVENTORY = NodeInventory(
    node_id="n1", node_name="n1", host=None,
    gpus=(GpuInventory(0, "GPU-a", "H100", 81559), GpuInventory(1, "GPU-b", "H100", 81559)),
)
TYPES = {"GPUXidCritical", "GPULost", "GPUMemoryErrors", "GPUUnresponsive", "GPUThermalThrottling"}


class Clock:
    def __init__(self, t=T0):
        self.t = t

    def __call__(self):
        return self.t


def sample(*gpus, at):
    return NodeSample(timestamp=at, host=None, gpus=tuple(gpus) or (GpuSample(0, "GPU-a"), GpuSample(1, "GPU-b")))


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def tracker(clock):
    tracker = GpuHealthTracker(agent_rule_from_env({}), clock=clock, call_bound_s=5.0)
    tracker.observe_inventory(INVENTORY)
    tracker.observe_sample(sample(at=T0))
    return tracker


def by_type(states):
    return {s.type: s for s in states}


def test_every_type_starts_false_with_its_healthy_reason(tracker):
    seen = []
    tracker.on_change(seen.append)
    states = by_type(seen[0])
    assert set(states) == TYPES
    assert {t: (s.status, s.reason) for t, s in states.items()} == {
        "GPUXidCritical": (False, "NoCriticalXid"),
        "GPULost": (False, "AllGpusPresent"),
        "GPUMemoryErrors": (False, "NoMemoryErrors"),
        "GPUUnresponsive": (False, "AllGpusResponsive"),
        "GPUThermalThrottling": (False, "NoThermalThrottling"),
    }
    assert states["GPUUnresponsive"].message == "every NVML call returns within 5 s"


def test_xid_79_pushed_names_the_gpu_the_xid_and_the_action_then_acknowledged(tracker, clock):
    seen = []
    tracker.on_change(seen.append)
    clock.t = T0 + 30
    tracker.observe_event(HealthEvent("xid", T0 + 29.5, gpu_index=1, gpu_uuid="GPU-b", xid=79))
    xid = by_type(seen[-1])["GPUXidCritical"]
    assert xid.status is True
    assert xid.reason == "XidNeedsNodeReboot"
    assert xid.message == (
        "GPU 1 (GPU-b): XID 79 (ROBUST_CHANNEL_GPU_HAS_FALLEN_OFF_THE_BUS): GPU has fallen off the bus; reboot the node"
    )
    assert xid.since == T0 + 29.5  # when it happened, not when it was judged
    changes = len(seen)
    tracker.observe_sample(sample(at=T0 + 40))  # the same problem again: no new state to hand on
    assert len(seen) == changes
    clock.t = T0 + 60
    tracker.acknowledge(Acknowledgement(up_to=T0 + 29.5, gpu_index=1, reason="ops: rebooted"))
    xid = by_type(seen[-1])["GPUXidCritical"]
    assert (xid.status, xid.reason, xid.since) == (False, "AcknowledgedByOperator", T0 + 60)
    assert xid.message == "acknowledged by the operator: ops: rebooted"
    # a newer XID counts again
    clock.t = T0 + 70
    tracker.observe_event(HealthEvent("xid", T0 + 70, gpu_index=1, gpu_uuid="GPU-b", xid=48))
    xid = by_type(seen[-1])["GPUXidCritical"]
    assert (xid.status, xid.reason) == (True, "XidNeedsGpuReset")


def test_an_xid_the_catalogue_calls_benign_is_no_condition(tracker, clock):
    seen = []
    tracker.on_change(seen.append)
    tracker.observe_event(HealthEvent("xid", T0, gpu_index=0, gpu_uuid="GPU-a", xid=13))  # the application's fault
    assert len(seen) == 1


def test_an_xid_stops_counting_after_the_event_window(tracker, clock):
    seen = []
    tracker.on_change(seen.append)
    tracker.observe_event(HealthEvent("xid", T0, gpu_index=0, gpu_uuid="GPU-a", xid=48))
    assert by_type(seen[-1])["GPUXidCritical"].status is True
    clock.t = T0 + 601
    tracker.observe_sample(sample(at=T0 + 601))
    xid = by_type(seen[-1])["GPUXidCritical"]
    assert (xid.status, xid.reason) == (False, "NoRecentCriticalXid")


def test_lost_gpu_then_back(tracker, clock):
    seen = []
    tracker.on_change(seen.append)
    clock.t = T0 + 10
    tracker.observe_sample(sample(GpuSample(0, "GPU-a"), GpuSample(1, "GPU-b", lost=True, error="NVML_ERROR_GPU_IS_LOST"),
                                  at=T0 + 10))
    lost = by_type(seen[-1])["GPULost"]
    assert (lost.status, lost.reason, lost.since) == (True, "GpuLost", T0 + 10)
    assert lost.message == "GPU 1 (GPU-b): GPU lost: NVML_ERROR_GPU_IS_LOST; reboot the node"
    clock.t = T0 + 20
    tracker.observe_sample(sample(at=T0 + 20))
    lost = by_type(seen[-1])["GPULost"]
    assert (lost.status, lost.reason, lost.since) == (False, "GpuAnswersAgain", T0 + 20)


def test_a_hung_call_is_gpu_unresponsive_naming_the_call(tracker, clock):
    seen = []
    tracker.on_change(seen.append)
    hung = GpuSample(1, "GPU-b", error="nvmlDeviceGetTemperature did not return within 5 s")
    tracker.observe_sample(sample(GpuSample(0, "GPU-a", temperature_c=40.0), hung, at=T0 + 10))
    state = by_type(seen[-1])["GPUUnresponsive"]
    assert (state.status, state.reason) == (True, "NvmlCallHung")
    assert "GPU 1 (GPU-b)" in state.message and "nvmlDeviceGetTemperature did not return within 5 s" in state.message
    assert tracker.unresponsive_gpus() == [1]


def test_the_drivers_recovery_action_is_a_problem_of_its_own(tracker, clock):
    seen = []
    tracker.on_change(seen.append)
    tracker.observe_sample(sample(GpuSample(0, "GPU-a", recovery_action=2), GpuSample(1, "GPU-b"), at=T0 + 10))
    xid = by_type(seen[-1])["GPUXidCritical"]
    assert (xid.status, xid.reason) == (True, "DriverAsksNodeReboot")
    assert xid.message == "GPU 0 (GPU-a): the driver's recovery action is NODE_REBOOT; reboot the node"


def test_memory_errors_and_their_end(tracker, clock):
    seen = []
    tracker.on_change(seen.append)
    tracker.observe_sample(sample(GpuSample(0, "GPU-a", ecc_uncorrected_volatile=3), GpuSample(1, "GPU-b"), at=T0 + 10))
    memory = by_type(seen[-1])["GPUMemoryErrors"]
    assert (memory.status, memory.reason) == (True, "UncorrectableEccErrors")
    assert memory.message == "GPU 0 (GPU-a): 3 uncorrectable ECC error(s) since the last reset; reset the GPU"
    clock.t = T0 + 20
    tracker.observe_sample(sample(GpuSample(0, "GPU-a", ecc_uncorrected_volatile=0), GpuSample(1, "GPU-b"), at=T0 + 20))
    assert by_type(seen[-1])["GPUMemoryErrors"].reason == "MemoryErrorsStopped"


def test_a_slowdown_counts_once_it_lasted_longer_than_the_threshold(tracker, clock):
    seen = []
    tracker.on_change(seen.append)
    hot = GpuSample(0, "GPU-a", throttle_reasons=("hw_thermal_slowdown",))
    for t in (T0 + 10, T0 + 200, T0 + 311):
        clock.t = t
        tracker.observe_sample(sample(hot, GpuSample(1, "GPU-b"), at=t))
        if t < T0 + 311:
            assert by_type(seen[-1])["GPUThermalThrottling"].status is False
    state = by_type(seen[-1])["GPUThermalThrottling"]
    assert (state.status, state.reason, state.since) == (True, "ThermalSlowdown", T0 + 10)


def test_several_problems_of_one_kind_worst_first(tracker, clock):
    seen = []
    tracker.on_change(seen.append)
    tracker.observe_event(HealthEvent("xid", T0, gpu_index=0, gpu_uuid="GPU-a", xid=48))
    tracker.observe_event(HealthEvent("xid", T0 + 1, gpu_index=1, gpu_uuid="GPU-b", xid=79))
    xid = by_type(seen[-1])["GPUXidCritical"]
    assert xid.reason == "XidNeedsNodeReboot"
    assert xid.message.startswith("GPU 1 (GPU-b): XID 79") and " | GPU 0 (GPU-a): XID 48" in xid.message
    assert xid.since == T0  # the first of them


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="AIOS_THROTTLE_THRESHOLD_S='soon'"):
        agent_rule_from_env({"AIOS_THROTTLE_THRESHOLD_S": "soon"})
    assert replace(agent_rule_from_env({"AIOS_GPU_EVENT_WINDOW_S": "3600"})).event_window_s == 3600.0

"""The one GPU health rule on literal readings (proto/health/gpu_rule.py)."""

from proto.health.gpu_rule import (
    HealthRule,
    ProblemCause,
    ProblemKind,
    event_problems,
    gpu_problem_labels,
    lost_reason,
    node_problems,
    sample_problems,
)
from proto.health.xid_catalog import Resolution
from proto.telemetry.v1 import telemetry_pb2 as pb
from proto.telemetry.v1.readings import MIB, GpuInventory, GpuSample, HealthEvent, NodeInventory, NodeSample

NOW = 1_764_400_000.0
INVENTORY = NodeInventory(
    node_id="n1", node_name="n1", host=None,
    gpus=(GpuInventory(0, "GPU-a", "A100", 81920 * MIB), GpuInventory(1, "GPU-b", "A100", 81920 * MIB)),
)
HEALTHY = (GpuSample(0, "GPU-a"), GpuSample(1, "GPU-b"))


def sample(*gpus, at=NOW - 5):
    return NodeSample(timestamp=at, host=None, gpus=tuple(gpus))


def xid(code, at=NOW - 1, gpu=0):
    return HealthEvent("xid", at, gpu_index=gpu, gpu_uuid="GPU-a", xid=code)


def labels(problems):
    return [p.label for p in problems]


def test_healthy_node_has_no_problem():
    assert node_problems(INVENTORY, sample(*HEALTHY), [xid(13), xid(43), xid(94), xid(63)], NOW) == ()


def test_fatal_xid_names_gpu_xid_and_action():
    (problem,) = node_problems(INVENTORY, sample(*HEALTHY), [xid(79)], NOW)
    assert (problem.kind, problem.cause, problem.gpu_index, problem.gpu_uuid, problem.xid, problem.resolution) == (
        ProblemKind.XID_CRITICAL, ProblemCause.XID, 0, "GPU-a", 79, Resolution.REBOOT_NODE)
    assert problem.label == "gpu 0 xid 79"
    assert problem.message == (
        "GPU 0 (GPU-a): XID 79 (ROBUST_CHANNEL_GPU_HAS_FALLEN_OFF_THE_BUS): "
        "GPU has fallen off the bus; reboot the node")
    assert problem.kind.condition_type == "GPUXidCritical"


def test_fatal_xid_counts_for_the_window_only():
    assert labels(event_problems([xid(48, at=NOW - 599)], NOW)) == ["gpu 0 xid 48"]
    assert event_problems([xid(48, at=NOW - 601)], NOW) == ()
    assert labels(event_problems([xid(48, at=NOW - 601)], NOW, HealthRule(event_window_s=3600))) == ["gpu 0 xid 48"]


def test_operator_fatal_list_wins_and_a_benign_xid_made_fatal_asks_for_a_reset():
    rule = HealthRule(fatal_xids=frozenset({13}))
    (problem,) = event_problems([xid(13), xid(79)], NOW, rule)
    assert (problem.xid, problem.resolution) == (13, Resolution.RESET_GPU)
    unknown = event_problems([xid(4242)], NOW, HealthRule(fatal_xids=frozenset({4242})))
    assert [(p.detail, p.resolution) for p in unknown] == [("XID 4242", Resolution.CONTACT_SUPPORT)]


def test_node_level_xid():
    event = HealthEvent("xid", NOW, xid=48)
    assert labels(event_problems([event], NOW)) == ["node xid 48"]


def test_memory_errors_from_the_sample():
    gpus = (GpuSample(0, "GPU-a", ecc_uncorrected_volatile=2), GpuSample(1, "GPU-b", remapped_rows_failure=True))
    problems = node_problems(INVENTORY, sample(*gpus), [], NOW)
    assert [(p.label, p.kind, p.resolution) for p in problems] == [
        ("gpu 0 ecc_uncorrectable", ProblemKind.MEMORY_ERRORS, Resolution.RESET_GPU),
        ("gpu 1 row_remap_failure", ProblemKind.MEMORY_ERRORS, Resolution.CONTACT_SUPPORT),
    ]
    assert problems[0].detail == "2 uncorrectable ECC error(s) since the last reset"


def test_pending_repairs_only_when_asked():
    gpus = (GpuSample(0, "GPU-a", remapped_rows_pending=True), GpuSample(1, "GPU-b", retired_pages_pending=True))
    assert node_problems(INVENTORY, sample(*gpus), [], NOW) == ()
    problems = node_problems(INVENTORY, sample(*gpus), [], NOW, HealthRule(pending_repairs=True))
    assert labels(problems) == ["gpu 0 row_remap_pending", "gpu 1 retired_pages_pending"]


def test_memory_error_events():
    events = [HealthEvent("ecc_uncorrectable", NOW - 10, gpu_index=1), HealthEvent("row_remap_failure", NOW - 20, gpu_index=0)]
    assert labels(node_problems(INVENTORY, sample(*HEALTHY), events, NOW)) == [
        "gpu 1 ecc_uncorrectable", "gpu 0 row_remap_failure"]


def test_lost_in_the_sample_or_missing_from_it():
    problems = node_problems(INVENTORY, sample(GpuSample(0, "GPU-a", lost=True, error="NVML_ERROR_GPU_IS_LOST")), [], NOW)
    assert [(p.label, p.detail, p.resolution) for p in problems] == [
        ("gpu 0 lost", "GPU lost: NVML_ERROR_GPU_IS_LOST", Resolution.REBOOT_NODE),
        ("gpu 1 lost", "GPU lost: in the inventory but missing from the latest sample", Resolution.REBOOT_NODE),
    ]
    assert problems[0].kind.condition_type == "GPULost"


def test_lost_the_newer_of_event_and_sample_wins():
    lost = HealthEvent("gpu_lost", NOW - 10, gpu_index=1, nvml_error="NVML_ERROR_GPU_IS_LOST")
    recovered = HealthEvent("gpu_recovered", NOW - 2, gpu_index=1)
    # no sample yet: the event decides
    assert lost_reason(None, [lost], sample_time=None) == "NVML_ERROR_GPU_IS_LOST"
    assert lost_reason(None, [recovered, lost], sample_time=None) is None
    # an event newer than the sample decides
    assert lost_reason(GpuSample(1, "GPU-b"), [lost], sample_time=NOW - 20) == "NVML_ERROR_GPU_IS_LOST"
    # a sample newer than the event decides
    assert lost_reason(GpuSample(1, "GPU-b"), [lost], sample_time=NOW - 5) is None
    assert lost_reason(GpuSample(1, "GPU-b", lost=True), [recovered], sample_time=NOW) == "the GPU stopped answering"
    assert labels(node_problems(INVENTORY, sample(*HEALTHY, at=NOW - 20), [lost], NOW)) == ["gpu 1 lost"]
    assert node_problems(INVENTORY, sample(*HEALTHY, at=NOW - 5), [lost], NOW) == ()
    lost_sample = sample(GpuSample(0, "GPU-a"), GpuSample(1, "GPU-b", lost=True), at=NOW - 5)
    assert node_problems(INVENTORY, lost_sample, [recovered], NOW) == ()


def test_a_lost_gpu_does_not_heal_with_time():
    lost = HealthEvent("gpu_lost", NOW - 100_000, gpu_index=1)
    assert labels(node_problems(INVENTORY, None, [lost], NOW)) == ["gpu 1 lost"]


def test_unresponsive_only_when_asked():
    gpus = (GpuSample(0, "GPU-a", error="NVML_ERROR_TIMEOUT"), GpuSample(1, "GPU-b"))
    assert node_problems(INVENTORY, sample(*gpus), [], NOW) == ()
    (problem,) = node_problems(INVENTORY, sample(*gpus), [], NOW, HealthRule(unresponsive=True))
    assert (problem.kind.condition_type, problem.detail) == ("GPUUnresponsive", "the GPU could not be read: NVML_ERROR_TIMEOUT")


def test_thermal_throttling_needs_a_threshold_and_a_duration():
    gpus = (GpuSample(0, "GPU-a", throttle_reasons=("hw_thermal_slowdown", "sw_power_cap")), GpuSample(1, "GPU-b"))
    since = {(0, "hw_thermal_slowdown"): NOW - 400, (0, "sw_power_cap"): NOW - 400}
    assert node_problems(INVENTORY, sample(*gpus), [], NOW, throttle_since=since) == ()
    rule = HealthRule(throttle_threshold_s=300)
    (problem,) = node_problems(INVENTORY, sample(*gpus), [], NOW, rule, throttle_since=since)
    assert (problem.kind.condition_type, problem.detail) == (
        "GPUThermalThrottling", "hw_thermal_slowdown for 400s (threshold 300s)")
    assert node_problems(INVENTORY, sample(*gpus), [], NOW, rule, throttle_since={(0, "hw_thermal_slowdown"): NOW - 200}) == ()


def test_sample_and_event_of_the_same_problem_count_once():
    gpus = (GpuSample(0, "GPU-a", ecc_uncorrected_volatile=1), GpuSample(1, "GPU-b"))
    events = [HealthEvent("ecc_uncorrectable", NOW - 1, gpu_index=0)]
    assert labels(node_problems(INVENTORY, sample(*gpus), events, NOW)) == ["gpu 0 ecc_uncorrectable"]


def test_the_protobuf_sample_reads_the_same():
    msg = pb.NodeSample(timestamp=NOW)
    msg.gpus.add(index=0, uuid="GPU-a", lost=True)
    msg.gpus.add(index=1, uuid="GPU-b", ecc_uncorrected_volatile=3, remapped_rows_failure=True)
    assert labels(sample_problems(msg.gpus, {0: "GPU-a", 1: "GPU-b", 2: "GPU-c"})) == [
        "gpu 0 lost", "gpu 1 row_remap_failure", "gpu 1 ecc_uncorrectable", "gpu 2 lost"]


def test_labels_for_a_holder_of_sample_labels():
    lost = HealthEvent("gpu_lost", NOW - 10, gpu_index=1)
    recovered = HealthEvent("gpu_recovered", NOW - 1, gpu_index=0)
    assert gpu_problem_labels(["gpu 0 lost"], NOW - 20, [recovered, lost, xid(79)], NOW) == ("gpu 1 lost", "gpu 0 xid 79")
    assert gpu_problem_labels(["gpu 0 lost"], NOW, [recovered], NOW) == ("gpu 0 lost",)
    assert gpu_problem_labels([], None, [lost], NOW) == ("gpu 1 lost",)

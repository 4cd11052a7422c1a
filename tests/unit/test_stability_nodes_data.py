"""build_nodes_data on literal NodeStates, against literal expected entries."""

import dataclasses

from aggregator.stability.nodes_data import ThrottleTracker, build_nodes_data, healthy_node_ids
from aggregator.telemetry.model import NodeState
from proto.telemetry.v1.readings import (
    MIB,
    Attribution,
    DeviceAllocation,
    GpuInventory,
    GpuProcess,
    GpuSample,
    HealthEvent,
    HostInventory,
    HostSample,
    NodeInventory,
    NodeSample,
    ProcessOwner,
    ResourceCount,
)

NOW = 1_700_000_100.0

HOST_INV = HostInventory(
    hostname="gpu-a", kernel="6.1", os="Debian 12", cpu_logical=64, cpu_physical=32,
    memory_total_bytes=515_000 * MIB, swap_total_bytes=0,
)


def gpu_node() -> NodeState:
    inventory = NodeInventory(
        node_id="gpu-a",
        node_name="gpu-a",
        host=HOST_INV,
        gpus=(
            GpuInventory(index=0, uuid="GPU-0000", name="NVIDIA H100 80GB HBM3", memory_bytes=81_559 * MIB),
            GpuInventory(index=1, uuid="GPU-1111", name="NVIDIA H100 80GB HBM3", memory_bytes=81_559 * MIB),
        ),
        driver_version="550.54.15",
    )
    sample = NodeSample(
        timestamp=1_700_000_090.0,
        host=HostSample(
            cpu_percent=37.456, memory_total_bytes=515_000 * MIB, memory_available_bytes=386_250 * MIB,
            fs_total_bytes=1_000_000 * MIB, fs_used_bytes=250_000 * MIB,
        ),
        gpus=(
            GpuSample(
                index=0, uuid="GPU-0000", utilization_gpu_pct=91.0, memory_total_bytes=81_559 * MIB,
                memory_used_bytes=40_000 * MIB, temperature_c=71.0, power_draw_w=650.5,
                throttle_reasons=("hw_thermal_slowdown",), ecc_uncorrected_volatile=0,
                ecc_uncorrected_aggregate=2, remapped_rows_pending=True, remapped_rows_failure=False,
                compute_processes=1, processes=(GpuProcess(4101, "compute", 30 * 1024**3, 85.0, 40.0),),
            ),
            GpuSample(index=1, uuid="GPU-1111", lost=True, error="NVML_ERROR_GPU_IS_LOST"),
        ),
        attribution=Attribution(
            available=True, refreshed_at=1_700_000_080.0, pods=5,
            allocations=(DeviceAllocation("ml", "train-0", "trainer", "nvidia.com/gpu", "GPU-0000", "GPU-0000"),),
            owners=(ProcessOwner("pod", (4101,), "ml", "train-0", "trainer", "6b1f0c2e-7d4a-4e8b-9c3d-2a1b0c9d8e7f",
                                 "3f" * 32, "containerd"),),
            allocatable=(ResourceCount("nvidia.com/gpu", 2),),
        ),
    )
    events = (  # recent first, like the registry keeps them
        HealthEvent(kind="gpu_lost", timestamp=1_700_000_080.0, gpu_index=1, gpu_uuid="GPU-1111",
                    nvml_error="NVML_ERROR_GPU_IS_LOST"),
        HealthEvent(kind="xid", timestamp=1_700_000_079.0, gpu_index=1, gpu_uuid="GPU-1111", xid=79),
        HealthEvent(kind="xid", timestamp=1_700_000_050.0, gpu_index=0, gpu_uuid="GPU-0000", xid=13),
        HealthEvent(kind="xid", timestamp=1_700_000_000.0, gpu_index=0, gpu_uuid="GPU-0000", xid=13),
    )
    return NodeState(
        node_id="gpu-a", status="unhealthy", inventory=inventory, latest=sample,
        last_seen=1_700_000_090.0, first_seen=1_699_999_000.0, health_events=events,
    )


def cpu_node_stale() -> NodeState:
    inventory = NodeInventory(node_id="cpu-b", node_name="cpu-b", host=HOST_INV, nvml_status="library not found")
    return NodeState(
        node_id="cpu-b", status="stale", inventory=inventory, latest=None,
        last_seen=1_700_000_000.0, first_seen=1_699_990_000.0,
    )


def test_entries_match_the_documented_shape_with_measured_values():
    throttle_since = {("gpu-a", 0, "hw_thermal_slowdown"): 1_700_000_000.0}
    got = build_nodes_data([gpu_node(), cpu_node_stale()], NOW, throttle_since)
    assert got == [
        {
            "node_id": "cpu-b",
            "status": "unhealthy",
            "state": "stale",
            "stale": True,
            "last_seen": 1_700_000_000.0,
            "seconds_since_seen": 100.0,
            "cpu_utilization_percent": None,
            "memory": {"total": 515_000, "allocatable": None, "usage_percent": None},
            "disk": {"total": None, "allocatable": None, "usage_percent": None},
            "gpu_count": 0,
            "nvml_status": "library not found",
            "gpu_attribution": None,
            "gpus": [],
        },
        {
            "node_id": "gpu-a",
            "status": "unhealthy",
            "state": "unhealthy",
            "stale": False,
            "last_seen": 1_700_000_090.0,
            "seconds_since_seen": 10.0,
            "cpu_utilization_percent": 37.46,
            "memory": {"total": 515_000, "allocatable": 386_250, "usage_percent": 25.0},
            "disk": {"total": 1_000_000, "allocatable": 750_000, "usage_percent": 25.0},
            "gpu_count": 2,
            "nvml_status": "ok",
            "gpu_attribution": {
                "available": True, "reason": "", "refreshed_at": 1_700_000_080.0, "age_s": 20.0, "pods": 5,
                "allocatable": {"nvidia.com/gpu": 2},
                "gpus_allocated": 1, "gpus_in_use": 1, "gpus_allocated_idle": 0, "gpus_in_use_unallocated": 0,
            },
            "gpus": [
                {
                    "id": 0,
                    "uuid": "GPU-0000",
                    "name": "NVIDIA H100 80GB HBM3",
                    "utilization": 91.0,
                    "memory": {"total": 81_559, "used": 40_000, "usage_percent": 49.04},
                    "temperature_c": 71.0,
                    "power_draw_w": 650.5,
                    "lost": False,
                    "lost_reason": None,
                    "health": {
                        "xids": [{"code": 13, "count": 2, "first_time": 1_700_000_000.0,
                                  "last_time": 1_700_000_050.0, "age_s": 50.0}],
                        "ecc_uncorrected_volatile": 0,
                        "ecc_uncorrected_aggregate": 2,
                        "ecc_uncorrectable_events": 0,
                        "row_remap_failure": False,
                        "row_remap_pending": True,
                        "retired_pages_pending": False,
                        "throttle": [{"reason": "hw_thermal_slowdown", "since": 1_700_000_000.0, "duration_s": 100.0}],
                        "error": "",
                    },
                    "pods": [{"namespace": "ml", "pod": "train-0", "container": "trainer", "resource": "nvidia.com/gpu",
                              "mig_uuid": "", "claim": ""}],
                    "processes": [{
                        "pid": 4101, "kind": "compute", "used_memory_mb": 30_720, "sm_utilization": 85.0,
                        "memory_utilization": 40.0, "mig_uuid": "", "scope": "pod", "namespace": "ml", "pod": "train-0",
                        "container": "trainer", "pod_uid": "6b1f0c2e-7d4a-4e8b-9c3d-2a1b0c9d8e7f", "container_id": "3f" * 32,
                    }],
                    "migs": [],
                    "allocated": True,
                    "in_use": True,
                },
                {
                    "id": 1,
                    "uuid": "GPU-1111",
                    "name": "NVIDIA H100 80GB HBM3",
                    "utilization": None,
                    "memory": {"total": 81_559, "used": None, "usage_percent": None},
                    "temperature_c": None,
                    "power_draw_w": None,
                    "lost": True,
                    "lost_reason": "NVML_ERROR_GPU_IS_LOST",
                    "health": {
                        "xids": [{"code": 79, "count": 1, "first_time": 1_700_000_079.0,
                                  "last_time": 1_700_000_079.0, "age_s": 21.0}],
                        "ecc_uncorrected_volatile": None,
                        "ecc_uncorrected_aggregate": None,
                        "ecc_uncorrectable_events": 0,
                        "row_remap_failure": False,
                        "row_remap_pending": False,
                        "retired_pages_pending": False,
                        "throttle": [],
                        "error": "NVML_ERROR_GPU_IS_LOST",
                    },
                    "pods": [],
                    "processes": [],
                    "migs": [],
                    "allocated": False,
                    "in_use": None,
                },
            ],
        },
    ]
    assert healthy_node_ids(got) == []


def test_a_gpu_missing_from_the_sample_counts_as_lost_and_a_recovered_one_does_not():
    node = gpu_node()
    sample = NodeSample(timestamp=node.latest.timestamp, host=node.latest.host, gpus=(node.latest.gpus[0],))
    missing = NodeState(**{**node.__dict__, "latest": sample, "status": "healthy", "health_events": ()})
    entry = build_nodes_data([missing], NOW)[0]
    assert [(g["id"], g["lost"], g["lost_reason"]) for g in entry["gpus"]] == [
        (0, False, None),
        (1, True, "in the inventory but missing from the latest sample"),
    ]
    with_event = NodeState(**{**missing.__dict__, "health_events": node.health_events})
    assert build_nodes_data([with_event], NOW)[0]["gpus"][1]["lost_reason"] == "NVML_ERROR_GPU_IS_LOST"
    assert (entry["status"], entry["state"]) == ("unhealthy", "unhealthy")

    back = GpuSample(index=1, uuid="GPU-1111", utilization_gpu_pct=0.0)
    recovered_events = (HealthEvent(kind="gpu_recovered", timestamp=NOW - 1, gpu_index=1),) + node.health_events
    healthy = NodeState(**{
        **node.__dict__, "status": "healthy", "health_events": recovered_events,
        "latest": NodeSample(timestamp=NOW - 1, host=node.latest.host, gpus=(node.latest.gpus[0], back)),
    })
    entry = build_nodes_data([healthy], NOW)[0]
    assert [g["lost"] for g in entry["gpus"]] == [False, False]
    assert (entry["status"], entry["state"]) == ("healthy", "healthy")
    assert healthy_node_ids([entry]) == ["gpu-a"]


def _state_with_throttle(timestamp: float, reasons: tuple[str, ...]) -> NodeState:
    node = gpu_node()
    gpu0 = GpuSample(index=0, uuid="GPU-0000", throttle_reasons=reasons)
    return NodeState(**{**node.__dict__, "latest": NodeSample(timestamp=timestamp, host=None, gpus=(gpu0,))})


def test_throttle_tracker_remembers_when_a_reason_started_and_forgets_it_when_gone():
    tracker = ThrottleTracker()
    tracker.observe([_state_with_throttle(100.0, ("sw_thermal_slowdown",))])
    tracker.observe([_state_with_throttle(110.0, ("sw_thermal_slowdown", "sw_power_cap"))])
    tracker.observe([_state_with_throttle(110.0, ())])  # same sample seen again: no change
    assert tracker.since == {("gpu-a", 0, "sw_thermal_slowdown"): 100.0, ("gpu-a", 0, "sw_power_cap"): 110.0}
    tracker.observe([_state_with_throttle(120.0, ("sw_power_cap",))])
    assert tracker.since == {("gpu-a", 0, "sw_power_cap"): 110.0}
    entry = build_nodes_data([_state_with_throttle(120.0, ("sw_power_cap",))], 130.0, tracker.since)[0]
    assert entry["gpus"][0]["health"]["throttle"] == [{"reason": "sw_power_cap", "since": 110.0, "duration_s": 20.0}]
    tracker.observe([])  # the node was removed
    assert tracker.since == {}


def test_the_documented_examples_are_what_the_builder_gives():
    """docs/examples/*.json are built from the states above; regenerate them when the shape changes."""
    import json
    from pathlib import Path

    docs = Path(__file__).resolve().parents[2] / "docs" / "examples"
    built = build_nodes_data([gpu_node(), cpu_node_stale()], NOW, {("gpu-a", 0, "hw_thermal_slowdown"): 1_700_000_000.0})
    assert json.loads((docs / "nodes_data.json").read_text()) == built
    example_input = json.loads((docs / "stability_input.json").read_text())
    assert example_input["nodes_data"] == built
    assert example_input["cluster"] == example_input["cluster_data"]


def test_a_pending_page_retirement_reaches_the_policy_input():
    # pre-Ampere GPUs retire pages instead of remapping rows; a pending one waits for a GPU reset
    node = gpu_node()
    retiring = dataclasses.replace(node.latest.gpus[0], retired_pages_count=3, retired_pages_pending=True)
    quiet = dataclasses.replace(node.latest.gpus[0], index=1, uuid="GPU-1111", retired_pages_pending=False)
    sample = dataclasses.replace(node.latest, gpus=(retiring, quiet))
    state = dataclasses.replace(node, latest=sample, health_events=())
    entry = build_nodes_data([state], NOW)[0]
    assert [(g["id"], g["health"]["retired_pages_pending"]) for g in entry["gpus"]] == [(0, True), (1, False)]

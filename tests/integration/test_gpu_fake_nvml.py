"""The GPU collector on the real pynvml loading the fake libnvidia-ml.so.1.

Each test runs the collector in its own process (pynvml keeps the library it
loaded for the life of a process), driven through tests/fakenvml/probe.py.
Expected values come from the fake's configuration, never from the code
under test.
"""

from __future__ import annotations

import ctypes.util
import json
import os
import time
from dataclasses import replace

import pytest

from tests.fakenvml import CLOCK_EVENT_BITS
from tests.fakenvml.presets import a100_80gb, h100_sxm, l4, t4, v100, with_mig
from tests.fakenvml.probe import ProbeProcess

MIB = 1024 * 1024


def expected_inventory(index: int, spec, features: list[str], architecture: str) -> dict:
    return {
        "index": index,
        "uuid": spec.uuid,
        "name": spec.name,
        "memory_bytes": spec.memory_bytes[0],
        "pci_bus_id": spec.pci_bus_id,
        "compute_capability": list(spec.compute_capability),
        "architecture": architecture,
        "features": features,
        "mig_enabled": spec.mig_current,
        "mig_pending": spec.mig_pending,
        "mig_devices": [],
        "power_limit_w": spec.power_limit_w,
        "unsupported": [] if spec.mig_current is not None else ["mig_enabled"],
    }


T4_FEATURES = ["fp32", "fp16", "int8", "int4", "tensor_cores", "tensor_cores_gen2"]
A100_FEATURES = [
    "fp32", "fp64", "fp16", "bf16", "tf32", "int8", "int4",
    "tensor_cores", "tensor_cores_gen3", "fp64_tensor_cores", "structured_sparsity",
]  # fmt: skip
H100_FEATURES = [
    "fp32", "fp64", "fp16", "bf16", "tf32", "fp8", "int8",
    "tensor_cores", "tensor_cores_gen4", "fp64_tensor_cores", "structured_sparsity",
    "transformer_engine", "tma", "thread_block_clusters", "dpx",
]  # fmt: skip
V100_FEATURES = ["fp32", "fp64", "fp16", "int8", "tensor_cores", "tensor_cores_gen1"]
L4_FEATURES = [
    "fp32", "fp16", "bf16", "tf32", "fp8", "int8", "int4",
    "tensor_cores", "tensor_cores_gen4", "structured_sparsity", "transformer_engine",
]  # fmt: skip


def events_of(samples: list[dict], kind: str) -> list[dict]:
    return [e for s in samples for e in s["events"] if e["kind"] == kind]


def test_zero_gpus_is_a_cpu_node_with_the_driver_known(fake_nvml):
    fake_nvml.configure(gpus=[], driver_version="535.161.08", cuda_driver_version="12.2")
    with ProbeProcess(fake_nvml.env) as probe:
        assert probe.inventory() == {
            "gpus": [],
            "driver_version": "535.161.08",
            "cuda_driver_version": "12.2",
            "nvml_status": "no GPUs",
        }
        assert probe.sample() == {"gpus": [], "events": []}
        assert probe.annotation() == "[]"


def test_one_t4_inventory_and_sample_exactly_as_configured(fake_nvml):
    spec = replace(
        t4(0),
        memory_used_mb=1200,
        util_gpu_pct=37,
        util_memory_pct=12,
        temperature_c=58,
        power_draw_w=41.25,
        clock_sm_mhz=1590,
        clock_mem_mhz=5001,
        clock_event_reasons=CLOCK_EVENT_BITS["sw_power_cap"] | CLOCK_EVENT_BITS["sw_thermal_slowdown"],
        ecc_corrected_volatile=3,
        ecc_corrected_aggregate=17,
        ecc_uncorrected_aggregate=0,
        retired_pages_sbe=2,
        retired_pages_dbe=1,
        retired_pages_pending=True,
        pcie_replay=9,
        compute_processes=2,
    )
    fake_nvml.configure(gpus=[spec], driver_version="550.54.15", cuda_driver_version=12040)
    with ProbeProcess(fake_nvml.env) as probe:
        inventory = probe.inventory()
        assert inventory["driver_version"] == "550.54.15"
        assert inventory["cuda_driver_version"] == "12.4"
        assert inventory["nvml_status"] == "ok"
        assert inventory["gpus"] == [expected_inventory(0, spec, T4_FEATURES, "turing")]
        sample = probe.sample()
    assert sample["events"] == []
    assert sample["gpus"] == [
        {
            "index": 0,
            "uuid": spec.uuid,
            "utilization_gpu_pct": 37.0,
            "utilization_memory_pct": 12.0,
            "memory_total_bytes": 15360 * MIB,
            "memory_used_bytes": 1200 * MIB,
            "memory_free_bytes": (15360 - 1200 - 255) * MIB,
            "memory_reserved_bytes": 255 * MIB,
            "temperature_c": 58.0,
            "power_draw_w": 41.25,
            "power_limit_w": 70.0,
            "sm_clock_mhz": 1590,
            "memory_clock_mhz": 5001,
            "throttle_reasons": ["sw_power_cap", "sw_thermal_slowdown"],
            "ecc_corrected_volatile": 3,
            "ecc_uncorrected_volatile": 0,
            "ecc_corrected_aggregate": 17,
            "ecc_uncorrected_aggregate": 0,
            "retired_pages_pending": True,
            "retired_pages_count": 3,
            "remapped_rows_pending": None,
            "remapped_rows_failure": None,
            "remapped_rows_correctable": None,
            "remapped_rows_uncorrectable": None,
            "pcie_replay_count": 9,
            "nvlinks": [],
            "compute_processes": 2,
            "lost": False,
            "error": "",
            # The T4 has neither row remapping nor NVLink.
            "unsupported": [
                "nvlinks",
                "remapped_rows_correctable",
                "remapped_rows_failure",
                "remapped_rows_pending",
                "remapped_rows_uncorrectable",
            ],
            "recovery_action": 0,  # the fake's driver offers the field: no action needed
            # the fake's two synthetic compute processes: pid 1000 + i, 1 GiB each,
            # no per-process utilization sample
            "processes": [
                {"pid": 1000, "kind": "compute", "used_memory_bytes": 1024 * MIB, "sm_utilization_pct": None,
                 "memory_utilization_pct": None, "mig_uuid": ""},
                {"pid": 1001, "kind": "compute", "used_memory_bytes": 1024 * MIB, "sm_utilization_pct": None,
                 "memory_utilization_pct": None, "mig_uuid": ""},
            ],
            "migs": [],
        }
    ]


EIGHT = [a100_80gb(0), a100_80gb(1), h100_sxm(2), h100_sxm(3), t4(4), t4(5), v100(6), l4(7)]
EIGHT_FACTS = [
    (A100_FEATURES, "ampere"),
    (A100_FEATURES, "ampere"),
    (H100_FEATURES, "hopper"),
    (H100_FEATURES, "hopper"),
    (T4_FEATURES, "turing"),
    (T4_FEATURES, "turing"),
    (V100_FEATURES, "volta"),
    (L4_FEATURES, "ada"),
]


def test_eight_gpus_of_five_models(fake_nvml):
    fake_nvml.configure(gpus=EIGHT)
    with ProbeProcess(fake_nvml.env) as probe:
        inventory = probe.inventory()
        annotation = probe.annotation()
        sample = probe.sample()
    assert inventory["gpus"] == [
        expected_inventory(i, spec, features, arch) for i, (spec, (features, arch)) in enumerate(zip(EIGHT, EIGHT_FACTS))
    ]
    entries = json.loads(annotation)
    assert [(e["index"], e["modelName"], e["memory"]) for e in entries] == [
        (0, "NVIDIA A100-SXM4-80GB", 81920),
        (1, "NVIDIA A100-SXM4-80GB", 81920),
        (2, "NVIDIA H100 80GB HBM3", 81559),
        (3, "NVIDIA H100 80GB HBM3", 81559),
        (4, "Tesla T4", 15360),
        (5, "Tesla T4", 15360),
        (6, "Tesla V100-SXM2-32GB", 32768),
        (7, "NVIDIA L4", 23034),
    ]
    assert [e["uuid"] for e in entries] == [spec.uuid for spec in EIGHT]
    assert [e["computeCapability"] for e in entries] == ["8.0", "8.0", "9.0", "9.0", "7.5", "7.5", "7.0", "8.9"]
    by_index = {g["index"]: g for g in sample["gpus"]}
    assert [g["uuid"] for g in sample["gpus"]] == [spec.uuid for spec in EIGHT]
    # NVLink: 12 links up on an A100, 18 on an H100, 6 on a V100, none on T4 and L4.
    assert by_index[0]["nvlinks"] == [{"link": i, "active": True} for i in range(12)]
    assert len(by_index[2]["nvlinks"]) == 18
    assert len(by_index[6]["nvlinks"]) == 6
    assert "nvlinks" in by_index[4]["unsupported"] and "nvlinks" in by_index[7]["unsupported"]
    # Row remapping on Ampere/Hopper/Ada, page retirement on Volta/Turing.
    assert by_index[2]["remapped_rows_pending"] is False and by_index[2]["retired_pages_count"] is None
    assert by_index[6]["retired_pages_count"] == 0 and by_index[6]["remapped_rows_pending"] is None
    assert all(g["power_draw_w"] == spec.power_draw_w for g, spec in zip(sample["gpus"], EIGHT))


def test_mig_enabled_gpu_lists_its_mig_devices_and_a_mode_change_shows(fake_nvml):
    mig_gpu = with_mig(a100_80gb(0), ("3g.40gb", "2g.20gb", "1g.10gb"), pending=True)
    fake_nvml.configure(gpus=[mig_gpu, h100_sxm(1)])
    with ProbeProcess(fake_nvml.env) as probe:
        first = probe.inventory()["gpus"]
        assert first[0]["mig_enabled"] is True and first[0]["mig_pending"] is True
        assert first[0]["mig_devices"] == [
            {"index": i, "uuid": m.uuid, "memory_bytes": m.memory_mb * MIB, "profile": profile}
            for i, (m, profile) in enumerate(zip(mig_gpu.mig_devices, ("3g.40gb", "2g.20gb", "1g.10gb")))
        ]
        assert first[1]["mig_enabled"] is False and first[1]["mig_devices"] == []
        annotation = json.loads(probe.annotation())
        assert annotation[0]["migEnabled"] is True
        assert [m["profile"] for m in annotation[0]["migDevices"]] == ["3g.40gb", "2g.20gb", "1g.10gb"]

        # MIG switched off with a reset pending: the inventory follows.
        fake_nvml.set(0, mig_current=False, mig_pending=False, mig_devices=())
        probe.sample()
        after = probe.inventory()["gpus"]
    assert after[0]["mig_enabled"] is False and after[0]["mig_devices"] == []


def test_gpu_lost_mid_run_others_keep_reporting(fake_nvml):
    gpus = [h100_sxm(0), h100_sxm(1), h100_sxm(2)]
    fake_nvml.configure(gpus=gpus)
    with ProbeProcess(fake_nvml.env) as probe:
        before = probe.sample()
        assert [g["lost"] for g in before["gpus"]] == [False, False, False]
        fake_nvml.lose_gpu(1)
        fake_nvml.set(0, temperature_c=77)
        after = [probe.sample(), probe.sample(), probe.sample()]
        inventory_while_lost = probe.inventory()
        annotation_while_lost = json.loads(probe.annotation())
        fake_nvml.restore_gpu(1)
        back = probe.sample()
        inventory_back = probe.inventory()

    latest = after[-1]["gpus"]
    assert latest[1]["lost"] is True
    assert latest[1]["error"] == "NVML_ERROR_GPU_IS_LOST"
    assert latest[1]["uuid"] == gpus[1].uuid and latest[1]["temperature_c"] is None
    assert latest[0]["lost"] is False and latest[0]["temperature_c"] == 77.0
    assert latest[2]["lost"] is False and latest[2]["memory_total_bytes"] == 81559 * MIB
    lost_events = events_of(after, "gpu_lost")
    assert len(lost_events) == 1  # on change, not every sample
    assert lost_events[0]["gpu_index"] == 1 and lost_events[0]["gpu_uuid"] == gpus[1].uuid
    assert lost_events[0]["nvml_error"] == "NVML_ERROR_GPU_IS_LOST"
    # The lost GPU is not advertised while it is gone.
    assert [g["index"] for g in inventory_while_lost["gpus"]] == [0, 2]
    assert [e["uuid"] for e in annotation_while_lost] == [gpus[0].uuid, gpus[2].uuid]
    # And it comes back.
    assert back["gpus"][1]["lost"] is False and back["gpus"][1]["temperature_c"] == 30.0
    assert back["gpus"][1]["unsupported"] == ["retired_pages_count", "retired_pages_pending"]
    recovered = events_of([back], "gpu_recovered")
    assert [(e["gpu_index"], e["gpu_uuid"]) for e in recovered] == [(1, gpus[1].uuid)]
    assert [g["index"] for g in inventory_back["gpus"]] == [0, 1, 2]


def test_gpu_lost_before_the_agent_started(fake_nvml):
    gpus = [a100_80gb(0), replace(a100_80gb(1), error="GPU_IS_LOST")]
    fake_nvml.configure(gpus=gpus)
    with ProbeProcess(fake_nvml.env) as probe:
        inventory = probe.inventory()
        sample = probe.sample()
    assert [g["index"] for g in inventory["gpus"]] == [0]
    assert sample["gpus"][1]["lost"] is True and sample["gpus"][1]["error"] == "NVML_ERROR_GPU_IS_LOST"
    assert [(e["kind"], e["gpu_index"]) for e in sample["events"]] == [("gpu_lost", 1)]


def test_not_supported_fields_are_none_and_listed_for_that_field_only(fake_nvml):
    partial = replace(a100_80gb(0), unsupported=("retired_pages", "temperature", "power_draw", "pcie_replay"))
    fake_nvml.configure(gpus=[partial, a100_80gb(1)])
    with ProbeProcess(fake_nvml.env) as probe:
        first, second = probe.sample(), probe.sample()
    for sample in (first, second):
        gpu0, gpu1 = sample["gpus"]
        assert gpu0["temperature_c"] is None and gpu0["power_draw_w"] is None and gpu0["pcie_replay_count"] is None
        assert gpu0["unsupported"] == [
            "pcie_replay_count",
            "power_draw_w",
            "retired_pages_count",
            "retired_pages_pending",
            "temperature_c",
        ]
        assert gpu0["power_limit_w"] == 400.0 and gpu0["memory_total_bytes"] == 81920 * MIB and gpu0["error"] == ""
        assert gpu1["temperature_c"] == 33.0 and gpu1["unsupported"] == ["retired_pages_count", "retired_pages_pending"]
        assert sample["events"] == []  # not supported is not a failure


def test_driver_without_memory_info_v2_reports_used_including_reserved(fake_nvml):
    old = replace(a100_80gb(0), memory_used_mb=1000, memory_reserved_mb=500, unsupported=("memory_v2",))
    fake_nvml.configure(gpus=[old])
    with ProbeProcess(fake_nvml.env) as probe:
        gpu = probe.sample()["gpus"][0]
    # NVML's v1 call counts reserved memory as used.
    assert (gpu["memory_total_bytes"], gpu["memory_used_bytes"], gpu["memory_free_bytes"]) == (
        81920 * MIB, 1500 * MIB, 80420 * MIB)
    assert gpu["memory_reserved_bytes"] is None and "memory_reserved_bytes" in gpu["unsupported"]


def test_device_failing_with_unknown_error_is_a_health_event_once(fake_nvml):
    fake_nvml.configure(gpus=[a100_80gb(0), a100_80gb(1)])
    with ProbeProcess(fake_nvml.env) as probe:
        probe.sample()
        fake_nvml.set(1, error="UNKNOWN")
        failing = [probe.sample(), probe.sample()]
    gpu1 = failing[-1]["gpus"][1]
    assert gpu1["lost"] is False and gpu1["error"] == "NVML_ERROR_UNKNOWN" and gpu1["memory_total_bytes"] is None
    assert failing[-1]["gpus"][0]["memory_total_bytes"] == 81920 * MIB
    errors = events_of(failing, "nvml_error")
    assert [(e["gpu_index"], e["nvml_error"]) for e in errors] == [(1, "NVML_ERROR_UNKNOWN")]


def test_ecc_and_row_remap_health_on_change(fake_nvml):
    fake_nvml.configure(gpus=[a100_80gb(0)])
    with ProbeProcess(fake_nvml.env) as probe:
        quiet = probe.sample()
        fake_nvml.set(0, ecc_uncorrected_volatile=2, remapped_rows_pending=True, remapped_rows_uncorrectable=1)
        changed = [probe.sample(), probe.sample()]
        fake_nvml.set(0, remapped_rows_failure=True)
        failed = [probe.sample(), probe.sample()]
    assert quiet["events"] == []
    assert [e["kind"] for e in changed[0]["events"]] == ["ecc_uncorrectable", "row_remap_pending"]
    assert changed[1]["events"] == []
    assert changed[1]["gpus"][0]["remapped_rows_uncorrectable"] == 1
    assert [e["kind"] for e in failed[0]["events"]] == ["row_remap_failure"]
    assert failed[1]["events"] == []


def test_xid_48_79_94_arrive_as_health_events_with_device_and_time(fake_nvml):
    gpus = [h100_sxm(0), h100_sxm(1), h100_sxm(2)]
    fake_nvml.configure(gpus=gpus)
    with ProbeProcess(fake_nvml.env) as probe:
        probe.sample()
        start = time.time()
        fake_nvml.inject_xid(0, 48)
        fake_nvml.inject_xid(2, 79)
        fake_nvml.inject_xid(1, 94)
        samples = probe.sample_until(lambda seen: len(events_of(seen, "xid")) >= 3)
        end = time.time()
    xids = events_of(samples, "xid")
    assert [(e["xid"], e["gpu_index"], e["gpu_uuid"]) for e in xids] == [
        (48, 0, gpus[0].uuid),
        (79, 2, gpus[2].uuid),
        (94, 1, gpus[1].uuid),
    ]
    assert all(start <= e["timestamp"] <= end for e in xids)
    assert xids[1]["message"] == "XID 79: GPU has fallen off the bus"


def test_driver_not_loaded_is_a_cpu_node_until_the_driver_comes_up(fake_nvml):
    fake_nvml.configure(gpus=[t4(0)], init_error="DRIVER_NOT_LOADED")
    env = dict(fake_nvml.env, AIOS_PROBE_RETRY_S="0.1")
    with ProbeProcess(env) as probe:
        assert probe.inventory() == {
            "gpus": [],
            "driver_version": "",
            "cuda_driver_version": "",
            "nvml_status": "driver not loaded",
        }
        assert probe.sample() == {"gpus": [], "events": []}
        fake_nvml.configure(gpus=[t4(0)])  # the driver loads
        deadline = time.monotonic() + 10
        while (inventory := probe.inventory())["nvml_status"] != "ok":
            assert time.monotonic() < deadline, inventory
            time.sleep(0.05)
    assert [g["name"] for g in inventory["gpus"]] == ["Tesla T4"]


@pytest.mark.skipif(ctypes.util.find_library("nvidia-ml") is not None,
                    reason="this machine has a real libnvidia-ml the loader finds whatever LD_LIBRARY_PATH says")
def test_library_missing_is_a_cpu_node(tmp_path):
    empty = tmp_path / "no-nvml"
    empty.mkdir()
    with ProbeProcess({"LD_LIBRARY_PATH": str(empty)}) as probe:
        assert probe.inventory()["nvml_status"] == "library not found"
        assert probe.sample() == {"gpus": [], "events": []}


def test_library_path_that_does_not_exist_is_named(tmp_path):
    missing = tmp_path / "libnvidia-ml.so.1"
    with ProbeProcess({"AIOS_NVML_LIBRARY": str(missing)}) as probe:
        assert probe.inventory()["nvml_status"] == f"library not found: {missing}"


def test_library_preloaded_by_absolute_path(fake_nvml):
    fake_nvml.configure(gpus=[v100(0)])
    env = {
        "AIOS_FAKE_NVML_CONFIG": fake_nvml.env["AIOS_FAKE_NVML_CONFIG"],
        "AIOS_NVML_LIBRARY": str(fake_nvml.lib_dir / "libnvidia-ml.so.1"),
        "LD_LIBRARY_PATH": os.environ.get("LD_LIBRARY_PATH", ""),
    }
    with ProbeProcess(env) as probe:
        assert [g["name"] for g in probe.inventory()["gpus"]] == ["Tesla V100-SXM2-32GB"]


def test_close_stops_the_event_thread_and_the_process_exits(fake_nvml):
    fake_nvml.configure(gpus=[h100_sxm(0)])
    probe = ProbeProcess(fake_nvml.env)
    try:
        assert probe.ask("close") == {"closed": True}
        assert probe.proc.wait(timeout=10) == 0
    finally:
        probe.close()


@pytest.mark.parametrize("init_error, status", [("NO_PERMISSION", "no permission to the GPU devices")])
def test_other_init_failures_are_named(fake_nvml, init_error, status):
    fake_nvml.configure(gpus=[t4(0)], init_error=init_error)
    with ProbeProcess(fake_nvml.env) as probe:
        assert probe.inventory()["nvml_status"] == status


def test_a_hung_nvml_call_makes_that_gpu_unresponsive_and_the_others_keep_reporting(fake_nvml):
    gpus = [h100_sxm(0), h100_sxm(1), h100_sxm(2)]
    fake_nvml.configure(gpus=gpus)
    env = {**fake_nvml.env, "AIOS_NVML_CALL_TIMEOUT_S": "0.5"}
    with ProbeProcess(env) as probe:
        probe.inventory()  # the agent reads it at start
        probe.sample()
        fake_nvml.hang_call(1, "nvmlDeviceGetTemperature")
        fake_nvml.set(0, temperature_c=71)
        fake_nvml.set(2, temperature_c=72)
        hung = [probe.sample(), probe.sample(), probe.sample()]
        inventory_while_hung = probe.inventory()
        fake_nvml.release_hang(1)
        back = probe.sample_until(lambda seen: seen[-1]["gpus"][1]["error"] == "")

    for sample in hung:
        gpu0, gpu1, gpu2 = sample["gpus"]
        assert gpu1["error"] == "nvmlDeviceGetTemperature did not return within 0.5 s"
        assert gpu1["lost"] is False and gpu1["uuid"] == gpus[1].uuid and gpu1["temperature_c"] is None
        assert (gpu0["temperature_c"], gpu2["temperature_c"]) == (71.0, 72.0)
    unresponsive = events_of(hung, "gpu_unresponsive")
    assert len(unresponsive) == 1  # on change, not every sample
    assert unresponsive[0]["gpu_index"] == 1 and unresponsive[0]["gpu_uuid"] == gpus[1].uuid
    assert "nvmlDeviceGetTemperature did not return within 0.5 s" in unresponsive[0]["message"]
    # unresponsive is not gone: it keeps its place in the inventory
    assert [g["index"] for g in inventory_while_hung["gpus"]] == [0, 1, 2]
    assert back[-1]["gpus"][1]["temperature_c"] == 30.0
    responsive = events_of(back, "gpu_responsive")
    assert [(e["gpu_index"], e["gpu_uuid"]) for e in responsive] == [(1, gpus[1].uuid)]


def test_the_drivers_recovery_action_is_read_where_it_is_offered(fake_nvml):
    fake_nvml.configure(gpus=[replace(h100_sxm(0), recovery_action=2), replace(a100_80gb(1), unsupported=("recovery_action",))])
    with ProbeProcess(fake_nvml.env) as probe:
        gpus = probe.sample()["gpus"]
    assert gpus[0]["recovery_action"] == 2  # NVML_GPU_RECOVERY_ACTION_NODE_REBOOT
    assert gpus[1]["recovery_action"] is None  # an older driver: not supported, which is normal
    assert "recovery_action" in gpus[1]["unsupported"] and "recovery_action" not in gpus[0]["unsupported"]


def test_a_hang_on_a_middle_gpu_leaves_the_gpus_before_and_after_it_sampled_in_the_same_sample(fake_nvml):
    # the reads go in GPU order on one reader thread: those after the hung GPU go on fresh threads
    gpus = [h100_sxm(i) for i in range(5)]
    fake_nvml.configure(gpus=gpus)
    env = {**fake_nvml.env, "AIOS_NVML_CALL_TIMEOUT_S": "0.5"}
    with ProbeProcess(env) as probe:
        probe.sample()
        fake_nvml.hang_call(2, "nvmlDeviceGetPowerUsage")
        for i, temperature in ((0, 60), (1, 61), (3, 63), (4, 64)):
            fake_nvml.set(i, temperature_c=temperature)
        first = probe.sample()
        for i, temperature in ((0, 70), (1, 71), (3, 73), (4, 74)):
            fake_nvml.set(i, temperature_c=temperature)
        second = probe.sample()
        fake_nvml.release_hang(2)
        back = probe.sample_until(lambda seen: seen[-1]["gpus"][2]["error"] == "")

    for sample, temperatures in ((first, [60.0, 61.0, 63.0, 64.0]), (second, [70.0, 71.0, 73.0, 74.0])):
        assert [sample["gpus"][i]["temperature_c"] for i in (0, 1, 3, 4)] == temperatures
        assert [sample["gpus"][i]["error"] for i in (0, 1, 3, 4)] == ["", "", "", ""]
        assert sample["gpus"][2]["error"] == "nvmlDeviceGetPowerUsage did not return within 0.5 s"
        assert sample["gpus"][2]["power_draw_w"] is None
    assert [e["gpu_index"] for e in events_of([first, second], "gpu_unresponsive")] == [2]  # once, on change
    assert back[-1]["gpus"][2]["power_draw_w"] == gpus[2].power_draw_w
    assert [e["gpu_index"] for e in events_of(back, "gpu_responsive")] == [2]

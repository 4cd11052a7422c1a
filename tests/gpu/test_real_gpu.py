"""The GPU collector on this machine's real GPUs and driver.

Marked `gpu`: skipped where there is no NVIDIA driver. Needs only
nvidia-ml-py, psutil and pytest (the GPU machine's image has no kubernetes).
Run with `-s` to see what was read; set AIOS_GPU_REPORT=path to also write
it as JSON.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import time

import pytest

from agent.gpu.collector import open_gpu_collector

pytestmark = pytest.mark.gpu


def _jsonable(value):
    if dataclasses.is_dataclass(value):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


@pytest.fixture(scope="module")
def reading():
    collector = open_gpu_collector()
    try:
        inventory = collector.inventory()
        first = collector.sample()
        time.sleep(0.2)
        second = collector.sample()
        rounds = 50
        cpu_start = time.process_time()
        for _ in range(rounds):
            collector.sample()
        cpu_per_sample_ms = (time.process_time() - cpu_start) / rounds * 1000
    finally:
        collector.close()
    result = {
        "inventory": inventory,
        "samples": [first, second],
        "cpu_per_sample_ms": cpu_per_sample_ms,
    }
    printable = {
        "inventory": _jsonable(inventory),
        "samples": [{"gpus": _jsonable(s[0]), "events": _jsonable(s[1])} for s in result["samples"]],
        "cpu_per_sample_ms": cpu_per_sample_ms,
    }
    print(json.dumps(printable, indent=1))
    if os.environ.get("AIOS_GPU_REPORT"):
        with open(os.environ["AIOS_GPU_REPORT"], "w") as f:
            json.dump(printable, f, indent=1)
    return result


def test_nvml_is_up_and_lists_gpus(reading):
    inventory = reading["inventory"]
    assert inventory.nvml_status == "ok"
    assert inventory.gpus, "a GPU machine with no GPU in the inventory"
    assert inventory.driver_version and inventory.cuda_driver_version
    assert [g.index for g in inventory.gpus] == list(range(len(inventory.gpus)))


def test_inventory_invariants(reading):
    for gpu in reading["inventory"].gpus:
        assert gpu.uuid.startswith("GPU-"), gpu
        assert gpu.name, gpu
        assert gpu.memory_mb > 1024, gpu
        assert gpu.compute_capability is not None and gpu.compute_capability >= (3, 0), gpu
        assert gpu.architecture not in ("", "unknown"), gpu
        assert "fp32" in gpu.features, gpu
        if gpu.mig_enabled:
            assert sum(m.memory_mb for m in gpu.mig_devices) <= gpu.memory_mb
        if gpu.power_limit_w is not None:
            assert 10 < gpu.power_limit_w < 2000, gpu


def test_sample_invariants(reading):
    inventory = {g.index: g for g in reading["inventory"].gpus}
    for gpus, _events in reading["samples"]:
        assert len(gpus) == len(inventory)
        for s in gpus:
            assert not s.lost and s.error == "", s
            assert s.uuid == inventory[s.index].uuid
            assert s.memory_total_bytes == inventory[s.index].memory_bytes  # NVML's bytes, unrounded
            assert s.memory_used_bytes + s.memory_free_bytes <= s.memory_total_bytes, s
            if s.memory_reserved_bytes is not None:
                assert s.memory_used_bytes + s.memory_free_bytes + s.memory_reserved_bytes <= s.memory_total_bytes, s
            for pct in (s.utilization_gpu_pct, s.utilization_memory_pct):
                assert pct is None or 0 <= pct <= 100, s
            assert s.temperature_c is None or 0 < s.temperature_c < 120, s
            if s.power_draw_w is not None and s.power_limit_w is not None:
                assert 0 <= s.power_draw_w <= s.power_limit_w * 1.5, s
            assert s.sm_clock_mhz is None or s.sm_clock_mhz > 0, s
            assert s.memory_clock_mhz is None or s.memory_clock_mhz > 0, s
            assert all(not name.startswith("unknown_") for name in s.throttle_reasons), s
            for count in (s.ecc_corrected_volatile, s.ecc_uncorrected_volatile):
                assert count is None or count >= 0, s
            assert s.compute_processes is None or s.compute_processes >= 0, s
            # A field is either read or listed as unsupported, never silently missing.
            for name in ("memory_total_bytes", "temperature_c", "power_draw_w", "sm_clock_mhz"):
                assert (getattr(s, name) is None) == (name in s.unsupported), (name, s)


@pytest.mark.skipif(shutil.which("nvidia-smi") is None, reason="nvidia-smi not installed")
def test_inventory_matches_nvidia_smi(reading):
    out = subprocess.run(
        ["nvidia-smi", "--query-gpu=index,uuid,name,memory.total", "--format=csv,noheader,nounits"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    smi = []
    for line in out.strip().splitlines():
        index, uuid, name, memory = (part.strip() for part in line.split(","))
        smi.append((int(index), uuid, name, int(memory)))
    ours = [(g.index, g.uuid, g.name, g.memory_mb) for g in reading["inventory"].gpus]
    assert ours == smi


def test_recovery_action_and_health_on_a_real_driver(reading):
    """The driver's recovery action (R570+: a value; older: NotSupported, listed) and a healthy GPU judged healthy."""
    from proto.health.gpu_rule import HealthRule, sample_problems

    gpus, _ = reading["samples"][-1]
    for gpu in gpus:
        assert gpu.error == "", gpu  # every GPU answered within the NVML call bound
        if gpu.recovery_action is None:
            assert "recovery_action" in gpu.unsupported, gpu
        else:
            assert 0 <= gpu.recovery_action <= 7, gpu
    # a machine lent for tests is expected healthy: nothing the rule would put on a Node condition
    expected = {g.index: g.uuid for g in reading["inventory"].gpus}
    assert sample_problems(gpus, expected, HealthRule(unresponsive=True)) == ()

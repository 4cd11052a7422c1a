"""`aios-agent inventory` and `sample` under the fake NVML (real pynvml, compiled fake library)."""

from __future__ import annotations

import json

import pytest

from tests.fakenvml.presets import a100_80gb, h100_sxm, t4, v100
from tests.integration.test_agent_cli import run_agent, run_json

pytestmark = pytest.mark.integration  # the agent CLI as a subprocess


def test_inventory_gives_the_annotation_for_the_configured_gpus(fake_nvml):
    gpus = [a100_80gb(0), h100_sxm(1), t4(2), v100(3)]
    fake_nvml.configure(gpus=gpus, driver_version="550.54.15", cuda_driver_version="12.4")

    doc = run_json("inventory", env=fake_nvml.env)

    assert (doc["driver_version"], doc["cuda_driver_version"], doc["nvml_status"], doc["gpu_count"]) == (
        "550.54.15", "12.4", "ok", 4,
    )
    value = doc["annotations"]["gpu.aios/info"]
    entries = json.loads(value)
    assert [(e["index"], e["modelName"], e["memory"], e["uuid"]) for e in entries] == [
        (0, "NVIDIA A100-SXM4-80GB", 81920, gpus[0].uuid),
        (1, "NVIDIA H100 80GB HBM3", 81559, gpus[1].uuid),
        (2, "Tesla T4", 15360, gpus[2].uuid),
        (3, "Tesla V100-SXM2-32GB", 32768, gpus[3].uuid),
    ]
    # compact and key-sorted, as the annotator writes it
    assert value == json.dumps(entries, separators=(",", ":"), sort_keys=True)
    assert [g["compute_capability"] for g in doc["gpus"]] == [[8, 0], [9, 0], [7, 5], [7, 0]]


def test_sample_reads_eight_gpus_and_the_host(fake_nvml):
    gpus = [h100_sxm(i) for i in range(8)]
    fake_nvml.configure(gpus=gpus)
    fake_nvml.set(5, temperature_c=71, power_draw_w=612.5)

    doc = run_json("sample", "--interval", "0.1", env=fake_nvml.env)

    assert [g["uuid"] for g in doc["gpus"]] == [g.uuid for g in gpus]
    assert [g["temperature_c"] for g in doc["gpus"]] == [30] * 5 + [71] + [30] * 2
    assert doc["gpus"][5]["power_draw_w"] == 612.5
    assert [(c["name"], c["success"]) for c in doc["collectors"]] == [("gpu", True), ("host", True), ("attribution", True)]
    assert doc["host"]["page_faults_per_s"] is not None
    # no kubelet socket here: attribution says so, the rest of the sample is whole
    assert doc["attribution"]["available"] is False
    assert doc["attribution"]["reason"].startswith("no kubelet pod-resources socket at ")


def test_driver_not_loaded_gives_a_cpu_node(fake_nvml):
    fake_nvml.configure(init_error="DRIVER_NOT_LOADED")
    doc = run_json("inventory", env=fake_nvml.env)
    assert doc["annotations"] == {"gpu.aios/info": "[]"}
    assert doc["gpus"] == [] and doc["nvml_status"] != "ok"
    assert doc["host"] is not None


def test_nvml_library_flag_names_a_missing_library(tmp_path):
    proc = run_agent("inventory", "--nvml-library", str(tmp_path / "libnvidia-ml.so.1"))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["gpus"] == [] and doc["nvml_status"] != "ok"

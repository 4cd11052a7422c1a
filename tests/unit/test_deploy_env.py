"""Every environment variable a manifest sets is one the code of that container reads."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
ADDONS = DEPLOY / "addons"
# Read by the NVIDIA container runtime, not by our code (it mounts the driver's
# libnvidia-ml.so.1 and the device nodes into the agent's container).
RUNTIME_VARIABLES = {"NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES"}
CODE_OF = {"agent": ("agent", "proto"), "aggregator": ("aggregator", "proto"), "policy-runner": ("aggregator", "proto")}


def string_constants(packages: tuple[str, ...]) -> set[str]:
    found = set()
    for package in packages:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.Constant) and isinstance(node.value, str):
                    found.add(node.value)
    return found


def manifests(kind: str) -> list[dict]:
    docs = []
    for path in sorted(DEPLOY.rglob("*.yaml")):
        if ADDONS in path.parents:  # other images' variables (tests/unit/test_addons_manifests.py)
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == kind:
                docs.append(doc)
    return docs


def config_maps() -> dict[str, dict]:
    maps = {d["metadata"]["name"]: d.get("data", {}) for d in manifests("ConfigMap")}
    # kustomization.yaml generates aios-cluster from literals
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    for generator in kustomization.get("configMapGenerator", []):
        maps[generator["name"]] = dict(item.split("=", 1) for item in generator.get("literals", []))
    return maps


def container_variables() -> dict[str, set[str]]:
    """container name -> every variable its manifest gives it (env and envFrom config maps)."""
    maps = config_maps()
    result: dict[str, set[str]] = {}
    for workload in manifests("DaemonSet") + manifests("Deployment"):
        for container in workload["spec"]["template"]["spec"]["containers"]:
            names = {e["name"] for e in container.get("env", [])}
            for source in container.get("envFrom", []):
                ref = source.get("configMapRef")
                if ref:
                    assert ref["name"] in maps, f"{container['name']}: envFrom names unknown ConfigMap {ref['name']}"
                    names |= set(maps[ref["name"]])
            result[container["name"]] = names
    return result


def test_the_containers_are_the_ones_we_know():
    assert set(container_variables()) == set(CODE_OF)


@pytest.mark.parametrize("container", sorted(CODE_OF))
def test_every_variable_a_manifest_sets_is_read_by_that_containers_code(container):
    variables = container_variables()[container] - RUNTIME_VARIABLES
    read = string_constants(CODE_OF[container])
    unread = sorted(v for v in variables if v not in read)
    assert not unread, f"{container}: the manifests set {unread}, which its code never reads"


def test_the_scanner_sees_a_variable_the_code_reads_and_not_one_it_does_not():
    # guards the test above against a scan that finds nothing (or everything)
    read = string_constants(CODE_OF["agent"])
    assert "AIOS_AGGREGATOR_ADDR" in read
    assert "AIOS_NO_SUCH_SETTING" not in read

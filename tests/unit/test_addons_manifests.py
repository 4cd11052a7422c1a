"""The add-ons' kustomize bases: each renders with `kubectl kustomize`, validates strictly on three
Kubernetes minors, and our Python renderer prints the same objects for every option combination."""

from __future__ import annotations

import copy
import itertools
import json
import re
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from aggregator.addons.catalogue import ADDON_LABEL, ADDONS, available_components
from aggregator.addons.render import KustomizeError, UnsupportedKustomization, render, strategic_merge
from tests.unit.test_manifests import K8S_VERSIONS

ROOT = Path(__file__).resolve().parents[2]
ADDONS_DIR = ROOT / "deploy" / "addons"
NAMES = ("container-registry", "assets-registry", "inference-server")


def combinations(base: Path) -> list[tuple[str, ...]]:
    """Every ordered choice of the base's components (order matters: patches merge lists in order)."""
    options = available_components(base)
    return [combo for n in range(len(options) + 1) for combo in itertools.permutations(options, n)]


CASES = [(name, combo) for name in NAMES for combo in combinations(ADDONS_DIR / name)]


def kubectl_kustomize(tmp_path: Path, name: str, components: tuple[str, ...], *, namespace: str | None = None,
                      settings: dict[str, str] | None = None) -> list[dict]:
    """`kubectl kustomize` of a copy of the base, edited the way an operator would edit it."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (with kustomize) is not installed")
    work = tmp_path / name
    shutil.copytree(ADDONS_DIR / name, work)
    kustomization = yaml.safe_load((work / "kustomization.yaml").read_text())
    kustomization.pop("components", None)
    if components:
        kustomization["components"] = list(components)
    if namespace:
        kustomization["namespace"] = namespace
    (work / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    if settings:
        settings_doc = yaml.safe_load((work / "settings.yaml").read_text())
        settings_doc["data"].update(settings)
        (work / "settings.yaml").write_text(yaml.safe_dump(settings_doc))
    out = subprocess.run([kubectl, "kustomize", str(work)], capture_output=True, text=True, check=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def by_id(objects: list[dict]) -> dict[str, dict]:
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in objects}


def test_there_is_a_base_for_every_catalogued_addon_and_no_other():
    assert sorted(p.name for p in ADDONS_DIR.iterdir() if p.is_dir()) == sorted(NAMES)
    assert sorted(a.name for a in ADDONS) == sorted(NAMES)


@pytest.mark.parametrize(("name", "components"), CASES, ids=[f"{n}:{'+'.join(c) or 'plain'}" for n, c in CASES])
def test_python_rendering_equals_kubectl_kustomize(tmp_path, name, components):
    expected = kubectl_kustomize(tmp_path, name, components)
    rendered = render(ADDONS_DIR / name, components=list(components))
    assert json.dumps(by_id(rendered), sort_keys=True) == json.dumps(by_id(expected), sort_keys=True)
    # env order is part of the result: $(VAR) expands only variables listed earlier
    for doc in expected:
        if doc["kind"] == "Deployment":
            containers = by_id(rendered)[f"Deployment/{doc['metadata']['name']}"]["spec"]["template"]["spec"]["containers"]
            assert [e["name"] for e in containers[0].get("env", [])] == \
                   [e["name"] for e in doc["spec"]["template"]["spec"]["containers"][0].get("env", [])]


@pytest.mark.parametrize("name", NAMES)
def test_namespace_and_settings_given_to_the_renderer_equal_editing_the_files(tmp_path, name):
    settings_doc = yaml.safe_load((ADDONS_DIR / name / "settings.yaml").read_text())
    changed = {key: f"changed-{i}" if not key.endswith("STORAGE_SIZE") else "7Gi"
               for i, key in enumerate(sorted(settings_doc["data"]))}
    components = tuple(available_components(ADDONS_DIR / name))
    expected = kubectl_kustomize(tmp_path, name, components, namespace="team-a", settings=changed)
    rendered = render(ADDONS_DIR / name, components=list(components), namespace="team-a",
                      settings=(settings_doc["metadata"]["name"], changed))
    assert by_id(rendered) == by_id(expected)
    assert {o["metadata"]["namespace"] for o in rendered} == {"team-a"}


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize(("name", "components"), CASES, ids=[f"{n}:{'+'.join(c) or 'plain'}" for n, c in CASES])
def test_every_combination_is_strictly_valid_kubernetes(tmp_path, name, components, version):
    for doc in kubectl_kustomize(tmp_path, name, components):
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name} {components}: {doc['kind']}/{doc['metadata']['name']} invalid for {version}: {exc}")


@pytest.mark.parametrize("name", NAMES)
def test_every_object_and_template_carries_the_addon_label(name):
    base = ADDONS_DIR / name
    for doc in render(base, components=available_components(base)):
        assert doc["metadata"]["labels"][ADDON_LABEL] == name, doc["metadata"]["name"]
        spec = doc.get("spec") or {}
        if "template" in spec:
            assert spec["template"]["metadata"]["labels"][ADDON_LABEL] == name
            selector = spec["selector"]["matchLabels"]
            assert ADDON_LABEL not in selector  # selectors are immutable: they keep to the workload's own name
        for claim in spec.get("volumeClaimTemplates") or []:
            assert claim["metadata"]["labels"][ADDON_LABEL] == name  # so remove finds (and keeps) the data


IPV4 = re.compile(r"\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b")


def test_no_machine_address_and_no_credential_is_written_into_a_manifest():
    for path in ADDONS_DIR.rglob("*.yaml"):
        assert not IPV4.search(path.read_text()), f"{path}: an IP address"
    for name in NAMES:
        base = ADDONS_DIR / name
        for doc in render(base, components=available_components(base)):
            if doc["kind"] not in ("Deployment", "StatefulSet"):
                continue
            pod = doc["spec"]["template"]["spec"]
            for container in pod.get("initContainers", []) + pod["containers"]:
                for env in container.get("env", []):
                    secret_like = re.search(r"PASSWORD|SECRET|ACCESS_KEY|USERNAME|ROOT_USER|DB_USER", env["name"])
                    if secret_like:
                        assert "secretKeyRef" in (env.get("valueFrom") or {}), f"{name}: {env['name']} not from a Secret"


def test_the_bundled_mongodb_url_is_built_from_variables_listed_before_it():
    base = ADDONS_DIR / "assets-registry"
    deployment = by_id(render(base))["Deployment/assets-registry"]
    env = [e["name"] for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]]
    url = next(e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"] if e["name"] == "MONGO_URL")
    for variable in re.findall(r"\$\((\w+)\)", url["value"]):
        assert env.index(variable) < env.index("MONGO_URL")
    # without the bundled MongoDB the URL is the Secret's
    plain = by_id(render(base, components=["components/bundled-minio"]))["Deployment/assets-registry"]
    plain_env = {e["name"]: e for e in plain["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert plain_env["MONGO_URL"]["value"] == "$(MONGO_URL_FROM_SECRET)"
    assert plain_env["MONGO_URL_FROM_SECRET"]["valueFrom"]["secretKeyRef"] == {
        "name": "assets-registry-credentials", "key": "MONGO_URL"}
    assert "MONGO_USERNAME" not in plain_env


# ------------------------------------------------------------------ the renderer refuses what it does not do


def write_base(tmp_path: Path, kustomization: dict, files: dict[str, object]) -> Path:
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    for name, doc in files.items():
        (tmp_path / name).write_text(yaml.safe_dump(doc))
    return tmp_path


CONFIGMAP = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "s"}, "data": {"A": "1"}}


def test_a_kustomize_field_it_does_not_render_is_refused_by_name(tmp_path):
    base = write_base(tmp_path, {"resources": ["s.yaml"], "images": [{"name": "x", "newTag": "2"}]}, {"s.yaml": CONFIGMAP})
    with pytest.raises(UnsupportedKustomization, match=r"kustomization.yaml: field 'images' is not supported"):
        render(base)


def test_a_missing_replacement_target_field_names_the_path(tmp_path):
    kustomization = {"resources": ["s.yaml"], "replacements": [{
        "source": {"kind": "ConfigMap", "name": "s", "fieldPath": "data.A"},
        "targets": [{"select": {"kind": "ConfigMap", "name": "s"}, "fieldPaths": ["data.B"]}]}]}
    with pytest.raises(KustomizeError, match=r"unable to find field 'data.B' in replacement target"):
        render(write_base(tmp_path, kustomization, {"s.yaml": CONFIGMAP}))


def test_an_unknown_setting_is_refused_with_the_known_ones(tmp_path):
    base = write_base(tmp_path, {"resources": ["s.yaml"]}, {"s.yaml": CONFIGMAP})
    with pytest.raises(KustomizeError, match=r"s has no setting 'TYPO' \(known: A\)"):
        render(base, settings=("s", {"TYPO": "x"}))
    assert render(base, settings=("s", {"A": "2"}))[0]["data"] == {"A": "2"}


def test_strategic_merge_puts_the_patch_entries_first_and_deletes_nulls():
    target = {"env": [{"name": "A", "value": "1"}, {"name": "B", "valueFrom": {"x": 1}}, {"name": "C", "value": "3"}],
              "args": ["a", "b"]}
    patch = {"env": [{"name": "X", "value": "x"}, {"name": "B", "value": "b", "valueFrom": None}], "args": ["z"]}
    merged = strategic_merge(target, patch)
    assert merged == {"env": [{"name": "X", "value": "x"}, {"name": "B", "value": "b"}, {"name": "A", "value": "1"},
                              {"name": "C", "value": "3"}], "args": ["z"]}
    assert target["env"][1] == {"name": "B", "valueFrom": {"x": 1}}  # the input is untouched
    with pytest.raises(UnsupportedKustomization, match=r"\$patch"):
        strategic_merge(copy.deepcopy(target), {"env": [{"name": "A", "$patch": "delete"}]})

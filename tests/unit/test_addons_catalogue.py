"""The add-on catalogue agrees with the bases, and its pure rules (options, URLs, parameters)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from aggregator.addons.catalogue import (
    ADDONS,
    AddOnProblem,
    addon,
    available_components,
    bases_dir,
    choose_components,
    in_cluster_url,
    namespace_from_url,
)
from aggregator.addons.render import components_listed, render

ADDONS_DIR = Path(__file__).resolve().parents[2] / "deploy" / "addons"


@pytest.mark.parametrize("item", ADDONS, ids=lambda a: a.name)
def test_the_catalogue_names_what_the_base_has(item):
    base = ADDONS_DIR / item.name
    objects = {(o["kind"], o["metadata"]["name"]): o for o in render(base, components=available_components(base))}
    service = objects[("Service", item.service)]
    assert item.port in [p["port"] for p in service["spec"]["ports"]]
    settings = objects[("ConfigMap", item.settings_configmap)]["data"]
    for key in (*item.required, *item.from_cluster_document):
        assert key in settings
    for component, key, bundled_value in item.bundled_defaults:
        assert component in available_components(base)
        assert settings[key] == bundled_value
    if item.tls_component:
        assert item.tls_component in available_components(base)


def test_the_documented_urls_and_keys():
    # the values operators and the network read: docs/addons.md lists them
    assert {a.name: a.url_map_key for a in ADDONS} == {
        "container-registry": "containerRegistry", "assets-registry": "assetsRegistry",
        "inference-server": "inferenceServer"}
    registry = addon("container-registry")
    assert in_cluster_url(registry, "aios-addons", []) == "http://container-registry.aios-addons.svc.cluster.local:5000"
    assert in_cluster_url(registry, "ns1", ["components/tls"], "corp.example") == \
        "https://container-registry.ns1.svc.corp.example:5000"
    assert addon("inference-server").url("aios-addons", []) == "grpc://inference-server.aios-addons.svc.cluster.local:50052"


def test_the_namespace_is_read_back_from_a_recorded_url():
    assert namespace_from_url("https://container-registry.team-a.svc.cluster.local:5000") == "team-a"
    assert namespace_from_url("grpc://inference-server.x.svc:50052") == "x"
    for not_ours in (None, 7, "", "registry.example.com:5000", "http://10.0.0.1:5000", "http://a.b.c.d:1"):
        assert namespace_from_url(not_ours) is None


def test_options_default_to_the_listed_ones_and_are_named_short():
    available = ["components/bundled-minio", "components/bundled-mongodb"]
    listed = ["components/bundled-mongodb", "components/bundled-minio"]
    assert choose_components(listed, [], [], available) == listed
    assert choose_components(listed, [], ["bundled-minio"], available) == ["components/bundled-mongodb"]
    assert choose_components([], ["tls", "htpasswd-auth", "tls"], [], ["components/htpasswd-auth", "components/tls"]) == \
        ["components/tls", "components/htpasswd-auth"]
    with pytest.raises(AddOnProblem, match=r"--with tsl: no such option \(this add-on has: bundled-minio, bundled-mongodb\)"):
        choose_components(listed, ["tsl"], [], available)
    with pytest.raises(AddOnProblem, match="both --with and --without bundled-minio"):
        choose_components(listed, ["bundled-minio"], ["bundled-minio"], available)


def test_the_defaults_are_what_each_kustomization_lists():
    assert components_listed(ADDONS_DIR / "assets-registry") == ["components/bundled-mongodb", "components/bundled-minio"]
    assert components_listed(ADDONS_DIR / "container-registry") == []


def test_parameter_problems_are_named():
    server = addon("inference-server")
    settings = yaml.safe_load((ADDONS_DIR / "inference-server" / "settings.yaml").read_text())["data"]
    problems = server.problems(dict(settings, CLUSTER_ID="c-1"), [])
    assert problems == ["ADHOC_INSTANCE_ID: required (--set ADHOC_INSTANCE_ID=...)",
                        "BLOCKS_DB_URL: required (--set BLOCKS_DB_URL=...)",
                        "SEARCH_SERVER_API_URL: required (--set SEARCH_SERVER_API_URL=...)"]
    assets = addon("assets-registry")
    defaults = yaml.safe_load((ADDONS_DIR / "assets-registry" / "settings.yaml").read_text())["data"]
    assert assets.problems(defaults, ["components/bundled-minio"]) == []
    (problem,) = assets.problems(defaults, ["components/bundled-mongodb"])
    assert problem.startswith("S3_ENDPOINT_URL: still 'http://assets-registry-minio:9000'")
    assert "--without bundled-minio" in problem
    assert assets.problems(dict(defaults, S3_ENDPOINT_URL="https://s3.example"), []) == []


def test_unknown_addon_and_missing_bases_say_what_to_do(tmp_path):
    with pytest.raises(AddOnProblem, match="no add-on 'registry'; known: container-registry, assets-registry, inference-server"):
        addon("registry")
    with pytest.raises(AddOnProblem, match="pass --bases DIR"):
        bases_dir(tmp_path / "nowhere", env={})
    assert bases_dir(None, env={"AIOS_ADDONS_DIR": str(ADDONS_DIR)}) == ADDONS_DIR
    assert bases_dir(None, env={}) == ADDONS_DIR  # this checkout's

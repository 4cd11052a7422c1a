"""`agent.kube.client.NodeApi` against kmock: the same requests and answers as the
official `CoreV1Api` (its reference), and the agent's lean import set (the
reason NodeApi exists: `CoreV1Api` costs ~21 MiB of the agent's RSS)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from kubernetes.client import CoreV1Api
from kubernetes.client.exceptions import ApiException

from agent.kube.client import NodeApi, describe_api_error, load_api_client
from tests.support.kube_api import kube_api  # noqa: F401 - fixture

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
NODE = "gpu-node-1"
MERGE_PATCH = "application/merge-patch+json"


def _wire(request) -> tuple:
    return (request.method.value, request.url.path, request.headers.get("Content-Type"),
            request.headers.get("Authorization"), request.body and json.loads(request.body))


def test_read_and_patch_go_out_as_core_v1_api_sends_them(kube_api):
    kube_api.put_node(NODE, labels={"nodeID": "nid-1", "zone": "a"}, annotations={"keep": "me"})
    api_client = load_api_client(str(kube_api.kubeconfig), env={})
    patch = {"metadata": {"annotations": {"gpu.aios/info": "x"}, "labels": {"zone": None}}}

    ours = NodeApi(api_client)
    node = ours.read_node(NODE, _request_timeout=5)
    ours.patch_node(NODE, patch, _content_type=MERGE_PATCH, _request_timeout=5)
    ours_requests = [_wire(r) for r in kube_api.requests()]

    kube_api.put_node(NODE, labels={"nodeID": "nid-1", "zone": "a"}, annotations={"keep": "me"})
    reference = CoreV1Api(api_client)
    reference_node = reference.read_node(NODE, _request_timeout=5)
    reference.patch_node(NODE, patch, _content_type=MERGE_PATCH, _request_timeout=5)
    reference_requests = [_wire(r) for r in kube_api.requests()][len(ours_requests):]

    assert ours_requests == reference_requests
    assert [r[:3] for r in ours_requests] == [("GET", f"/api/v1/nodes/{NODE}", None),
                                               ("PATCH", f"/api/v1/nodes/{NODE}", MERGE_PATCH)]
    assert type(node) is type(reference_node) and node.to_dict() == reference_node.to_dict()
    assert node.metadata.labels == {"nodeID": "nid-1", "zone": "a"}
    assert kube_api.annotations(NODE) == {"keep": "me", "gpu.aios/info": "x"}
    assert kube_api.labels(NODE) == {"nodeID": "nid-1"}


def test_a_missing_node_is_an_api_exception_with_its_status(kube_api):
    api = NodeApi(load_api_client(str(kube_api.kubeconfig), env={}))
    with pytest.raises(ApiException) as caught:
        api.read_node("no-such-node", _request_timeout=5)
    assert caught.value.status == 404
    assert "does not exist" in describe_api_error(caught.value, verb="get", node_name="no-such-node")


IMPORTS_OF_THE_AGENT = """
import json, sys
from agent.commands import run
from agent.kube.annotator import open_node_annotator
from agent.commands.run import resolve_node_identity
annotator = open_node_annotator("{node}", kubeconfig=sys.argv[1] or None, env={{}})
identity = resolve_node_identity(annotator, "{node}", env={{}}) if annotator else None
print(json.dumps({{"annotator": annotator is not None, "node_id": identity and identity.node_id,
                  "modules": sorted(sys.modules)}}))
"""


def _agent_modules(kubeconfig: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")}
    env.update(PYTHONPATH=str(ROOT), HOME=str(ROOT / "no-such-home"))
    out = subprocess.run([sys.executable, "-c", IMPORTS_OF_THE_AGENT.format(node=NODE), kubeconfig],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout)


def _top_level(modules: list[str]) -> set[str]:
    return {name.split(".")[0] for name in modules}


def test_the_annotating_agent_reads_its_node_without_importing_core_v1_api(kube_api):
    kube_api.put_node(NODE, labels={"nodeID": "nid-7"})
    seen = _agent_modules(str(kube_api.kubeconfig))
    assert seen["annotator"] and seen["node_id"] == "nid-7"
    assert "kubernetes.client" in seen["modules"]
    assert "kubernetes.client.api.core_v1_api" not in seen["modules"]
    assert not _top_level(seen["modules"]) & {"aggregator", "fastapi", "uvicorn", "starlette", "sqlite3"}


def test_without_a_kubernetes_api_the_agent_does_not_import_kubernetes():
    seen = _agent_modules("")
    assert not seen["annotator"]
    assert not _top_level(seen["modules"]) & {"kubernetes", "aggregator", "fastapi", "uvicorn"}

"""The written-down RBAC is valid Kubernetes and covers exactly what the annotator and the condition writer do."""

from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from kubernetes.client import CoreV1Api

from agent.kube.annotator import Backoff, NodeAnnotator
from agent.kube.client import NodeApi, load_api_client, read_node_identity
from agent.kube.condition_writer import NodeConditionWriter
from agent.kube.conditions import ConditionState
from proto.health.conditions import CONDITION_TYPES
from proto.telemetry.v1.readings import MIB, GpuInventory, NodeInventory
from tests.support.kube_api import kube_api  # noqa: F401 - fixture

RBAC = Path(__file__).resolve().parents[2] / "deploy" / "daemonset" / "agent-rbac.yaml"
HTTP_TO_VERB = {"GET": "get", "PATCH": "patch", "PUT": "update", "POST": "create", "DELETE": "delete"}


def rbac_documents():
    return list(yaml.safe_load_all(RBAC.read_text()))


def test_rbac_manifest_is_valid_kubernetes():
    docs = rbac_documents()
    assert [d["kind"] for d in docs] == ["ServiceAccount", "ClusterRole", "ClusterRoleBinding"]
    for doc in docs:
        kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)
    account, _, binding = docs
    (subject,) = binding["subjects"]
    assert (subject["name"], subject["namespace"]) == (account["metadata"]["name"], account["metadata"]["namespace"])


def _resource(path: str) -> str:
    """"nodes" or "nodes/status" of /api/v1/nodes/NAME[/status]."""
    parts = path.strip("/").split("/")
    return parts[2] + ("/" + parts[4] if len(parts) > 4 else "")


@pytest.mark.integration
def test_annotator_and_condition_writer_use_only_the_granted_verbs(kube_api):
    kube_api.put_node("n1", labels={"nodeID": "id-1"})
    api = CoreV1Api(load_api_client(str(kube_api.kubeconfig), env={}))
    read_node_identity(api, "n1", env={})
    annotator = NodeAnnotator(api, "n1", resync_interval_s=0.05, backoff=Backoff(0.05, 0.1), env={})
    gpu = GpuInventory(index=0, uuid="GPU-1", name="Tesla T4", memory_bytes=15360 * MIB)
    annotator.start()
    try:
        annotator.observe(NodeInventory("id-1", "n1", None, (gpu,)))
        kube_api.wait_for(lambda: kube_api.labels("n1").get("gpu.aios/count") == "1", what="the first write")
        annotator.observe(NodeInventory("id-1", "n1", None, ()))
        kube_api.wait_for(lambda: kube_api.labels("n1").get("gpu.aios/count") == "0", what="the second write")
    finally:
        annotator.stop()
    writer = NodeConditionWriter(NodeApi(load_api_client(str(kube_api.kubeconfig), env={})), "n1", CONDITION_TYPES)
    writer.observe([ConditionState(t, False, "Healthy", "fine", 1.0) for t in CONDITION_TYPES])
    writer.step()
    assert set(CONDITION_TYPES) <= set(kube_api.conditions("n1"))

    used = {(HTTP_TO_VERB[r.method.value], _resource(r.url.path)) for r in kube_api.requests()}
    (role,) = [d for d in rbac_documents() if d["kind"] == "ClusterRole"]
    granted = {(verb, res) for rule in role["rules"] for verb in rule["verbs"] for res in rule["resources"]}
    assert used == granted == {("get", "nodes"), ("patch", "nodes"), ("patch", "nodes/status")}
    assert all(r.url.path in ("/api/v1/nodes/n1", "/api/v1/nodes/n1/status") for r in kube_api.requests())  # its own Node

"""`aios-aggregator addons ...` against kmock (the real `kubernetes` client on loopback) and a real
aggregator HTTP API (SQLite, governance with real policies), as an operator runs it."""

from __future__ import annotations

import functools
import io
import json
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest
import yaml
from kmock import KubernetesError

from aggregator.addons.catalogue import FIELD_MANAGER
from aggregator.addons.http_routes import addons_router
from aggregator.addons.kube import KubeObjects, load_operator_client
from aggregator.cli import build_parser
from aggregator.cluster.store import ClusterStore
from aggregator.db import Database
from aggregator.governance.prechecks import Governance
from aggregator.policies import PolicyConfig, open_policy
from aggregator.web.app import create_app
from aggregator.web.serving import start_http_in_thread
from tests.support.addons_kube import APPLY, addons_kube, forbidden, resource_of  # noqa: F401
from tests.support.policy_packages import policy_source, write_directory

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
NS = "aios-addons"
TOKEN = "addons-test-token"
CLUSTER = {"id": "cluster-123", "regionId": "eu-central-1", "config": {"policyExecutionMode": "local"},
           "nodes": {"count": 0, "nodeData": []}, "clusterMetadata": {"name": "lab"}}
REGISTRY_URL = "http://container-registry.aios-addons.svc.cluster.local:5000"
# what deploy/addons/container-registry holds, written out here (not computed by the code under test)
REGISTRY_OBJECTS = [("Role", "aios-aggregator-read-container-registry"),
                    ("RoleBinding", "aios-aggregator-read-container-registry"),
                    ("ConfigMap", "container-registry-settings"), ("PersistentVolumeClaim", "container-registry-data"),
                    ("Service", "container-registry"), ("Deployment", "container-registry")]
REFUSE_REGISTRY = """
def __init__(self, rule_id, settings, parameters): pass
def eval(self, parameters, input_data, context):
    url_map = input_data["cluster_data"]["config"].get("urlMap") or {}
    if "containerRegistry" in url_map:
        return {"allowed": False, "input_data": "no private registry in this cluster: " + url_map["containerRegistry"]}
    return {"allowed": True, "input_data": input_data}
"""


def run(*argv: str, **kwargs) -> tuple[int, str, str]:
    args = build_parser().parse_args(["addons", *argv])
    out, err = io.StringIO(), io.StringIO()
    code = args.run(args, out=out, err=err, **kwargs)
    return code, out.getvalue(), err.getvalue()


def kubectl_kustomize(name: str) -> list[dict] | None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return None
    text = subprocess.run([kubectl, "kustomize", str(ROOT / "deploy" / "addons" / name)], capture_output=True,
                          text=True, check=True).stdout
    return [d for d in yaml.safe_load_all(text) if d]


@pytest.fixture
def aggregator(tmp_path, addons_kube):
    """The aggregator's HTTP API with the cluster document stored and GET /addons reading kmock."""
    db = Database(tmp_path / "aggregator.db")
    store = ClusterStore(db)
    store.put(CLUSTER["id"], CLUSTER)
    config = PolicyConfig(cache_dir=tmp_path / "policy-cache", call_timeout_s=20)
    governance = Governance(db, functools.partial(open_policy, config=config))
    api_client = load_operator_client(str(addons_kube.kubeconfig))
    kube = KubeObjects(api_client, field_manager=FIELD_MANAGER)
    app = create_app(governance=governance, cluster_store=store, tokens=[TOKEN],
                     routers=[addons_router(cluster_store=store, cluster_id=CLUSTER["id"], kube=kube)])
    server = start_http_in_thread(app)

    class Aggregator:
        url = f"http://127.0.0.1:{server.port}"

        def get(self, path: str) -> dict:
            request = urllib.request.Request(self.url + path, headers={"Authorization": f"Bearer {TOKEN}"})
            with urllib.request.urlopen(request, timeout=30) as answer:
                return json.loads(answer.read())

        def document(self) -> dict:
            return self.get(f"/clusters/read/{CLUSTER['id']}")["data"]

    aggregator = Aggregator()
    aggregator.governance = governance
    yield aggregator
    server.stop()
    governance.close()
    api_client.close()
    db.close()


def kube_args(kube) -> list[str]:
    return ["--kubeconfig", str(kube.kubeconfig)]


def record_args(aggregator) -> list[str]:
    return ["--aggregator-url", aggregator.url, "--token", TOKEN, "--cluster-id", CLUSTER["id"]]


# ------------------------------------------------------------------ install


def test_install_applies_exactly_the_rendered_objects_and_a_second_install_changes_nothing(addons_kube):
    code, out, err = run("install", "container-registry", *kube_args(addons_kube), "--no-record", "--no-wait")
    assert code == 0, err
    applies = [a for a in addons_kube.emulator.applied if a["query"].get("dryRun") != "All"]
    # the namespace first, then the base's objects in dependency order, each once
    assert [(a["kind"], a["name"]) for a in applies] == [("Namespace", NS), *REGISTRY_OBJECTS]
    for applied in applies:
        assert applied["content_type"] == APPLY
        assert applied["query"] == {"fieldManager": "aios-addons", "force": "true"}
    # counted at the server: one PATCH per object, nothing else written
    assert len(addons_kube.writes()) == len(REGISTRY_OBJECTS) + 1
    assert all(r.method.value == "PATCH" for r in addons_kube.writes())
    expected = kubectl_kustomize("container-registry")
    if expected is not None:  # the bodies are what `kubectl kustomize` renders, field for field
        assert {(a["kind"], a["name"]): a["body"] for a in applies[1:]} == \
               {(d["kind"], d["metadata"]["name"]): d for d in expected}
    assert addons_kube.stored(NS) == set(REGISTRY_OBJECTS)

    writes_before = len(addons_kube.writes())
    code, out, err = run("install", "container-registry", *kube_args(addons_kube), "--no-record", "--no-wait")
    assert code == 0, err
    assert len(addons_kube.writes()) == writes_before  # a second install sends no change
    assert "0 to create, 0 to change, 6 unchanged" in out and "nothing to change" in out


def test_dry_run_prints_the_diff_the_server_predicts_and_writes_nothing(addons_kube):
    assert run("install", "container-registry", *kube_args(addons_kube), "--no-record", "--no-wait")[0] == 0
    writes_before = len(addons_kube.writes())
    code, out, err = run("install", "container-registry", *kube_args(addons_kube), "--no-record", "--no-wait",
                         "--set", "STORAGE_SIZE=30Gi", "--dry-run")
    assert code == 0, err
    assert len(addons_kube.writes()) == writes_before
    assert "0 to create, 2 to change, 4 unchanged" in out
    assert "configure  persistentvolumeclaim/container-registry-data" in out
    assert "-      storage: 20Gi\n" in out and "+      storage: 30Gi\n" in out
    assert "dry run: nothing was changed" in out
    assert addons_kube.get("PersistentVolumeClaim", NS, "container-registry-data")["spec"]["resources"] == {
        "requests": {"storage": "20Gi"}}


def test_options_and_parameters_reach_the_applied_objects(addons_kube):
    code, _, err = run("install", "container-registry", *kube_args(addons_kube), "--no-record", "--no-wait",
                       "--with", "htpasswd-auth", "--set", "HTPASSWD_SECRET=lab-users", "--namespace", "tools")
    assert code == 0, err
    pod = addons_kube.get("Deployment", "tools", "container-registry")["spec"]["template"]["spec"]
    assert {"name": "htpasswd", "secret": {"secretName": "lab-users", "items": [{"key": "htpasswd", "path": "htpasswd"}]}} \
        in pod["volumes"]
    assert {"name": "REGISTRY_AUTH", "value": "htpasswd"} in pod["containers"][0]["env"]
    assert addons_kube.emulator.namespaces["tools"]["metadata"]["name"] == "tools"


def test_bad_names_options_and_parameters_are_refused_before_anything_is_written(addons_kube, aggregator):
    cases = [
        (("install", "registry", "--no-record"), "no add-on 'registry'"),
        (("install", "container-registry", "--with", "tsl", "--no-record"),
         "--with tsl: no such option (this add-on has: htpasswd-auth, tls)"),
        (("install", "container-registry", "--set", "STORAGE=1Gi", "--no-record"), "has no setting 'STORAGE'"),
        (("install", "container-registry", "--set", "oops", "--no-record"), "--set 'oops': expected KEY=VALUE"),
        (("install", "inference-server", *record_args(aggregator)),
         "ADHOC_INSTANCE_ID: required (--set ADHOC_INSTANCE_ID=...); BLOCKS_DB_URL: required"),
        (("install", "assets-registry", "--without", "bundled-minio", "--no-record"), "S3_ENDPOINT_URL: still"),
        (("install", "container-registry"), "pass --aggregator-url http://HOST:PORT (or AIOS_AGGREGATOR_URL), or --no-record"),
    ]
    for argv, message in cases:
        code, _, err = run(*argv, *kube_args(addons_kube), "--no-wait")
        assert code == 2, (argv, err)
        assert message in err, (argv, err)
    assert addons_kube.writes() == []


# ------------------------------------------------------------------ errors from the API server


def test_a_forbidden_verb_is_reported_with_the_verb_and_the_resource(addons_kube):
    addons_kube.emulator.resource_refusals[("PATCH", "deployments")] = forbidden("patch", "deployments", "apps", NS)
    code, out, err = run("install", "container-registry", *kube_args(addons_kube), "--no-record", "--no-wait")
    assert code == 1
    assert ("forbidden: may not patch deployments.apps in namespace 'aios-addons' (RBAC rule: apiGroups ['apps'], "
            "resources [deployments], verbs [patch]; see docs/rbac.md)") in err
    assert 'cannot patch resource "deployments" in API group "apps"' in err  # the server's own words
    assert "applied service/container-registry" in out  # what went before is said, the Deployment is not there
    assert addons_kube.get("Deployment", NS, "container-registry") is None

    addons_kube.emulator.resource_refusals[("GET", "statefulsets")] = forbidden("list", "statefulsets", "apps", NS)
    code, _, err = run("status", "container-registry", *kube_args(addons_kube))
    assert code == 1 and "may not list statefulsets.apps in namespace 'aios-addons'" in err


def test_an_unreachable_api_server_is_reported(addons_kube):
    addons_kube.go_down()
    code, _, err = run("status", *kube_args(addons_kube), "--timeout", "5")
    assert code == 1 and "the API server could not be reached" in err


# ------------------------------------------------------------------ status and progress


def hold_not_ready(kube) -> None:
    """The Deployment stuck on an image pull, the claim waiting for a volume, each with its Event."""
    kube.set_status("Deployment", NS, "container-registry", {
        "observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "unavailableReplicas": 1,
        "conditions": [{"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable",
                        "message": "Deployment does not have minimum availability."}]}, generation=1)
    kube.set_status("PersistentVolumeClaim", NS, "container-registry-data", {"phase": "Pending"})
    kube.put({"apiVersion": "v1", "kind": "Pod", "metadata": {
        "name": "container-registry-5d8f7-qx2lp", "namespace": NS,
        "labels": {"app.kubernetes.io/name": "container-registry", "addons.aios/name": "container-registry"}},
        "status": {"phase": "Pending", "containerStatuses": [{"name": "registry", "state": {"waiting": {
            "reason": "ImagePullBackOff", "message": 'Back-off pulling image "registry:2.8.3"'}}}]}})
    for name, kind, target, kind_of_event, reason, message in (
        ("e1", "Pod", "container-registry-5d8f7-qx2lp", "Warning", "Failed",
         'Failed to pull image "registry:2.8.3": failed to resolve reference: not found'),
        ("e2", "PersistentVolumeClaim", "container-registry-data", "Normal", "ExternalProvisioning",
         "Waiting for a volume to be created either by the external provisioner 'csi.example' or manually"),
        ("e3", "Pod", "someone-else", "Warning", "Failed", "not about this add-on"),
    ):
        kube.put({"apiVersion": "v1", "kind": "Event", "metadata": {"name": name, "namespace": NS},
                  "type": kind_of_event, "reason": reason, "message": message, "count": 1,
                  "lastTimestamp": "2026-01-01T10:00:00Z", "involvedObject": {"kind": kind, "name": target}})


def set_ready(kube) -> None:
    kube.set_status("Deployment", NS, "container-registry", {
        "observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "readyReplicas": 1, "availableReplicas": 1,
        "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"}]}, generation=1)
    kube.set_status("PersistentVolumeClaim", NS, "container-registry-data", {"phase": "Bound"})


def test_status_reads_conditions_and_shows_a_not_ready_workload_with_its_event(addons_kube):
    assert run("install", "container-registry", *kube_args(addons_kube), "--no-record", "--no-wait")[0] == 0
    hold_not_ready(addons_kube)
    code, out, err = run("status", "container-registry", *kube_args(addons_kube))
    assert code == 3, err
    assert "container-registry (namespace aios-addons): NOT READY" in out
    lines = out.splitlines()
    deployment = next(i for i, line in enumerate(lines) if line.strip().startswith("deployment/container-registry"))
    assert lines[deployment].endswith("0/1 ready")
    assert lines[deployment + 1].strip() == "MinimumReplicasUnavailable: Deployment does not have minimum availability."
    assert 'ImagePullBackOff: Back-off pulling image "registry:2.8.3"' in lines[deployment + 2]
    assert lines[deployment + 3].strip() == ('event on pod/container-registry-5d8f7-qx2lp: Failed: Failed to pull image '
                                             '"registry:2.8.3": failed to resolve reference: not found')
    assert re.search(r"persistentvolumeclaim/container-registry-data +Pending\n", out)
    assert "ExternalProvisioning: Waiting for a volume to be created" in out
    assert "not about this add-on" not in out

    set_ready(addons_kube)
    code, out, _ = run("status", "container-registry", *kube_args(addons_kube))
    assert code == 0 and "container-registry (namespace aios-addons): ready" in out
    code, out, _ = run("status", *kube_args(addons_kube))
    assert code == 0 and "assets-registry (namespace aios-addons): not installed" in out


def test_install_shows_the_rollout_converging(addons_kube):
    addons_kube.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    clock = [0.0]

    def sleep(seconds: float) -> None:  # the cluster moves on while the command waits
        clock[0] += seconds
        if clock[0] >= 4:
            set_ready(addons_kube)
        else:
            hold_not_ready(addons_kube)

    code, out, err = run("install", "container-registry", *kube_args(addons_kube), "--no-record",
                         "--wait-timeout", "60", sleep=sleep, clock=lambda: clock[0])
    assert code == 0, err
    first, after = out.index("deployment/container-registry: 0/1 ready"), out.index("deployment/container-registry: 1/1 ready")
    assert first < after
    assert "Back-off pulling image" in out[first:after]
    assert out.rstrip().endswith(f"container-registry is ready: {REGISTRY_URL}")


def test_install_says_when_the_rollout_does_not_converge(addons_kube):
    clock = [0.0]

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    code, out, err = run("install", "container-registry", *kube_args(addons_kube), "--no-record", "--wait-timeout", "6",
                         sleep=sleep, clock=lambda: clock[0])
    assert code == 3
    assert "container-registry is not ready after 6 s" in err and "addons status container-registry -n aios-addons" in err


# ------------------------------------------------------------------ remove


def test_remove_deletes_only_the_labelled_objects_and_keeps_the_data(addons_kube):
    assert run("install", "container-registry", *kube_args(addons_kube), "--no-record", "--no-wait")[0] == 0
    others = [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "operator-notes", "namespace": NS}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {
            "name": "assets-registry", "namespace": NS, "labels": {"addons.aios/name": "assets-registry"}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {
            "name": "container-registry-look-alike", "namespace": NS,
            "labels": {"app.kubernetes.io/name": "container-registry"}}},
    ]
    for obj in others:
        addons_kube.put(obj)
    code, out, err = run("remove", "container-registry", *kube_args(addons_kube), "--no-record", "--dry-run")
    assert code == 0 and addons_kube.requests("DELETE") == []
    assert "keep    persistentvolumeclaim/container-registry-data (data; --delete-data deletes it)" in out

    code, out, err = run("remove", "container-registry", *kube_args(addons_kube), "--no-record")
    assert code == 0, err
    deleted = {r.url.path.rsplit("/", 1)[-1] for r in addons_kube.requests("DELETE")}
    assert deleted == {name for kind, name in REGISTRY_OBJECTS if kind != "PersistentVolumeClaim"}
    assert addons_kube.stored(NS) == {("PersistentVolumeClaim", "container-registry-data"), ("ConfigMap", "operator-notes"),
                                      ("Deployment", "assets-registry"), ("Service", "container-registry-look-alike")}
    assert NS in addons_kube.emulator.namespaces  # never deleted: other things live there

    code, out, _ = run("remove", "container-registry", *kube_args(addons_kube), "--no-record", "--delete-data")
    assert code == 0 and "deleted persistentvolumeclaim/container-registry-data" in out
    assert ("PersistentVolumeClaim", "container-registry-data") not in addons_kube.stored(NS)


# ------------------------------------------------------------------ the cluster document and GET /addons


def test_the_url_is_recorded_in_the_cluster_document_and_answered_by_get_addons(addons_kube, aggregator):
    code, out, err = run("install", "container-registry", *kube_args(addons_kube), *record_args(aggregator), "--no-wait")
    assert code == 0, err
    assert f"recorded in cluster cluster-123's document: config.urlMap.containerRegistry = {REGISTRY_URL}" in out
    document = aggregator.document()
    assert document["config"]["urlMap"] == {"containerRegistry": REGISTRY_URL}
    assert document["config"]["policyExecutionMode"] == "local"  # the rest of the document is kept

    answer = aggregator.get("/addons")
    entries = {e["name"]: e for e in answer["addons"]}
    registry = entries["container-registry"]
    assert (registry["url"], registry["namespace"], registry["installed"], registry["ready"]) == \
           (REGISTRY_URL, NS, True, False)
    assert [o["name"] for o in registry["objects"]] == ["container-registry"]
    assert (entries["assets-registry"]["installed"], entries["assets-registry"]["url"]) == (False, None)
    set_ready(addons_kube)
    assert {e["name"]: e["ready"] for e in aggregator.get("/addons")["addons"]}["container-registry"] is True

    # a second install: nothing sent to Kubernetes, nothing to record
    code, out, _ = run("install", "container-registry", *kube_args(addons_kube), *record_args(aggregator), "--no-wait")
    assert code == 0 and f"config.urlMap.containerRegistry = {REGISTRY_URL} (already recorded)" in out

    code, out, _ = run("remove", "container-registry", *kube_args(addons_kube), *record_args(aggregator))
    assert code == 0 and "config.urlMap.containerRegistry left out" in out
    assert aggregator.document()["config"]["urlMap"] == {}


def test_get_addons_names_a_missing_permission_and_keeps_answering(addons_kube, aggregator):
    addons_kube.emulator.resource_refusals[("GET", "statefulsets")] = forbidden(
        "list", "statefulsets", "apps", NS, user="system:serviceaccount:controllers:aios-aggregator")
    answer = aggregator.get("/addons")
    assert answer["success"] is True and len(answer["addons"]) == 3
    for entry in answer["addons"]:
        assert entry["ready"] is None and "may not list statefulsets.apps in namespace 'aios-addons'" in entry["error"]


def test_a_refusing_update_cluster_policy_leaves_the_url_map_unchanged_and_the_command_says_so(
        tmp_path, addons_kube, aggregator):
    policy = write_directory(tmp_path / "refuse-registry", policy_source(REFUSE_REGISTRY))
    aggregator.governance.update({"update_cluster": str(policy)})
    code, out, err = run("install", "container-registry", *kube_args(addons_kube), *record_args(aggregator), "--no-wait")
    assert code == 4
    assert ("the aggregator refused to update cluster cluster-123's document (config.urlMap.containerRegistry = "
            f"{REGISTRY_URL}): update_cluster pre-check refused the update: no private registry in this cluster: "
            f"{REGISTRY_URL}; config.urlMap is unchanged") in err
    assert "urlMap" not in aggregator.document()["config"]
    assert addons_kube.get("Deployment", NS, "container-registry") is not None  # the add-on itself is installed


def test_the_cluster_id_comes_from_the_aios_cluster_configmap_and_the_inference_server_gets_it(addons_kube, aggregator):
    addons_kube.put({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "aios-cluster", "namespace": "controllers"},
                     "data": {"AIOS_CLUSTER_ID": "cluster-123"}})
    code, out, err = run("install", "inference-server", *kube_args(addons_kube), "--aggregator-url", aggregator.url,
                         "--token", TOKEN, "--no-wait", "--set", "ADHOC_INSTANCE_ID=lab-inference-1",
                         "--set", "BLOCKS_DB_URL=http://blocks-db.example:3001",
                         "--set", "SEARCH_SERVER_API_URL=http://search.example:12000")
    assert code == 0, err
    container = addons_kube.get("Deployment", NS, "inference-server")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["CLUSTER_ID"] == "cluster-123"  # the cluster document's id
    assert env["ADHOC_INSTANCE_ID"] == "lab-inference-1"
    assert env["BLOCKS_DB_URL"] == env["BLOCKS_URL"] == "http://blocks-db.example:3001"
    assert aggregator.document()["config"]["urlMap"] == {
        "inferenceServer": "grpc://inference-server.aios-addons.svc.cluster.local:50052"}


def test_an_unknown_cluster_is_reported(addons_kube, aggregator):
    code, _, err = run("install", "container-registry", *kube_args(addons_kube), "--aggregator-url", aggregator.url,
                       "--token", TOKEN, "--cluster-id", "nope", "--no-wait")
    assert code == 1 and "GET /clusters/read/nope: cluster 'nope' is not known here" in err
    assert addons_kube.writes() == []


def test_a_kubernetes_error_other_than_403_carries_the_server_message(addons_kube):
    addons_kube.emulator.resource_refusals[("PATCH", "services")] = KubernetesError(
        status=422, reason="Invalid", message='Service "container-registry" is invalid: spec.ports[0].port: Invalid value')
    code, _, err = run("install", "container-registry", *kube_args(addons_kube), "--no-record", "--no-wait")
    assert code == 1
    assert ("patch services 'container-registry' in namespace 'aios-addons': the API server answered 422: "
            'Service "container-registry" is invalid') in err
    assert resource_of("Service").plural == "services"


def test_the_whole_serve_answers_get_addons_with_its_own_kubernetes_client(tmp_path, addons_kube):
    import asyncio
    import threading

    from aggregator.service import Aggregator, ServeConfig

    assert run("install", "container-registry", *kube_args(addons_kube), "--no-record", "--no-wait")[0] == 0
    set_ready(addons_kube)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    aggregator = Aggregator(ServeConfig(db_path=tmp_path / "serve.db", tokens=(TOKEN,), grpc_port=0, http_port=0,
                                        host="127.0.0.1", cluster_id="cluster-123",
                                        kubeconfig=str(addons_kube.kubeconfig), env={}))
    try:
        asyncio.run_coroutine_threadsafe(aggregator.start(), loop).result(30)
        request = urllib.request.Request(f"http://127.0.0.1:{aggregator.http.port}/addons",
                                         headers={"Authorization": f"Bearer {TOKEN}"})  # reads need a token too
        with urllib.request.urlopen(request, timeout=30) as answer:
            entries = {e["name"]: e for e in json.loads(answer.read())["addons"]}
        assert (entries["container-registry"]["installed"], entries["container-registry"]["ready"]) == (True, True)
        assert entries["container-registry"]["url"] is None  # no cluster document stored in this aggregator
        assert entries["inference-server"]["installed"] is False
    finally:
        asyncio.run_coroutine_threadsafe(aggregator.stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()

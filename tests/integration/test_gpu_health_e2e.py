"""GPU health reaching Kubernetes, end to end: `aios-agent run` over the fake NVML, `aios-aggregator serve`
with the quarantine in mode `taint`, and kmock as the Kubernetes API both of them talk to.

XID 79 on one GPU -> the Node condition (GPU, XID and action in its message) -> the taint; the operator
acknowledges through the stability policy's `acknowledge` -> the condition False and the taint gone.
An NVML call made to hang -> GPUUnresponsive naming the call, the other GPUs still sampled, the agent live.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from tests.fakenvml.presets import h100_sxm
from tests.metrics_fixtures.exposition import parse_exposition, value
from tests.support.kube_api import kube_api  # noqa: F401 - fixture
from tests.support.net import free_port
from tests.support.telemetry import TOKEN, AgentProcess, AggregatorProcess, base_env, get_node
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

TYPES = {"GPUXidCritical", "GPULost", "GPUMemoryErrors", "GPUUnresponsive", "GPUThermalThrottling"}
TAINT = "gpu.aios/unhealthy"
READY = {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status",
         "lastHeartbeatTime": "2026-01-01T00:00:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z"}


def http(method: str, url: str, body: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, method=method, data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def healthz(port: int) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def ours(taints: list[dict]) -> list[str]:
    return [f"{t['value']}:{t['effect']}" for t in taints if t["key"] == TAINT]


@pytest.fixture
def cluster(tmp_path, kube_api, fake_nvml):
    """kmock with Node `e2e-name` (nodeID e2e), an aggregator quarantining in mode taint, an agent on 3 fake H100s."""
    fake_nvml.configure(gpus=[h100_sxm(0), h100_sxm(1), h100_sxm(2)])
    kube_api.put_node("e2e-name", labels={"nodeID": "e2e"}, conditions=[READY])
    aggregator = AggregatorProcess(tmp_path).start(env=base_env(
        KUBECONFIG=str(kube_api.kubeconfig), AIOS_NAMESPACE="controllers", AIOS_QUARANTINE="taint",
        AIOS_QUARANTINE_MAX_PERCENT="100",  # a one-node cluster: 25 % of it is no node at all
        CLUSTER_STABILITY_CHECK_INTERVAL="3600",
    ))
    port = free_port()
    # the agent proves it is e2e-name's with a projected ServiceAccount token, as in a cluster
    sa_token = tmp_path / "sa-token"
    sa_token.write_text(kube_api.emulator.token_issuer.issue(node="e2e-name"))
    agent = AgentProcess(tmp_path, "e2e", aggregator.address, interval_s=0.5, env={
        **fake_nvml.env, "KUBECONFIG": str(kube_api.kubeconfig), "AIOS_METRICS_PORT": str(port),
        "AIOS_NVML_CALL_TIMEOUT_S": "1", "AIOS_SA_TOKEN_FILE": str(sa_token),
    })
    try:
        yield kube_api, fake_nvml, aggregator, agent, port
    finally:
        agent.stop()
        aggregator.stop()


def test_xid_79_condition_then_taint_then_acknowledged_both_cleared(cluster):
    kube_api, fake_nvml, aggregator, agent, port = cluster
    # at start every type is written False, beside the kubelet's Ready
    conditions = kube_api.wait_for(lambda: set(kube_api.conditions("e2e-name")) >= TYPES, what="the conditions at start")
    conditions = kube_api.conditions("e2e-name")
    assert conditions["Ready"] == READY
    assert {t: conditions[t]["status"] for t in TYPES} == dict.fromkeys(TYPES, "False")
    assert conditions["GPUXidCritical"]["reason"] == "NoCriticalXid"
    wait_for(lambda: get_node(aggregator.address, "e2e"), what="the agent streaming")

    fake_nvml.inject_xid(1, 79)
    kube_api.wait_for(lambda: kube_api.conditions("e2e-name")["GPUXidCritical"]["status"] == "True",
                      what="GPUXidCritical True")
    xid = kube_api.conditions("e2e-name")["GPUXidCritical"]
    assert xid["reason"] == "XidNeedsNodeReboot"
    assert xid["message"] == (f"GPU 1 ({h100_sxm(1).uuid}): XID 79 (ROBUST_CHANNEL_GPU_HAS_FALLEN_OFF_THE_BUS): "
                              "GPU has fallen off the bus; reboot the node")
    kube_api.wait_for(lambda: ours(kube_api.taints("e2e-name")) == ["XidNeedsNodeReboot:NoSchedule"], what="the taint")
    status, body = http("GET", f"{aggregator.http_url}/nodes_status")
    entry = next(n for n in body["nodes_status"] if n["node_id"] == "e2e")
    assert entry["quarantine"]["state"] == "quarantined" and entry["quarantine"]["gpus"] == [1]
    with urllib.request.urlopen(f"{aggregator.http_url}/metrics", timeout=10) as response:
        metrics = parse_exposition(response.read().decode())
    assert value(metrics, "aios_cluster_quarantine_nodes", cluster="test-cluster", state="quarantined") == 1
    assert value(metrics, "aios_cluster_quarantine_actions_total", cluster="test-cluster", action="quarantine",
                 outcome="applied") == 1
    summary = get_node(aggregator.address, "e2e").summary
    assert (summary.quarantine.state, summary.quarantine.reason) == ("quarantined", "XidNeedsNodeReboot")
    events = [r.data for r in kube_api.requests("POST") if r.url.path.endswith("/events")]
    assert any(e["involvedObject"] == {"apiVersion": "v1", "kind": "Node", "name": "e2e-name"}
               and e["reason"] == "GpuQuarantined" for e in events)

    # the operator acknowledges, through the stability policy (which must have seen the XID)
    wait_for(lambda: any(r.get("xid") == 79 for v in http("GET", f"{aggregator.http_url}/stability/verdicts")[1]["verdicts"]
                         for r in (v.get("stability_check_data") or {}).get("reasons", [])),
             what="a verdict naming the XID")
    status, answer = http("POST", f"{aggregator.http_url}/mgmt", {
        "block_id": "", "service": "stability_checker", "mgmt_action": "acknowledge", "mgmt_data": {"node_id": "e2e"}})
    assert status == 200 and answer["data"]["acknowledged"][0]["xid"] == 79
    kube_api.wait_for(lambda: kube_api.conditions("e2e-name")["GPUXidCritical"]["status"] == "False",
                      what="GPUXidCritical False after the acknowledgement")
    assert kube_api.conditions("e2e-name")["GPUXidCritical"]["reason"] == "AcknowledgedByOperator"
    kube_api.wait_for(lambda: ours(kube_api.taints("e2e-name")) == [], what="the taint lifted")
    status, body = http("GET", f"{aggregator.http_url}/quarantine")
    assert [(a["action"], a["outcome"]) for a in reversed(body["actions"])] == [
        ("quarantine", "applied"), ("release", "applied")]
    # the whole time, only these calls: the agent's (its Node, its status) and the aggregator's
    # (and the aggregator's TokenReview of the agent's ServiceAccount token)
    def resource(path: str) -> str:
        if path.endswith("/status"):
            return "status"
        parts = path.split("/")
        return parts[4] if parts[1] == "apis" else parts[3]  # /apis/<group>/<version>/<resource>, /api/v1/<resource>
    verbs = {(r.method.value, resource(r.url.path)) for r in kube_api.requests()}
    assert verbs <= {("GET", "nodes"), ("PATCH", "nodes"), ("PATCH", "status"), ("POST", "namespaces"),
                     ("POST", "tokenreviews")}


def test_a_hung_nvml_call_is_gpu_unresponsive_and_the_agent_stays_live(cluster):
    kube_api, fake_nvml, aggregator, agent, port = cluster
    kube_api.wait_for(lambda: set(kube_api.conditions("e2e-name")) >= TYPES, what="the conditions at start")
    wait_for(lambda: get_node(aggregator.address, "e2e"), what="the agent streaming")
    fake_nvml.hang_call(1, "nvmlDeviceGetTemperature")
    kube_api.wait_for(lambda: kube_api.conditions("e2e-name")["GPUUnresponsive"]["status"] == "True",
                      what="GPUUnresponsive True")
    state = kube_api.conditions("e2e-name")["GPUUnresponsive"]
    assert state["reason"] == "NvmlCallHung"
    assert f"GPU 1 ({h100_sxm(1).uuid})" in state["message"]
    assert "nvmlDeviceGetTemperature did not return within 1 s" in state["message"]
    # the other GPUs keep being sampled: a change on GPU 0 and 2 reaches the aggregator
    fake_nvml.set(0, temperature_c=66)
    fake_nvml.set(2, temperature_c=67)

    def temperatures():
        detail = get_node(aggregator.address, "e2e")
        gpus = {g.index: g for g in detail.latest_sample.gpus}
        return (gpus[0].temperature_c, gpus[2].temperature_c, gpus[1].HasField("temperature_c")) == (66.0, 67.0, False)

    wait_for(temperatures, what="GPU 0 and 2 sampled while GPU 1 hangs")
    status, body = healthz(port)
    assert status == 200 and body["status"] == "ok" and body["unresponsive_gpus"] == [1]
    assert agent.proc.poll() is None  # never restarted: the same process all along
    fake_nvml.release_hang(1)
    kube_api.wait_for(lambda: kube_api.conditions("e2e-name")["GPUUnresponsive"]["status"] == "False",
                      what="GPUUnresponsive False once it answers")
    assert kube_api.conditions("e2e-name")["GPUUnresponsive"]["reason"] == "GpuRespondsAgain"

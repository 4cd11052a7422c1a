"""End to end: agents (`aios-agent run` over the fake NVML) -> the real aggregator (gRPC ingest,
NodeRegistry) -> the stability checker and its HTTP routes in the aggregator's app -> a webhook stand-in.

The aggregator runs in this process (aggregator.service.Aggregator on its own loop) so the test
reaches serve's own checker and webhook dispatcher (configured by env); agents are subprocesses.
"""

import pytest

from aggregator.governance.prechecks import Governance
from aggregator.policies import PolicyConfig
from aggregator.stability.checker import policy_opener
from aggregator.stability.http_routes import create_stability_router
from aggregator.web.app import create_app
from tests.fakenvml import FakeNvml
from tests.fakenvml.presets import a100_80gb, h100_sxm
from tests.support.policy_packages import write_directory
from tests.support.served_app import ServedApp
from tests.support.stability import WebhookStandIn
from tests.support.telemetry import TOKEN, AgentProcess, AggregatorThread
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CLUSTER = "e2e-cluster"


@pytest.fixture
def cluster(tmp_path, fake_nvml_lib):
    webhook = WebhookStandIn()
    # the checker and its webhook are serve's own (aggregator.service), configured by env
    server = AggregatorThread(tmp_path, cluster_id=CLUSTER, env={
        "CLUSTER_STABILITY_CHECK_INTERVAL": "3600", "AIOS_STABILITY_WEBHOOK_URL": webhook.url,
        "AIOS_POLICY_CACHE_DIR": str(tmp_path / "policy-cache"), "AIOS_POLICY_TIMEOUT_S": "10",
    })
    agg = server.aggregator
    config = PolicyConfig(cache_dir=tmp_path / "policy-cache", call_timeout_s=10)
    clusters = agg.cluster_store
    checker, dispatcher = agg.stability.checker, agg.stability.dispatcher
    app = create_app(governance=Governance(agg.db, lambda uri: policy_opener(config)(uri, None)),
                     cluster_store=clusters, tokens=[TOKEN], routers=[create_stability_router(checker)])
    http = ServedApp(app, read_token=TOKEN)  # the write token also reads
    nvml = {
        "node-a": FakeNvml(fake_nvml_lib, tmp_path / "nvml-a.conf").configure(gpus=[a100_80gb(0), a100_80gb(1)]),
        "node-b": FakeNvml(fake_nvml_lib, tmp_path / "nvml-b.conf").configure(gpus=[h100_sxm(0)]),
    }
    agents = {n: AgentProcess(tmp_path, n, server.address, interval_s=0.2, env=f.env) for n, f in nvml.items()}
    try:
        yield agg, checker, http, webhook, dispatcher, nvml, agents, clusters, tmp_path
    finally:
        for agent in agents.values():
            agent.stop()
        http.close()
        server.close()
        webhook.close()


def mgmt(http, action, data):
    return http.request("POST", "/mgmt", {"block_id": "", "service": "stability_checker",
                                          "mgmt_action": action, "mgmt_data": data}, token=TOKEN)


def reasons(body):
    return [(r["node_id"], r["gpu"], r["reason"], r.get("xid")) for r in body["stability_check_data"]["reasons"]]


def has_xid(agg, node_id, xid):
    state = agg.registry.get(node_id)
    return state is not None and any(e.kind == "xid" and e.xid == xid for e in state.health_events)


def test_agents_xid_recovery_parameters_staleness_operator_policy_and_errors(cluster):
    agg, checker, http, webhook, dispatcher, nvml, agents, clusters, tmp_path = cluster

    # a healthy cluster is stable, from measured data
    wait_for(lambda: sorted(s.node_id for s in agg.registry.snapshot() if s.latest and s.status == "healthy")
               == ["node-a", "node-b"], timeout_s=30)
    status, body = http.request("GET", "/check_stability")
    assert (status, body["is_stable"], body["stability_check_data"]["gpus_checked"]) == (200, True, 3)
    status, body = http.request("GET", "/healthy_nodes")
    assert body == {"success": True, "nodes": ["node-a", "node-b"]}
    status, body = http.request("GET", "/nodes_status")
    node_b = next(n for n in body["nodes_status"] if n["node_id"] == "node-b")
    assert [(g["id"], g["name"], g["memory"]["total"]) for g in node_b["gpus"]] == [(0, "NVIDIA H100 80GB HBM3", 81559)]

    # XID 79 on node-b's GPU 0: the health event alone triggers an unstable verdict
    nvml["node-b"].inject_xid(0, 79)
    verdict = wait_for(lambda: (v := checker.latest()) and v.outcome == "unstable" and v, timeout_s=15)
    assert verdict.trigger == "event"
    status, body = http.request("GET", "/check_stability")
    assert (status, body["is_stable"]) == (200, False)
    assert reasons(body) == [("node-b", 0, "xid", 79)]
    assert body["stability_check_data"]["reasons"][0]["gpu_uuid"] == node_b["gpus"][0]["uuid"]
    webhook.wait_for_calls(1)

    # recovery: the operator acknowledges the XID
    status, body = mgmt(http, "acknowledge", {"node_id": "node-b"})
    assert status == 200 and [a["xid"] for a in body["data"]["acknowledged"]] == [79]
    status, body = http.request("GET", "/check_stability")
    assert body["is_stable"] is True
    webhook.wait_for_calls(2)

    # /mgmt changes a parameter and the next verdict follows it
    nvml["node-a"].inject_xid(1, 13)
    wait_for(lambda: has_xid(agg, "node-a", 13))
    assert http.request("GET", "/check_stability")[1]["is_stable"] is True  # 13 is not fatal by default
    status, body = mgmt(http, "set_parameters", {"parameters": {"fatal_xids": [13, 79]}})
    assert status == 200 and body["data"]["parameters"]["fatal_xids"] == [13, 79]
    status, body = http.request("GET", "/check_stability")
    assert reasons(body) == [("node-a", 1, "xid", 13)]
    webhook.wait_for_calls(3)
    mgmt(http, "set_parameters", {"parameters": {"fatal_xids": [79]}})
    assert http.request("GET", "/check_stability")[1]["is_stable"] is True
    webhook.wait_for_calls(4)

    # a stopped agent: its node goes stale and the cluster is unstable
    agents["node-a"].stop()
    wait_for(lambda: (v := checker.latest()) and v.outcome == "unstable" and v, timeout_s=15)
    status, body = http.request("GET", "/check_stability")
    assert [(r["node_id"], r["reason"]) for r in body["stability_check_data"]["reasons"]] == [("node-a", "stale")]
    assert http.request("GET", "/healthy_nodes")[1]["nodes"] == []  # node-b: XID 79 still in the registry's window
    webhook.wait_for_calls(5)

    # an operator's own policy replaces the default; its answer comes back verbatim
    package = write_directory(tmp_path / "operator", (
        "class AIOSv1PolicyRule:\n"
        "    def __init__(self, rule_id, settings, parameters):\n        pass\n"
        "    def eval(self, parameters, input_data, context):\n"
        "        gpus = sum(len(n['gpus']) for n in input_data['nodes_data'] if not n['stale'])\n"
        "        return {'is_stable': gpus >= parameters['min_gpus'],\n"
        "                'stability_check_data': {'usable_gpus': gpus, 'asked': parameters['min_gpus'],\n"
        "                                         'cluster': input_data['cluster']['id']}}\n"))
    clusters.put(CLUSTER, {"id": CLUSTER, "config": {"stabilityChecker": {
        "policyRuleURI": str(package), "parameters": {"min_gpus": 1}}}})
    status, body = http.request("GET", "/check_stability")
    assert (status, body["is_stable"], body["policy_uri"]) == (200, True, str(package))
    assert body["stability_check_data"] == {"usable_gpus": 1, "asked": 1, "cluster": CLUSTER}
    webhook.wait_for_calls(6)

    # a policy error is reported as such, and is no transition
    clusters.put(CLUSTER, {"id": CLUSTER, "config": {"stabilityChecker": {
        "policyRuleURI": str(package), "parameters": {}}}})
    status, body = http.request("GET", "/check_stability")
    assert status == 500 and body["success"] is False and body["outcome"] == "error"
    assert "min_gpus" in body["message"]

    dispatcher.close()
    assert [c["body"]["is_stable"] for c in webhook.calls] == [False, True, False, True, False, True]

"""Agents authenticate as their node: ServiceAccount tokens checked by TokenReview (kmock as the API server).

The aggregator runs in this process (`Aggregator` with kmock's kubeconfig, so
`AIOS_AGENT_AUTH` defaults to kubernetes); agents are the real `TelemetryStream`
reading a projected-token file, and one `aios-agent run` process. kmock answers
TokenReviews as an API server does (`tests.kube_api.TokenIssuer`).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import math
import os
import threading
import time
from pathlib import Path

import grpc
import pytest
import yaml

from agent.stream.client import StreamConfig, TelemetryStream
from agent.stream.credentials import AgentCredentials
from proto.telemetry.v1 import convert
from proto.telemetry.v1 import telemetry_pb2 as pb
from proto.telemetry.v1 import telemetry_pb2_grpc as pb_grpc
from tests.support.kube_api import forbidden, kube_api  # noqa: F401 - fixture
from tests.support.telemetry import ROOT, TOKEN, AgentProcess, inventory, sample
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


class KubeAggregator:
    """`Aggregator` on its own loop in this process, with kmock as its Kubernetes API."""

    def __init__(self, tmp: Path, kubeconfig: Path, **config) -> None:
        from aggregator.service import Aggregator, ServeConfig

        self.loop = asyncio.new_event_loop()
        env = {"AIOS_NAMESPACE": "controllers", **config.pop("env", {})}
        self.aggregator = Aggregator(ServeConfig(
            db_path=tmp / "aggregator.sqlite", tokens=(TOKEN,), grpc_port=0, http_port=None, host="127.0.0.1",
            cluster_id="", status_every_s=0.1, commit_interval_s=0.05, kubeconfig=str(kubeconfig), env=env, **config))
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.run(self.aggregator.start())
        self.address = f"127.0.0.1:{self.aggregator.grpc.port}"

    def run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    @property
    def registry(self):
        return self.aggregator.registry

    def close(self) -> None:
        self.run(self.aggregator.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@pytest.fixture
def aggregator(tmp_path, kube_api):
    kube_api.put_node("gpu-a", labels={"nodeID": "node-a"})
    kube_api.put_node("gpu-b")  # no label: its id is its name
    agg = KubeAggregator(tmp_path, kube_api.kubeconfig)
    yield agg
    agg.close()


def token_file(tmp_path: Path, token: str, name: str = "token") -> Path:
    path = tmp_path / name
    path.write_text(token + "\n")
    return path


def stream_with(address: str, node_id: str, token_path: Path) -> TelemetryStream:
    config = StreamConfig(address=address, node_id=node_id, cluster_id="", agent_version="test",
                          credentials=AgentCredentials(sa_token_file=token_path),
                          backoff_initial_s=0.05, backoff_max_s=0.3, interval_s=0.2)
    stream = TelemetryStream(config, inventory(node_id))
    stream.start()
    return stream


def hello_status(address: str, node_id: str, token: str | None) -> tuple[grpc.StatusCode, str]:
    """One hand-made stream: the hello, then half-close; the status the aggregator ends it with."""
    hello = pb.AgentMessage(seq=0, hello=pb.Hello(node_id=node_id, agent_instance="probe", interval_s=10.0,
                                                  inventory=convert.inventory_to_pb(inventory(node_id))))
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    with grpc.insecure_channel(address) as channel:
        try:
            for _ in pb_grpc.TelemetryIngestStub(channel).Stream(iter([hello]), metadata=metadata, timeout=10):
                pass
        except grpc.RpcError as e:
            return e.code(), e.details()
    return grpc.StatusCode.OK, ""


def forged_token(node: str) -> str:
    """What an attacker can make: the claims of a real projected token, without the API server's signature."""
    def part(value: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    claims = {"aud": ["aios-aggregator"], "exp": int(time.time()) + 600,
              "sub": "system:serviceaccount:controllers:aios-agent", "kubernetes.io": {"node": {"name": node}}}
    return f"{part({'alg': 'RS256'})}.{part(claims)}.bm90LXNpZ25lZA"


def known(aggregator: KubeAggregator) -> set[str]:
    return {o.state.node_id for o in aggregator.registry.overview()}


def test_an_agent_with_its_nodes_token_streams_as_that_node(tmp_path, kube_api, aggregator):
    path = token_file(tmp_path, kube_api.agent_token("gpu-a"))
    stream = stream_with(aggregator.address, "node-a", path)
    try:
        seq = stream.send_sample(sample(1))
        assert stream.wait_acked(seq, 15), "the sample of node-a was not acknowledged"
        assert known(aggregator) == {"node-a"}
    finally:
        stream.stop()
    # a Node without a nodeID label: its id is its name
    assert hello_status(aggregator.address, "gpu-b", kube_api.agent_token("gpu-b"))[0] == grpc.StatusCode.OK


def test_the_same_token_claiming_another_node_is_refused_naming_both(kube_api, aggregator):
    token = kube_api.agent_token("gpu-a")
    code, details = hello_status(aggregator.address, "gpu-b", token)
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert "'gpu-a'" in details and "'node-a'" in details and "'gpu-b'" in details  # its node, its id, the claim
    # the Node's name is not its id when it carries a nodeID label
    assert hello_status(aggregator.address, "gpu-a", token)[0] == grpc.StatusCode.PERMISSION_DENIED
    assert known(aggregator) == set()  # nothing of the refused hellos was stored


def test_a_cluster_without_the_node_name_extra_binds_through_the_pod(kube_api, aggregator):
    token = kube_api.agent_token("gpu-a", node_extra=False)  # the pod's spec.nodeName is read instead
    assert hello_status(aggregator.address, "node-a", token)[0] == grpc.StatusCode.OK
    assert hello_status(aggregator.address, "gpu-b", token)[0] == grpc.StatusCode.PERMISSION_DENIED
    assert any(r.method.value == "GET" and "/pods/" in r.url.path for r in kube_api.requests())


@pytest.mark.parametrize(("kind", "expected"), [
    ("expired", "has expired"),
    ("wrong audience", "not for audience 'aios-aggregator'"),
    ("not a token", "not a ServiceAccount token"),
    ("the shared token", "not a ServiceAccount token"),  # the write token is no ServiceAccount token
    ("forged", "invalid bearer token"),  # shaped right, signed by no one: the review says no
    ("none", "no token"),
])
def test_a_bad_token_is_unauthenticated(kube_api, aggregator, kind, expected):
    token = {
        "expired": lambda: kube_api.agent_token("gpu-a", expires_in_s=-1),
        "wrong audience": lambda: kube_api.agent_token("gpu-a", audiences=("https://kubernetes.default.svc",)),
        "not a token": lambda: "abc.def.ghi",
        "the shared token": lambda: TOKEN,
        "forged": lambda: forged_token("gpu-a"),
        "none": lambda: None,
    }[kind]()
    reviews_before = len([r for r in kube_api.requests("POST") if "tokenreviews" in r.url.path])
    code, details = hello_status(aggregator.address, "node-a", token)
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert expected in details
    assert known(aggregator) == set()
    reviews = len([r for r in kube_api.requests("POST") if "tokenreviews" in r.url.path]) - reviews_before
    assert reviews == (1 if kind == "forged" else 0)  # only a plausible token costs the API server a review


def test_another_service_accounts_token_is_forbidden(kube_api, aggregator):
    code, details = hello_status(aggregator.address, "node-a", kube_api.agent_token("gpu-a", service_account="default"))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert "system:serviceaccount:controllers:default" in details and "aios-agent" in details


def test_a_rotated_token_file_is_read_at_the_next_connect(tmp_path, kube_api, aggregator):
    first = kube_api.agent_token("gpu-a", pod="agent-pod")
    path = token_file(tmp_path, first)
    stream = stream_with(aggregator.address, "node-a", path)
    try:
        assert stream.wait_acked(stream.send_sample(sample(1)), 15)
        # the kubelet writes the new token (atomically, as it swaps its ..data link), the old one stops working
        second = kube_api.agent_token("gpu-a", pod="agent-pod")
        staged = tmp_path / "token.new"
        staged.write_text(second + "\n")
        os.replace(staged, path)
        kube_api.emulator.token_issuer.tokens[first].revoked = True
        # a sample the aggregator refuses ends the stream: the agent drops it and reconnects
        stream.send_sample(dataclasses.replace(sample(2), host=dataclasses.replace(sample(2).host, cpu_percent=math.nan)))
        wait_for(lambda: stream.stats().connects >= 2 and stream.stats().connected, what="the reconnect")
        assert stream.wait_acked(stream.send_sample(sample(3)), 15), "the sample after the rotation was not acknowledged"
        reviewed = [r.data["spec"]["token"] for r in kube_api.requests("POST") if "tokenreviews" in r.url.path]
        assert reviewed[-1] == second
    finally:
        stream.stop()


def test_an_api_server_away_keeps_live_streams_and_new_ones_wait(tmp_path, kube_api, aggregator):
    stream = stream_with(aggregator.address, "node-a", token_file(tmp_path, kube_api.agent_token("gpu-a")))
    newcomer_token = kube_api.agent_token("gpu-b")
    try:
        assert stream.wait_acked(stream.send_sample(sample(1)), 15)
        kube_api.go_down()
        for n in range(2, 6):  # the live stream goes on storing what it sends
            assert stream.wait_acked(stream.send_sample(sample(n)), 15), f"sample {n} not acknowledged with the API away"
        assert stream.stats().connects == 1
        code, details = hello_status(aggregator.address, "gpu-b", newcomer_token)
        assert code == grpc.StatusCode.UNAVAILABLE
        assert "cannot verify the agent's token now" in details and "unreachable" in details
        kube_api.start()  # back on the same port: the newcomer gets in at its next try
        assert hello_status(aggregator.address, "gpu-b", newcomer_token)[0] == grpc.StatusCode.OK
    finally:
        stream.stop()


def test_a_review_is_cached_until_the_token_expires(kube_api, aggregator):
    token = kube_api.agent_token("gpu-a")
    for _ in range(3):
        assert hello_status(aggregator.address, "node-a", token)[0] == grpc.StatusCode.OK
    reviews = [r for r in kube_api.requests("POST") if "tokenreviews" in r.url.path]
    assert len(reviews) == 1


def test_missing_rbac_for_token_reviews_says_what_to_grant(kube_api, aggregator):
    kube_api.emulator.token_reviews_refused = forbidden("create", "tokenreviews")
    code, details = hello_status(aggregator.address, "node-a", kube_api.agent_token("gpu-a"))
    assert code == grpc.StatusCode.UNAVAILABLE
    assert "tokenreviews" in details and "docs/rbac.md" in details


def test_the_agent_process_streams_with_its_projected_token(tmp_path, kube_api, aggregator):
    path = token_file(tmp_path, kube_api.agent_token("gpu-a"), "projected-token")
    agent = AgentProcess(tmp_path, "node-a", aggregator.address,
                         env={"AIOS_NVML_LIBRARY": str(tmp_path / "none.so"), "AIOS_SA_TOKEN_FILE": str(path),
                              "AIOS_TOKEN": "", "KUBECONFIG": str(tmp_path / "no-kubeconfig")})
    try:
        wait_for(lambda: "node-a" in known(aggregator), what="node-a streaming", timeout_s=30)
    finally:
        agent.stop()
    assert "ServiceAccount token" in agent.log_path.read_text()


def test_the_aggregators_calls_are_what_its_rbac_grants(tmp_path, kube_api, aggregator):
    assert hello_status(aggregator.address, "node-a", kube_api.agent_token("gpu-a", node_extra=False))[0] == grpc.StatusCode.OK
    used = set()
    for request in kube_api.requests():
        parts = request.url.path.strip("/").split("/")
        if parts[0] == "apis":  # apis GROUP VERSION [namespaces NS] RESOURCE [NAME]
            parts = parts[2:]
        else:  # api v1 [namespaces NS] RESOURCE [NAME]
            parts = parts[1:]
        namespace = parts[2] if parts[1:2] == ["namespaces"] else None
        rest = parts[3:] if namespace else parts[1:]
        resource, named = rest[0], len(rest) > 1
        verb = {"POST": "create"}.get(request.method.value) or (
            "watch" if request.url.query.get("watch") else "get" if named else "list")
        used.add((verb, resource, namespace))
    assert {("create", "tokenreviews", None), ("get", "pods", "controllers"), ("get", "nodes", None)} <= used
    assert used <= granted_rbac()


def granted_rbac() -> set[tuple[str, str, str | None]]:
    docs = list(yaml.safe_load_all((ROOT / "deploy" / "aggregator" / "aggregator-rbac.yaml").read_text()))
    roles = {(d["kind"], d["metadata"]["name"]): d for d in docs if d["kind"] in ("Role", "ClusterRole")}
    granted = set()
    for binding in (d for d in docs if d["kind"] in ("RoleBinding", "ClusterRoleBinding")):
        role = roles[(binding["roleRef"]["kind"], binding["roleRef"]["name"])]
        namespace = binding["metadata"].get("namespace") if binding["kind"] == "RoleBinding" else None
        granted |= {(verb, res, namespace) for rule in role["rules"] for verb in rule["verbs"] for res in rule["resources"]}
    return granted

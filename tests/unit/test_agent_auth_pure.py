"""The pure parts of agent authentication: a TokenReview's answer, the token's expiry, a Node's id."""

from __future__ import annotations

import base64
import json

import pytest

from aggregator.rpc.agent_auth import (
    AgentForbidden,
    AgentUnauthenticated,
    ServiceAccountRef,
    identity_from_review,
    node_id_of,
    obviously_not_ours,
    token_expiry,
)

AGENT = ServiceAccountRef("controllers", "aios-agent")


def _jwt(claims) -> str:
    part = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"eyJhbGciOiJSUzI1NiJ9.{part}.signature"


def review(**status):
    return {"authenticated": True, "audiences": ["aios-aggregator"],
            "user": {"username": AGENT.username, "extra": {
                "authentication.kubernetes.io/pod-name": ["aios-agent-x1"],
                "authentication.kubernetes.io/pod-uid": ["uid-1"],
                "authentication.kubernetes.io/node-name": ["gpu-7"]}}, **status}


def test_a_good_review_names_the_pod_and_the_node():
    identity = identity_from_review(review(), audience="aios-aggregator", expected=AGENT)
    assert (identity.pod_name, identity.pod_uid, identity.node_name) == ("aios-agent-x1", "uid-1", "gpu-7")


@pytest.mark.parametrize(("status", "error", "message"), [
    ({"authenticated": False, "error": "token has expired"}, AgentUnauthenticated, "token has expired"),
    ({"audiences": ["https://kubernetes.default.svc"]}, AgentUnauthenticated, "not for audience 'aios-aggregator'"),
    ({"audiences": []}, AgentUnauthenticated, "not for audience"),  # an API server that ignored spec.audiences
    ({"user": {"username": "system:serviceaccount:controllers:default"}}, AgentForbidden, "not the agent's"),
    ({"user": {"username": "alice"}}, AgentForbidden, "alice"),
])
def test_refusals_say_why(status, error, message):
    with pytest.raises(error, match=message):
        identity_from_review(review(**status), audience="aios-aggregator", expected=AGENT)


def test_a_review_without_the_node_extra_leaves_the_node_to_the_pod():
    status = review()
    del status["user"]["extra"]["authentication.kubernetes.io/node-name"]
    assert identity_from_review(status, audience="aios-aggregator", expected=AGENT).node_name is None


def test_token_expiry_reads_the_exp_claim_only_from_a_jwt():
    assert token_expiry(_jwt({"exp": 1_900_000_000})) == 1_900_000_000.0
    assert token_expiry(_jwt({"exp": "soon"})) is None
    assert token_expiry(_jwt({"exp": True})) is None
    assert token_expiry("not-a-jwt") is None
    assert token_expiry("a.%%%.c") is None


def test_a_nodes_id_is_its_label_else_its_name():
    assert node_id_of({"metadata": {"name": "gpu-7", "labels": {"nodeID": "n-7"}}}) == "n-7"
    assert node_id_of({"metadata": {"name": "gpu-7", "labels": {"nodeID": " "}}}) == "gpu-7"
    assert node_id_of({"metadata": {"name": "gpu-7"}}) == "gpu-7"


def test_the_service_account_setting():
    assert ServiceAccountRef.parse("aios-agent", default_namespace="ns") == ServiceAccountRef("ns", "aios-agent")
    assert ServiceAccountRef.parse("other:agent", default_namespace="ns") == ServiceAccountRef("other", "agent")
    with pytest.raises(ValueError, match="AIOS_AGENT_SERVICE_ACCOUNT"):
        ServiceAccountRef.parse("ns:", default_namespace="ns")


def test_tokens_that_cannot_pass_cost_no_review():
    now = 1_800_000_000
    ours = {"aud": ["aios-aggregator"], "exp": now + 60}
    assert obviously_not_ours(_jwt(ours), audience="aios-aggregator", now=now) is None
    assert obviously_not_ours(_jwt({**ours, "aud": "aios-aggregator"}), audience="aios-aggregator", now=now) is None
    assert "expired" in obviously_not_ours(_jwt({**ours, "exp": now - 1}), audience="aios-aggregator", now=now)
    assert "audience" in obviously_not_ours(_jwt({**ours, "aud": ["api"]}), audience="aios-aggregator", now=now)
    assert "not a JWT" in obviously_not_ours("0123456789abcdef", audience="aios-aggregator", now=now)

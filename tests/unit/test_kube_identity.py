"""Node identity and API error sentences (pure parts of agent.kube.client)."""

import json

import pytest
from kubernetes.client.exceptions import ApiException

from agent.kube.client import (
    KubeConfigError,
    describe_api_error,
    load_api_client,
    node_id_from,
)


@pytest.mark.parametrize(
    "labels, env, expected",
    [
        ({"nodeID": "nid-42"}, {"NODE_ID": "env-id"}, ("nid-42", "label")),
        ({"other": "x"}, {"NODE_ID": "env-id"}, ("env-id", "env")),
        (None, {}, ("gpu-7", "name")),
        ({"nodeID": ""}, {}, ("gpu-7", "name")),
    ],
)
def test_node_id_label_then_env_then_name(labels, env, expected):
    identity = node_id_from(labels, "gpu-7", env)
    assert (identity.node_id, identity.id_source) == expected
    assert identity.node_name == "gpu-7"


def _api_exception(status, reason, message):
    exc = ApiException(status=status, reason=reason)
    exc.body = json.dumps({"kind": "Status", "code": status, "message": message})
    return exc


def test_forbidden_names_verb_resource_and_the_fix():
    exc = _api_exception(403, "Forbidden", 'nodes "n1" is forbidden: User "u" cannot patch resource "nodes"')
    text = describe_api_error(exc, verb="patch", node_name="n1")
    assert "forbidden (403)" in text
    assert "cannot patch resource nodes" in text
    assert "verbs [patch]" in text and "docs/rbac.md" in text
    assert 'User "u" cannot patch' in text  # the server's own words are kept


@pytest.mark.parametrize(
    "status, words",
    [(401, "unauthorized"), (404, "does not exist"), (409, "conflict"), (422, "invalid"), (503, "API server error")],
)
def test_other_statuses_are_named(status, words):
    text = describe_api_error(_api_exception(status, "X", "m"), verb="get", node_name="n1")
    assert words in text and "get node 'n1'" in text and "server says: m" in text


def test_missing_kubeconfig_is_a_clear_config_error(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(KubeConfigError, match="nope.yaml"):
        load_api_client(str(missing), env={})


def test_broken_kubeconfig_is_a_clear_config_error(tmp_path):
    path = tmp_path / "kubeconfig"
    path.write_text("apiVersion: v1\nkind: Config\ncurrent-context: nowhere\ncontexts: []\n")
    with pytest.raises(KubeConfigError, match="cannot load Kubernetes configuration"):
        load_api_client(str(path), env={})


def test_kubeconfig_from_env(tmp_path):
    path = tmp_path / "kc"
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": {"server": "http://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
    }))
    client = load_api_client(env={"KUBECONFIG": str(path)})
    assert client.configuration.host == "http://127.0.0.1:1"
    assert client.configuration.retries == 0

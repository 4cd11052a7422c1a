"""`aios-agent run` as the DaemonSet runs it: annotator, stream, /metrics, /healthz, XIDs pushed at once.

Real processes: the agent over the fake NVML, `aios-aggregator serve`, kmock's
Kubernetes API on loopback (the agent reaches it through a kubeconfig).
"""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request

import pytest

from agent.kube.annotation import ANNOTATION_KEY
from tests.fakenvml.presets import a100_80gb
from tests.metrics_fixtures.exposition import parse_exposition, value
from tests.support.hostfs import Counters, write_host_tree
from tests.support.kube_api import kube_api  # noqa: F401 - fixture
from tests.support.net import free_port
from tests.support.readonly_guard import MARK as READONLY_VIOLATION
from tests.support.telemetry import ROOT, TOKEN, AgentProcess, AggregatorProcess, AggregatorThread, get_node
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

GUARDED = ("-m", "tests.support.readonly_guard")  # the agent, reporting writes outside /tmp


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _healthz(port: int) -> tuple[int, dict]:
    status, body = _get(port, "/healthz")
    return status, json.loads(body)


def _xids(address: str, node_id: str) -> list:
    detail = get_node(address, node_id, max_events=100)
    return [] if detail is None else [e for e in detail.health_events if e.kind == "xid"]


def _sample_ts(address: str, node_id: str) -> float:
    detail = get_node(address, node_id)
    return detail.latest_sample.timestamp if detail is not None and detail.HasField("latest_sample") else 0.0


@pytest.fixture
def aggregator(tmp_path):
    agg = AggregatorProcess(tmp_path).start()
    try:
        yield agg
    finally:
        agg.stop()


def _stopped_cleanly(agent: AgentProcess, metrics_port: int) -> str:
    """SIGTERM: exit 0 (within AgentProcess.stop's bound), nothing left listening."""
    agent.stop()
    assert agent.proc.returncode == 0, agent.log_path.read_text()[-3000:]
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", metrics_port), timeout=2).close()
    log = agent.log_path.read_text()
    assert "Traceback" not in log, log[-3000:]
    return log


def test_run_annotates_streams_under_the_label_and_serves_metrics_and_healthz(
    tmp_path, kube_api, fake_nvml, aggregator
):
    fake_nvml.configure(gpus=[a100_80gb(0), a100_80gb(1)])
    kube_api.put_node("env-id-name", labels={"nodeID": "label-id", "team": "ml"}, annotations={"keep": "me"})
    port = free_port()
    agent = AgentProcess(
        tmp_path, "env-id", aggregator.address, interval_s=0.2, launcher=GUARDED,
        env={**fake_nvml.env, "KUBECONFIG": str(kube_api.kubeconfig), "AIOS_METRICS_PORT": str(port),
             "PYTHONDONTWRITEBYTECODE": "1"},
    )
    try:
        # the Node gets its annotation and labels; nobody else's keys are touched
        kube_api.wait_for(lambda: ANNOTATION_KEY in kube_api.annotations("env-id-name"), what="annotation")
        assert len(json.loads(kube_api.annotations("env-id-name")[ANNOTATION_KEY])) == 2
        assert kube_api.annotations("env-id-name")["keep"] == "me"
        labels = kube_api.labels("env-id-name")
        assert labels["gpu.aios/count"] == "2" and labels["team"] == "ml"

        # the aggregator knows the node by its nodeID label, not by NODE_ID
        wait_for(lambda: _sample_ts(aggregator.address, "label-id"), what="samples under the nodeID label")
        assert get_node(aggregator.address, "env-id") is None

        status, health = wait_for(
            lambda: (lambda r: r if r[1].get("annotator", {}).get("state") == "in sync" else None)(_healthz(port)),
            what="/healthz with the annotator in sync",
        )
        assert status == 200 and health["status"] == "ok" and health["node_id"] == "label-id"
        assert health["stream"]["connected"] is True
        status, text = _get(port, "/metrics")
        assert status == 200
        assert value(parse_exposition(text), "aios_node_gpus", node="label-id") == 2

        # an XID, with samples going on: exactly once in the registry and in the counter
        fake_nvml.inject_xid(1, 79)
        first = wait_for(lambda: _xids(aggregator.address, "label-id"), what="the XID at the aggregator")[0]
        wait_for(lambda: _sample_ts(aggregator.address, "label-id") > first.timestamp + 1.0,
                 what="samples taken after the XID")
        xids = _xids(aggregator.address, "label-id")
        assert [(e.gpu_index, e.xid) for e in xids] == [(1, 79)]
        gpu1 = {"node": "label-id", "gpu": "1", "uuid": a100_80gb(1).uuid, "model": a100_80gb(1).name}
        assert value(parse_exposition(_get(port, "/metrics")[1]), "aios_gpu_xid_errors_total", **gpu1, xid="79") == 1
    finally:
        log = _stopped_cleanly(agent, port)
    assert READONLY_VIOLATION not in log, [line for line in log.splitlines() if READONLY_VIOLATION in line]
    assert json.loads(agent.stats_file.read_text())["pushed_health_events"] == 1


def test_run_without_an_api_server_keeps_sampling_and_is_live(tmp_path, kube_api, aggregator):
    kube_api.go_down()  # the kubeconfig names a server that refuses connections
    port = free_port()
    agent = AgentProcess(
        tmp_path, "lonely", aggregator.address, interval_s=0.2,
        env={"AIOS_NVML_LIBRARY": str(tmp_path / "no-libnvidia-ml.so.1"), "KUBECONFIG": str(kube_api.kubeconfig),
             "AIOS_METRICS_PORT": str(port)},
    )
    try:
        # without the Node's label the id is NODE_ID
        first = wait_for(lambda: _sample_ts(aggregator.address, "lonely"), what="samples at the aggregator")
        wait_for(lambda: _sample_ts(aggregator.address, "lonely") > first, what="a later sample")
        status, health = wait_for(
            lambda: (lambda r: r if r[1]["annotator"]["state"] == "retrying" else None)(_healthz(port)),
            what="/healthz reporting the annotator retrying",
        )
        assert status == 200 and health["status"] == "ok"
        assert "unreachable" in health["annotator"]["last_error"]
    finally:
        _stopped_cleanly(agent, port)


def test_xid_reaches_the_registry_before_the_next_sample(tmp_path, fake_nvml, aggregator):
    fake_nvml.configure(gpus=[a100_80gb(0), a100_80gb(1)])
    port = free_port()
    agent = AgentProcess(
        tmp_path, "slow-sampler", aggregator.address, interval_s=30.0,
        env={**fake_nvml.env, "KUBECONFIG": str(tmp_path / "no-kubeconfig"), "AIOS_METRICS_PORT": str(port)},
    )
    try:
        first = wait_for(lambda: _sample_ts(aggregator.address, "slow-sampler"), what="the first sample")
        fake_nvml.inject_xid(0, 48)
        # bounded well below the 30 s interval
        xids = wait_for(lambda: _xids(aggregator.address, "slow-sampler"), timeout_s=15, what="the XID")
        assert _sample_ts(aggregator.address, "slow-sampler") == first  # no second sample carried it
        assert [(e.gpu_index, e.xid) for e in xids] == [(0, 48)]
        gpu0 = {"node": "slow-sampler", "gpu": "0", "uuid": a100_80gb(0).uuid, "model": a100_80gb(0).name}
        assert value(parse_exposition(_get(port, "/metrics")[1]), "aios_gpu_xid_errors_total", **gpu0, xid="48") == 1
        status, health = _healthz(port)
        assert status == 200 and health["annotator"] == {"state": "off"}
    finally:
        _stopped_cleanly(agent, port)


def _daemonset_env_names() -> set[str]:
    """Every variable the manifests give the agent's container (ConfigMaps and env)."""
    import yaml

    deploy = ROOT / "deploy"
    names = set(yaml.safe_load((deploy / "daemonset/agent-config.yaml").read_text())["data"])
    kustomization = yaml.safe_load((deploy / "kustomization.yaml").read_text())
    for generator in kustomization["configMapGenerator"]:
        names |= {literal.split("=", 1)[0] for literal in generator.get("literals", [])}
    daemonset = yaml.safe_load((deploy / "daemonset/agent-daemonset.yaml").read_text())
    (container,) = daemonset["spec"]["template"]["spec"]["containers"]
    return names | {item["name"] for item in container["env"]}


def test_run_takes_every_setting_from_the_environment_the_daemonset_gives(tmp_path):
    host_root = write_host_tree(tmp_path / "host", Counters())
    # the projected ServiceAccount token's file (this aggregator has no Kubernetes API, so it takes the
    # shared token: the file holds that; tests/integration/test_agent_identity.py checks real reviews)
    token_file = tmp_path / "identity" / "token"
    token_file.parent.mkdir()
    token_file.write_text(TOKEN + "\n")
    port = free_port()
    aggregator = AggregatorThread(tmp_path)
    env = {
        "NODE_NAME": "node-a", "AIOS_CLUSTER_ID": "cluster-42", "AIOS_AGGREGATOR_ADDR": aggregator.address,
        "AIOS_INTERVAL_S": "0.2", "AIOS_METRICS_PORT": str(port), "AIOS_HOST_ROOT": str(host_root),
        "AIOS_SA_TOKEN_FILE": str(token_file), "NVIDIA_VISIBLE_DEVICES": "all", "NVIDIA_DRIVER_CAPABILITIES": "utility",
        "AIOS_POD_RESOURCES_SOCKET": str(tmp_path / "kubelet.sock"),  # no GPU here: never read
    }
    assert set(env) == _daemonset_env_names()  # a new variable in the manifests needs a line here
    env.update({"NODE_ID": "", "AIOS_NVML_LIBRARY": str(tmp_path / "no-libnvidia-ml.so.1"),
                "KUBECONFIG": str(tmp_path / "no-kubeconfig")})
    agent = AgentProcess(tmp_path, "node-a", None, interval_s=None, token="", env=env)  # no flags at all
    try:
        state = wait_for(lambda: (lambda s: s if s is not None and s.samples_received >= 2 else None)(
            aggregator.aggregator.registry.get("node-a")), what="samples from the env-configured agent")
        assert state.cluster_id == "cluster-42"
        assert state.inventory.node_name == "node-a"  # NODE_NAME; no NODE_ID, no cluster: the id is the name
        assert state.inventory.host.hostname == "gpu-node-7"  # read under AIOS_HOST_ROOT
        assert state.inventory.host.memory_total_mb == 262_144
        status, health = _healthz(port)
        assert status == 200 and health["interval_s"] == 0.2
    finally:
        _stopped_cleanly(agent, port)
        aggregator.close()

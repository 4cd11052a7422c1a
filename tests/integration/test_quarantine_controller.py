"""The quarantine controller on real parts: the registry, SQLite, the pre-check with a real policy
package in its worker, and kmock as the Kubernetes API (Node watch, patches, Events), one
evaluation at a time with an injected clock."""

from __future__ import annotations

from dataclasses import replace

import pytest
from kubernetes.client import CoreV1Api

from aggregator.db import Database
from aggregator.governance.prechecks import Governance
from aggregator.kube_client import load_kube_client
from aggregator.policies import PolicyConfig, open_policy
from aggregator.quarantine.wiring import build_quarantine
from aggregator.service import decode_sample
from aggregator.stability.acknowledgements import AcknowledgementBook, acknowledgements_from
from aggregator.telemetry import wire_checks
from aggregator.telemetry.node_watch import NodeWatcher
from aggregator.telemetry.registry import NodeRegistry
from proto.telemetry.v1 import convert
from proto.telemetry.v1.readings import GpuSample, HealthEvent, NodeSample
from tests.support.kube_api import kube_api  # noqa: F401 - fixture
from tests.support.policy_packages import policy_source, write_directory
from tests.support.telemetry import inventory
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

NOW = 1_764_400_000.0
TAINT = "gpu.aios/unhealthy"


class Clock:
    def __init__(self):
        self.t = NOW

    def __call__(self):
        return self.t


class World:
    """A registry of `n` nodes with 2 GPUs each, their Nodes in kmock, and the quarantine over them."""

    def __init__(self, tmp_path, kube_api, n: int, env: dict, *, precheck_policy: str | None = None,
                 specs: dict[int, dict] | None = None):
        self.clock = Clock()
        self.kube_api = kube_api
        self.db = Database(tmp_path / "aggregator.db")
        self.registry = NodeRegistry(clock=self.clock, decode_sample=decode_sample)
        self.seq: dict[str, int] = {}
        for i in range(n):
            node_id = f"node-{i}"
            spec = (specs or {}).get(i, {"taints": [{"key": "team/dedicated", "value": "ml", "effect": "NoSchedule"}]})
            kube_api.put_node(f"{node_id}-name", labels={"nodeID": node_id}, spec=spec)
            self.registry.hello(node_id, cluster_id="c1", agent_version="t", agent_instance="i1",
                                inventory=inventory(node_id), interval_s=10.0)
            self.sample(node_id)
        self.core_v1 = CoreV1Api(load_kube_client(str(kube_api.kubeconfig), env={}))
        self.watcher = NodeWatcher(self.core_v1, on_deleted=lambda node: None).start()
        wait_for(lambda: len(self.watcher.known()) == n, what="the Node watch listing every Node")
        self.governance = Governance(self.db, lambda uri: open_policy(uri, config=PolicyConfig.from_env({})),
                                     clock=self.clock)
        if precheck_policy is not None:
            package = write_directory(tmp_path / "cluster-mgmt-gate", policy_source(precheck_policy))
            self.governance.update({"cluster_mgmt": str(package)})
        self.acks = AcknowledgementBook(self.db, clock=self.clock)
        self.verdict = None  # the latest stability verdict the controller reads (it may name nodes)
        self.quarantine = build_quarantine(
            env=env, db=self.db, registry=self.registry, precheck=self.governance.precheck,
            cluster_data=lambda: {"id": "c1", "nodes": {"count": n}}, kube_nodes=self.watcher.known,
            note_written=self.watcher.note_written, core_v1=self.core_v1, namespace="controllers",
            acknowledgements=self.acks.by_node, latest_verdict=lambda: self.verdict, clock=self.clock,
        )
        self.controller = self.quarantine.controller

    def sample(self, node_id: str, **gpu1) -> None:
        self.seq[node_id] = self.seq.get(node_id, 0) + 1
        sample = NodeSample(timestamp=self.clock.t, host=None,
                            gpus=(GpuSample(0, f"GPU-{node_id}-0"), replace(GpuSample(1, f"GPU-{node_id}-1"), **gpu1)))
        wire = convert.sample_to_pb(sample)
        self.registry.record_sample(node_id, self.seq[node_id], wire_checks.sample_figures(wire, frozenset({0, 1})),
                                    wire.SerializeToString())

    def xid(self, node_id: str, code: int = 79, gpu: int = 1) -> None:
        self.seq[node_id] = self.seq.get(node_id, 0) + 1
        self.registry.record_health(node_id, self.seq[node_id], HealthEvent(
            "xid", self.clock.t, gpu_index=gpu, gpu_uuid=f"GPU-{node_id}-{gpu}", xid=code))

    def acknowledge(self, node_id: str) -> None:
        self.acks.record(acknowledgements_from({}, {"node_id": node_id}, self.registry_ids(), self.clock.t))

    def registry_ids(self):
        return [s.node_id for s in self.registry.snapshot()]

    def evaluate(self):
        decisions = self.controller.evaluate()
        # the watch shows what was written before the next round reads it
        wait_for(lambda: all(self._watched(k) for k in self.watcher.known()), what="the watch catching up")
        return decisions

    def _watched(self, kube) -> bool:
        return [t.to_json()["key"] for t in kube.taints] == [t["key"] for t in self.kube_api.taints(kube.name)]

    def tainted(self) -> dict[str, str]:
        found = {}
        for i in range(len(self.seq)):
            for taint in self.kube_api.taints(f"node-{i}-name"):
                if taint["key"] == TAINT:
                    found[f"node-{i}"] = f"{taint['value']}:{taint['effect']}"
        return found

    def states(self) -> dict[str, str]:
        return {n: r.state for n, r in self.controller.view().items()}

    def events(self) -> list[dict]:
        return [r.data for r in self.kube_api.requests("POST") if r.url.path.endswith("/events")]

    def close(self):
        self.watcher.close()
        self.governance.close()
        self.db.close()


@pytest.fixture
def world(tmp_path, kube_api):
    made = []

    def make(n, env, **kw):
        made.append(World(tmp_path, kube_api, n, env, **kw))
        return made[-1]

    yield make
    for w in made:
        w.close()


TAINT_ENV = {"AIOS_QUARANTINE": "taint", "AIOS_QUARANTINE_MAX_NODES": "3", "AIOS_QUARANTINE_MAX_PERCENT": "100"}


def test_ten_nodes_failing_with_a_budget_of_three(world):
    w = world(10, TAINT_ENV)
    for i in range(10):
        w.clock.t += 1
        w.xid(f"node-{i}")
    w.evaluate()
    assert w.tainted() == {f"node-{i}": "XidNeedsNodeReboot:NoSchedule" for i in range(3)}  # the earliest first
    # nobody else's taint is touched
    assert all({"key": "team/dedicated", "value": "ml", "effect": "NoSchedule"} in w.kube_api.taints(f"node-{i}-name")
               for i in range(10))
    states = w.states()
    assert sorted(n for n, s in states.items() if s == "quarantined") == ["node-0", "node-1", "node-2"]
    assert sorted(n for n, s in states.items() if s == "over_budget") == [f"node-{i}" for i in range(3, 10)]
    record = w.controller.view()["node-0"]
    assert record.reason == "XidNeedsNodeReboot" and record.gpus == (1,) and record.tainted
    assert "GPU 1 (GPU-node-0-1): XID 79" in record.detail and "reboot the node" in record.detail
    # an Event on each Node: 3 quarantined, 7 over budget
    events = w.events()
    assert sorted((e["involvedObject"]["kind"], e["involvedObject"]["name"], e["reason"]) for e in events) == sorted(
        [("Node", f"node-{i}-name", "GpuQuarantined") for i in range(3)]
        + [("Node", f"node-{i}-name", "GpuQuarantineOverBudget") for i in range(3, 10)])
    # a second round changes nothing and writes nothing
    before = len(w.kube_api.requests("PATCH")) + len(w.kube_api.requests("POST"))
    w.evaluate()
    assert len(w.kube_api.requests("PATCH")) + len(w.kube_api.requests("POST")) == before
    history = w.quarantine.store.history(limit=100)
    assert sorted((a.node_id, a.action, a.outcome) for a in history) == sorted(
        [(f"node-{i}", "quarantine", "applied") for i in range(3)]
        + [(f"node-{i}", "over_budget", "reported") for i in range(3, 10)])

    # the operator acknowledges node-0: released, and its slot goes to the next node in the round after
    w.clock.t += 5
    w.acknowledge("node-0")
    w.evaluate()
    assert "node-0" not in w.tainted() and "node-0" not in w.states()
    assert {"key": "team/dedicated", "value": "ml", "effect": "NoSchedule"} in w.kube_api.taints("node-0-name")
    w.evaluate()
    assert set(w.tainted()) == {"node-1", "node-2", "node-3"}
    assert w.events()[-2]["reason"] == "GpuQuarantineReleased"


def test_a_lost_gpu_quarantines_with_cordon_and_the_gpu_back_releases(world):
    w = world(2, {**TAINT_ENV, "AIOS_QUARANTINE": "cordon"}, specs={1: {"unschedulable": True}})  # an operator's cordon
    w.evaluate()
    w.sample("node-0", lost=True, error="NVML_ERROR_GPU_IS_LOST")
    w.sample("node-1", lost=True, error="NVML_ERROR_GPU_IS_LOST")
    w.evaluate()
    assert w.tainted() == {"node-0": "GpuLost:NoSchedule", "node-1": "GpuLost:NoSchedule"}
    assert w.kube_api.node("node-0-name")["spec"]["unschedulable"] is True
    view = w.controller.view()
    assert view["node-0"].cordoned and not view["node-1"].cordoned  # node-1 was cordoned before us
    w.clock.t += 10
    w.sample("node-0")
    w.sample("node-1")
    w.evaluate()
    assert w.tainted() == {}
    assert w.kube_api.node("node-0-name")["spec"]["unschedulable"] is False
    assert w.kube_api.node("node-1-name")["spec"]["unschedulable"] is True  # not ours to lift


REFUSE_QUARANTINE = '''
def __init__(self, rule_id, settings, parameters):
    pass

def eval(self, parameters, input_data, context):
    request = input_data["input"]
    if request["action"] == "quarantine_node" and request["payload"]["node_id"] == "node-0":
        return {"allowed": False, "input_data": "node-0 runs the training job of the quarter: not now"}
    return {"allowed": True, "input_data": input_data}
'''


def test_cluster_mgmt_refusing_leaves_the_node_untouched_and_records_why(world):
    w = world(2, TAINT_ENV, precheck_policy=REFUSE_QUARANTINE)
    w.xid("node-0")
    w.xid("node-1", code=48)
    w.evaluate()
    assert w.tainted() == {"node-1": "XidNeedsGpuReset:NoSchedule"}
    record = w.controller.view()["node-0"]
    assert record.state == "refused" and not record.tainted
    assert record.detail == ("refused by the cluster_mgmt pre-check: "
                             "node-0 runs the training job of the quarter: not now")
    refusal = [a for a in w.quarantine.store.history() if a.node_id == "node-0"]
    assert [(a.action, a.outcome, a.detail) for a in refusal] == [
        ("quarantine", "refused", "node-0 runs the training job of the quarter: not now")]
    # it stands: the next round does not ask again
    w.clock.t += 60
    w.evaluate()
    assert len([a for a in w.quarantine.store.history() if a.node_id == "node-0"]) == 1
    assert w.tainted() == {"node-1": "XidNeedsGpuReset:NoSchedule"}


def test_dry_run_writes_nothing_at_all(world):
    w = world(3, {**TAINT_ENV, "AIOS_QUARANTINE": "dry-run"})
    requests_before = len(w.kube_api.requests())
    w.xid("node-0")
    w.xid("node-1")
    w.evaluate()
    w.evaluate()
    writes = [r for r in w.kube_api.requests()[requests_before:] if r.method.value not in ("GET",)]
    assert writes == []
    assert w.states() == {"node-0": "would_quarantine", "node-1": "would_quarantine"}
    assert [(a.node_id, a.action, a.outcome) for a in reversed(w.quarantine.store.history())] == [
        ("node-0", "quarantine", "dry_run"), ("node-1", "quarantine", "dry_run")]


def test_a_flapping_node_stays_quarantined_and_is_reported(world):
    w = world(1, {**TAINT_ENV, "AIOS_QUARANTINE_MAX_CYCLES_PER_DAY": "2"})
    for cycle in range(2):
        w.clock.t += 100
        w.xid("node-0")
        w.evaluate()
        assert w.tainted() == {"node-0": "XidNeedsNodeReboot:NoSchedule"}
        w.clock.t += 100
        w.acknowledge("node-0")
        w.evaluate()
        expected = "held" if cycle == 1 else None
        assert w.states().get("node-0") == expected
    # quarantined twice within a day: kept quarantined, reported, not toggled
    assert w.tainted() == {"node-0": "XidNeedsNodeReboot:NoSchedule"}
    assert w.events()[-1]["reason"] == "GpuQuarantineHeld"
    # a day later the cycles have aged out: released
    w.clock.t += 86400
    w.evaluate()
    assert w.tainted() == {} and w.states() == {}


def test_the_kubernetes_api_failing_is_recorded_and_retried(world):
    from kmock import KubernetesError

    w = world(1, TAINT_ENV)
    w.kube_api.emulator.refusals["PATCH"] = KubernetesError(status=500, reason="InternalError", message="etcd down")
    w.xid("node-0")
    w.evaluate()
    assert w.states() == {"node-0": "failed"} and w.tainted() == {}
    assert "HTTP 500" in w.controller.view()["node-0"].detail
    del w.kube_api.emulator.refusals["PATCH"]
    w.evaluate()  # the retry waits for its backoff
    assert w.tainted() == {}
    w.clock.t += 10
    w.evaluate()
    assert w.tainted() == {"node-0": "XidNeedsNodeReboot:NoSchedule"}
    assert w.states() == {"node-0": "quarantined"}


def test_the_stability_policy_may_name_nodes_to_quarantine(world):
    from aggregator.stability.verdicts import Verdict

    w = world(3, TAINT_ENV)
    w.verdict = Verdict("c1", NOW, 0.01, "fabric-check:1.0-stable", "unstable", id=7, stability_check_data={
        "quarantine_nodes": ["node-0", {"node_id": "node-1", "reason": "FabricDown"}, {"node_id": "elsewhere"}]})
    w.evaluate()
    assert w.tainted() == {"node-0": "PolicyNamed:NoSchedule", "node-1": "FabricDown:NoSchedule"}
    assert w.controller.view()["node-1"].detail == "named by the stability policy fabric-check:1.0-stable: FabricDown"
    assert {a.verdict_id for a in w.quarantine.store.history()} == {None}  # no verdict arrived through on_verdict
    w.controller.on_verdict(w.verdict)
    w.verdict = replace(w.verdict, stability_check_data={"quarantine_nodes": ["node-0"]})
    w.evaluate()
    assert w.tainted() == {"node-0": "PolicyNamed:NoSchedule"}  # no longer named: released
    assert w.quarantine.store.history()[0].verdict_id == 7

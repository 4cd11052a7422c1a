"""NodeConditionWriter against a Kubernetes API server on loopback (kmock), through the
agent's NodeApi on the official ApiClient: what lands on the Node, and how many PATCHes."""

import pytest
from kmock import KubernetesError

from agent.kube.annotator import Backoff
from agent.kube.client import NodeApi, load_api_client
from agent.kube.condition_writer import NodeConditionWriter
from agent.kube.conditions import ConditionState
from tests.support.kube_api import forbidden, kube_api  # noqa: F401 - fixture

pytestmark = pytest.mark.integration

NODE = "gpu-node-1"
TYPES = ("GPULost", "GPUXidCritical")
KUBELET_READY = {
    "type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status",
    "lastHeartbeatTime": "2024-01-01T00:00:00Z", "lastTransitionTime": "2024-01-01T00:00:00Z",
}
T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z


class FakeClock:
    def __init__(self, t: float = T0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def healthy(t: float = T0) -> list[ConditionState]:
    return [
        ConditionState("GPULost", False, "AllGpusAnswer", "every GPU answers NVML", t),
        ConditionState("GPUXidCritical", False, "NoCriticalXid", "no critical XID seen", t),
    ]


def xid79(t: float, gpus: str = "GPU 1 (GPU-b)") -> list[ConditionState]:
    return [
        ConditionState("GPULost", False, "AllGpusAnswer", "every GPU answers NVML", T0),
        ConditionState("GPUXidCritical", True, "XidNeedsNodeReboot", f"{gpus}: XID 79; reboot the node", t),
    ]


@pytest.fixture
def node_api(kube_api):
    kube_api.put_node(NODE, labels={"nodeID": "nid-1"}, conditions=[KUBELET_READY])
    return NodeApi(load_api_client(str(kube_api.kubeconfig), env={}))


def writer_for(node_api, clock, **kw):
    return NodeConditionWriter(node_api, NODE, TYPES, clock=clock, request_timeout_s=2.0,
                               backoff=Backoff(initial_s=0.05, cap_s=0.2), **kw)


def status_patches(kube_api):
    return [r for r in kube_api.requests("PATCH") if str(r.url.path).endswith(f"/nodes/{NODE}/status")]


def test_start_writes_every_type_false_and_keeps_the_kubelets_conditions(kube_api, node_api):
    clock = FakeClock()
    writer = writer_for(node_api, clock)
    writer.observe(healthy())
    writer.step()
    conditions = kube_api.conditions(NODE)
    assert set(conditions) == {"Ready", "GPULost", "GPUXidCritical"}
    assert conditions["Ready"] == KUBELET_READY
    assert conditions["GPULost"]["status"] == "False"
    assert conditions["GPULost"]["reason"] == "AllGpusAnswer"
    assert conditions["GPUXidCritical"]["lastHeartbeatTime"] == "2023-11-14T22:13:20Z"
    assert conditions["GPUXidCritical"]["lastTransitionTime"] == "2023-11-14T22:13:20Z"
    assert len(status_patches(kube_api)) == 1
    # the Node's metadata is not touched by a status patch
    assert kube_api.labels(NODE) == {"nodeID": "nid-1"}


def test_a_transition_is_written_after_the_batch_window_with_its_own_transition_time(kube_api, node_api):
    clock = FakeClock()
    writer = writer_for(node_api, clock, batch_s=0.25)
    writer.observe(healthy())
    writer.step()
    clock.t = T0 + 100
    writer.observe(xid79(T0 + 100))
    assert writer.step() == pytest.approx(0.25)  # not yet: a burst may follow
    assert len(status_patches(kube_api)) == 1
    clock.t = T0 + 100.1
    writer.observe(xid79(T0 + 100, gpus="GPU 1 (GPU-b), GPU 2 (GPU-c)"))  # the burst: one PATCH for both
    clock.t = T0 + 100.25
    writer.step()
    assert len(status_patches(kube_api)) == 2
    xid = kube_api.conditions(NODE)["GPUXidCritical"]
    assert xid["status"] == "True"
    assert xid["reason"] == "XidNeedsNodeReboot"
    assert xid["message"] == "GPU 1 (GPU-b), GPU 2 (GPU-c): XID 79; reboot the node"
    assert xid["lastTransitionTime"] == "2023-11-14T22:15:00Z"  # T0 + 100: when it was seen
    assert xid["lastHeartbeatTime"] == "2023-11-14T22:15:00Z"  # T0 + 100.25, in whole seconds
    # the unchanged type keeps its transition time
    assert kube_api.conditions(NODE)["GPULost"]["lastTransitionTime"] == "2023-11-14T22:13:20Z"


def test_a_steady_hour_costs_only_the_heartbeats(kube_api, node_api):
    """An injected clock runs the writer through an hour of unchanged observations
    (one every 10 s, as the sampler would make them)."""
    clock = FakeClock()
    writer = writer_for(node_api, clock, heartbeat_s=300.0)
    writer.observe(healthy())
    writer.step()
    end = T0 + 3600
    next_sample = T0
    while clock.t < end:
        next_due = clock.t + writer.step()
        next_sample += 10.0
        clock.t = min(next_due, next_sample, end)
        writer.observe(healthy())  # the same state again: no write
    writer.step()
    patches = status_patches(kube_api)
    # the start write, then one heartbeat per 5 minutes: 12 in the hour
    assert len(patches) == 1 + 12
    assert kube_api.conditions(NODE)["GPULost"]["lastHeartbeatTime"] == "2023-11-14T23:13:20Z"
    assert kube_api.conditions(NODE)["GPULost"]["lastTransitionTime"] == "2023-11-14T22:13:20Z"


def test_a_wording_change_waits_for_the_message_interval(kube_api, node_api):
    clock = FakeClock()
    writer = writer_for(node_api, clock, message_interval_s=60.0)
    writer.observe(xid79(T0))
    writer.step()
    clock.t = T0 + 5
    writer.observe(xid79(T0, gpus="GPU 1 (GPU-b), GPU 3 (GPU-d)"))
    assert writer.step() == pytest.approx(55.0)
    assert len(status_patches(kube_api)) == 1
    clock.t = T0 + 60
    writer.step()
    assert len(status_patches(kube_api)) == 2
    assert kube_api.conditions(NODE)["GPUXidCritical"]["message"].startswith("GPU 1 (GPU-b), GPU 3 (GPU-d)")


def lost_and_xid79(t: float) -> list[ConditionState]:
    return [
        ConditionState("GPULost", True, "GpuFellOffTheBus", "GPU 1 (GPU-b): NVML_ERROR_GPU_IS_LOST", t),
        ConditionState("GPUXidCritical", True, "XidNeedsNodeReboot", "GPU 1 (GPU-b): XID 79; reboot the node", T0 + 10),
    ]


def test_api_server_away_retries_with_backoff_and_the_latest_state_wins(kube_api, node_api):
    clock = FakeClock()
    writer = writer_for(node_api, clock)
    writer.observe(healthy())
    writer.step()
    kube_api.go_down()
    clock.t = T0 + 10
    writer.observe(xid79(T0 + 10))
    clock.t += 1
    delay = writer.step()
    assert 0 < delay <= 0.2
    assert writer.status().consecutive_failures == 1
    assert not writer.status().in_sync
    assert "unreachable" in writer.status().last_error
    clock.t += 1
    writer.observe(lost_and_xid79(T0 + 12))  # meanwhile the GPU fell off the bus too
    kube_api.start()
    clock.t += 1
    writer.step()
    assert writer.status().consecutive_failures == 0
    assert writer.status().in_sync
    conditions = kube_api.conditions(NODE)
    assert conditions["GPULost"]["status"] == "True"
    assert conditions["GPULost"]["lastTransitionTime"] == "2023-11-14T22:13:32Z"  # T0 + 12
    assert conditions["GPUXidCritical"]["lastTransitionTime"] == "2023-11-14T22:13:30Z"  # T0 + 10
    # the start write, then the latest state only: the intermediate one never reached the server
    assert len(status_patches(kube_api)) == 2


def test_a_problem_that_ended_while_the_server_was_away_costs_no_write(kube_api, node_api):
    clock = FakeClock()
    writer = writer_for(node_api, clock)
    writer.observe(healthy())
    writer.step()
    kube_api.go_down()
    clock.t = T0 + 10
    writer.observe(xid79(T0 + 10))
    clock.t += 1
    writer.step()
    assert writer.status().consecutive_failures == 1
    writer.observe(healthy(T0 + 11))
    kube_api.start()
    clock.t += 1
    assert writer.step() == pytest.approx(300 - 12)  # only the heartbeat is due
    assert writer.status().in_sync
    assert len(status_patches(kube_api)) == 1
    assert kube_api.conditions(NODE)["GPUXidCritical"]["status"] == "False"


def test_forbidden_names_the_status_subresource(kube_api, node_api):
    kube_api.emulator.refusals["PATCH"] = forbidden("patch", resource="nodes/status", name=NODE)
    clock = FakeClock()
    writer = writer_for(node_api, clock)
    writer.observe(healthy())
    writer.step()
    error = writer.status().last_error
    assert "forbidden (403)" in error
    assert "resources [nodes/status]" in error
    assert kube_api.conditions(NODE).keys() == {"Ready"}


def test_a_restarted_agent_keeps_the_transition_time_of_an_unchanged_condition(kube_api, node_api):
    clock = FakeClock()
    first = writer_for(node_api, clock)
    first.observe(xid79(T0))
    first.step()
    clock.t = T0 + 600  # the agent restarts and judges the same problem again
    second = writer_for(node_api, clock)
    second.observe(xid79(T0 + 600))
    second.step()
    xid = kube_api.conditions(NODE)["GPUXidCritical"]
    assert xid["lastTransitionTime"] == "2023-11-14T22:13:20Z"
    assert xid["lastHeartbeatTime"] == "2023-11-14T22:23:20Z"


def test_server_error_is_retried(kube_api, node_api):
    kube_api.emulator.refusals["PATCH"] = KubernetesError(status=500, reason="InternalError", message="etcd timeout")
    clock = FakeClock()
    writer = writer_for(node_api, clock)
    writer.observe(healthy())
    writer.step()
    assert "API server error (500" in writer.status().last_error
    del kube_api.emulator.refusals["PATCH"]
    clock.t += 1
    writer.step()
    assert writer.status().patches == 1
    assert kube_api.conditions(NODE)["GPULost"]["status"] == "False"

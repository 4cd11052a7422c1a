"""/healthz judgement (pure), its WSGI answer, and the daemon's side of pushed health events."""

import io
import json
from types import SimpleNamespace

from agent.liveness import MIN_LIMIT_S, SamplerView, health_document, healthz_app
from agent.metrics import AgentMetricsState
from agent.sampling.daemon import AgentDaemon
from proto.telemetry.v1.exposition import XidKey
from proto.telemetry.v1.readings import HealthEvent
from tests.support import readonly_guard
from tests.support.telemetry import ScriptedReader

STREAM_DOWN = SimpleNamespace(connected=False, buffered=40, acked_seq=7, dropped_samples=0)
ANNOTATOR_FAILING = SimpleNamespace(in_sync=False, patches=0, consecutive_failures=4,
                                    last_error="get node 'n': the API server is unreachable")


def test_a_recent_sample_is_healthy_even_with_the_aggregator_and_api_server_gone():
    view = SamplerView(interval_s=10.0, started_at=100.0, last_run_at=125.0, samples=3, sample_failures=0)
    healthy, body = health_document(150.0, "node-7", view, stream=STREAM_DOWN, annotator=ANNOTATOR_FAILING,
                                    annotator_enabled=True)
    assert healthy and body["status"] == "ok"
    assert body["last_sample_age_s"] == 25.0 and body["stuck_after_s"] == 30.0
    assert body["stream"] == {"connected": False, "buffered": 40, "acked_seq": 7, "dropped_samples": 0}
    assert body["annotator"]["state"] == "retrying"
    assert "unreachable" in body["annotator"]["last_error"]


def test_a_sampler_that_has_not_run_for_three_intervals_is_stuck():
    view = SamplerView(interval_s=10.0, started_at=100.0, last_run_at=125.0, samples=3, sample_failures=0)
    healthy, body = health_document(155.5, "node-7", view)
    assert not healthy and body["status"] == "sampler stuck"
    assert body["annotator"] == {"state": "off"}


def test_a_gpu_whose_nvml_call_hangs_is_reported_and_the_agent_stays_healthy():
    # a sample that waited the 5 s bound for the hung GPU is slow, not stuck
    view = SamplerView(interval_s=1.0, started_at=100.0, last_run_at=100.0, samples=3, sample_failures=0,
                       call_bound_s=5.0)
    healthy, body = health_document(109.9, "node-7", view, unresponsive_gpus=[3, 1])
    assert healthy and body["status"] == "ok"
    assert body["stuck_after_s"] == 10.0 and body["unresponsive_gpus"] == [1, 3]
    assert not health_document(110.1, "node-7", view)[0]  # the whole sampler stuck: that fails
    conditions = SimpleNamespace(in_sync=True, patches=13, consecutive_failures=0, last_error="")
    assert health_document(109.9, "n", view, conditions=conditions)[1]["conditions"] == {
        "state": "in sync", "patches": 13, "consecutive_failures": 0}


def test_before_the_first_run_the_start_counts_and_short_intervals_get_a_floor():
    starting = SamplerView(interval_s=0.2, started_at=100.0, last_run_at=None, samples=0, sample_failures=0)
    assert health_document(100.0 + MIN_LIMIT_S - 0.1, "n", starting)[0]
    healthy, body = health_document(100.0 + MIN_LIMIT_S + 0.1, "n", starting)
    assert not healthy and body["last_sample_age_s"] is None
    never_started = SamplerView(10.0, None, None, 0, 0)
    healthy, body = health_document(100.0, "n", never_started)
    assert not healthy and body["status"] == "not started"


def _call(app) -> tuple[str, dict]:
    seen = {}
    body = b"".join(app({"PATH_INFO": "/healthz", "wsgi.input": io.BytesIO()},
                        lambda status, headers: seen.update(status=status, headers=dict(headers))))
    assert seen["headers"]["Content-Type"] == "application/json"
    return seen["status"], json.loads(body)


def test_healthz_answers_200_or_503_and_a_broken_check_is_503():
    assert _call(healthz_app(lambda: (True, {"status": "ok"}))) == ("200 OK", {"status": "ok"})
    assert _call(healthz_app(lambda: (False, {"status": "sampler stuck"})))[0] == "503 Service Unavailable"
    status, body = _call(healthz_app(lambda: 1 / 0))
    assert status == "503 Service Unavailable" and "ZeroDivisionError" in body["error"]


class _Sink:
    def __init__(self, fail=False):
        self.health, self.samples, self.fail = [], [], fail

    def send_health(self, event):
        if self.fail:
            raise RuntimeError("stream gone")
        self.health.append(event)
        return len(self.health)

    def send_sample(self, sample):
        self.samples.append(sample)

    def send_inventory(self, inventory):
        return 0

    def set_interval(self, interval_s):
        pass


XID = HealthEvent(kind="xid", timestamp=1.0, gpu_index=1, gpu_uuid="GPU-b", xid=79, message="fell off the bus")


def test_pushed_health_events_reach_the_stream_and_observers_once_and_not_the_samples():
    sink, state = _Sink(), AgentMetricsState()
    daemon = AgentDaemon(ScriptedReader("n"), sink)
    daemon.health_observers.append(state.observe_health)
    daemon.push_health(XID)
    daemon.tick()
    assert sink.health == [XID]
    assert sink.samples[0].health_events == ()
    assert state.readings().xid_counts == {XidKey(1, "GPU-b", 79): 1}
    assert state.readings().health_event_counts == {"xid": 1}
    assert daemon.counters.pushed_health_events == 1


def test_a_failing_stream_still_lets_the_observers_count_the_event():
    seen = []
    daemon = AgentDaemon(ScriptedReader("n"), _Sink(fail=True))
    daemon.health_observers.append(seen.append)
    daemon.push_health(XID)
    assert seen == [XID]


def test_a_tick_whose_reader_fails_still_counts_as_a_run():
    class Broken(ScriptedReader):
        def sample(self):
            raise OSError("proc vanished")

    now = iter([5.0, 9.0])
    daemon = AgentDaemon(Broken("n"), _Sink(), clock=lambda: next(now))
    daemon.tick()
    assert daemon.last_run_at == 5.0 and daemon.counters.sample_failures == 1


def test_the_readonly_guard_flags_writes_outside_tmp_only(capsys):
    readonly_guard._hook("open", ("/etc/aios.conf", "w", 0))
    readonly_guard._hook("open", ("/etc/os-release", "r", 0))
    readonly_guard._hook("open", ("/tmp/agent.stats.json", "w", 0))
    readonly_guard._hook("os.mkdir", ("/var/lib/aios", 0o755, -1))
    lines = capsys.readouterr().err.splitlines()
    assert lines == [f"{readonly_guard.MARK} open for writing: '/etc/aios.conf'",
                     f"{readonly_guard.MARK} os.mkdir: '/var/lib/aios'"]


def test_a_node_id_learned_later_than_the_stream_started_is_reported():
    from agent.commands.run import identity_mismatch
    from agent.kube.client import NodeIdentity

    streaming = NodeIdentity("node-a", "node-a", "name")
    assert identity_mismatch(streaming, None) is None
    assert identity_mismatch(streaming, NodeIdentity("node-a", "node-a", "name")) is None
    warning = identity_mismatch(streaming, NodeIdentity("node-a", "rack3-07", "label"))
    assert "'rack3-07' (from its label)" in warning and "streams as 'node-a'" in warning

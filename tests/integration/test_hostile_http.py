"""Issue 13 as regression tests, HTTP side: hostile bodies, connections and load on a real uvicorn server.

Cases: health under policy load and held connections (3), big and unbounded
bodies (4), documents that became unreadable (5), 5xx with internals for
bad input (6), corrupt archives as refused pre-checks (6). Every answer here
is checked for its status and its message; nothing is timed.
"""

from __future__ import annotations

import functools
import http.client
import json
import socket
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
from fastapi import APIRouter

from aggregator.cluster.store import ClusterStore
from aggregator.db import Database
from aggregator.governance.prechecks import Governance
from aggregator.policies import PolicyConfig, open_policy
from aggregator.web.app import create_app
from aggregator.web.healthz import HealthChecks, HealthListener, healthz_router
from aggregator.web.lanes import WorkLane
from aggregator.web.limits import GuardedH11Protocol
from aggregator.web.serving import start_http_in_thread
from tests.support.policy_packages import policy_source, write_directory, write_zip
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

TOKEN = "hostile-http-token"
CLUSTER = {
    "id": "c1",
    "regionId": "eu-central-1",
    "config": {"policyExecutionMode": "local"},
    "nodes": {"count": 0, "nodeData": []},
    "clusterMetadata": {"name": "lab"},
    "tags": ["lab"],
}


class Api:
    def __init__(self, port: int) -> None:
        self.port = port

    def call(self, method: str, path: str, raw: bytes | None = None, *, token: str | None = TOKEN,
             headers: dict | None = None) -> tuple[int, dict, dict]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            sent = {"Content-Type": "application/json", **(headers or {})}
            if token:
                sent["Authorization"] = f"Bearer {token}"
            connection.request(method, path, body=raw, headers=sent)
            response = connection.getresponse()
            body = response.read()
            return response.status, json.loads(body or b"null"), dict(response.headers)
        finally:
            connection.close()


@pytest.fixture
def served(tmp_path):
    db = Database(tmp_path / "a.db")
    store = ClusterStore(db)
    store.put("c1", CLUSTER)
    config = PolicyConfig(cache_dir=tmp_path / "cache", call_timeout_s=20)
    governance = Governance(db, functools.partial(open_policy, config=config))
    lane = WorkLane("test", workers=1, max_waiting=2)
    health = HealthChecks({"db": db.ping})
    crash = APIRouter()

    @crash.get("/crash")
    def _crash() -> dict:
        raise RuntimeError("secret-internal-detail at /srv/aggregator/x.py")

    app = create_app(governance=governance, cluster_store=store, tokens=[TOKEN], lane=lane,
                     routers=[healthz_router(health), crash])
    server = start_http_in_thread(app)
    yield SimpleNamespace(api=Api(server.port), store=store, tmp_path=tmp_path, health=health, lane=lane)
    server.stop()
    lane.close()
    governance.close()
    health.close()
    db.close()


# ---------------------------------------------------------------- 5: documents that became unreadable


DEEP_VALUE = '{"clusterMetadata.deep": ' + "[" * 400 + "]" * 400 + "}"
LONG_PATH = '{"clusterMetadata.' + ".".join(f"s{i}" for i in range(300)) + '": 1}'


@pytest.mark.parametrize(
    "body, where",
    [
        pytest.param(b'{"tags": ["\\ud800"]}', "$.tags[0]: holds a lone surrogate", id="lone-surrogate"),
        pytest.param(b'{"clusterMetadata.bad": "\\udc00x"}', "lone surrogate", id="lone-low-surrogate"),
        pytest.param(DEEP_VALUE.encode(), "nested deeper than 64 levels", id="400-deep"),
        pytest.param(LONG_PATH.encode(), "has 301 segments; at most 32", id="300-segments"),
        pytest.param(b'{"clusterMetadata.n": NaN}', '$["clusterMetadata.n"]: NaN is not JSON', id="NaN"),
        pytest.param(b'{"clusterMetadata.n": -Infinity}', "-Infinity is not JSON", id="Infinity"),
        pytest.param(b'{"clusterMetadata.n": 1e400}', "1e400 is out of range", id="1e400"),
        pytest.param(b'{"clusterMetadata.n": ' + b"7" * 5000 + b"}", "an integer of 5000 digits", id="5000-digits"),
        pytest.param(b'{"clusterMetadata.a": {"b": 1}, "clusterMetadata.a-x": 0, "clusterMetadata.a.b.c": 2}',
                     "would conflict with updating 'clusterMetadata.a'", id="prefix-paths"),
        pytest.param(b'{"clusterMetadata.' + b".".join(b"p%d" % i for i in range(30)) + b'": ' + b"[" * 40 + b"]" * 40 + b"}",
                     "nested deeper than 64 levels in the document", id="path-plus-value-depth"),
    ],
)
def test_a_patch_that_could_not_be_read_back_is_refused_before_anything_is_stored(served, body, where):
    """Before: stored, then every GET and PATCH of the document answered 500 (or NaN read back as null)."""
    api, store = served.api, served.store
    status, answer, _ = api.call("PATCH", "/clusters/update/c1", body)
    assert status == 400 and answer["success"] is False and where in answer["message"]
    assert store.get("c1") == CLUSTER
    assert api.call("GET", "/clusters/read/c1", )[:2] == (200, {"success": True, "data": CLUSTER})
    assert api.call("PATCH", "/clusters/update/c1", b'{"tags": ["still", "writable"]}')[0] == 200


@pytest.mark.parametrize(
    "method, path",
    [
        ("PATCH", "/clusters/update/c1"),
        ("POST", "/pre-check/add_node"),
        ("POST", "/pre-check-policies/update"),
    ],
)
def test_100k_deep_json_on_the_write_routes_is_400_not_500(served, method, path):
    """(/mgmt, the fourth, is in test_stability_http.py.)"""
    api = served.api
    status, answer, _ = api.call(method, path, b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    assert status == 400 and answer["success"] is False
    assert "nested deeper than 64 levels" in answer["message"] and "$.a[0]" in answer["message"]


def test_the_trailing_comma_of_the_operators_guide_is_still_accepted(served):
    api, store = served.api, served.store
    status, answer, _ = api.call("PATCH", "/clusters/update/c1", b'{"tags": ["ai-cluster", "llm", ], }')
    assert status == 200 and store.get("c1")["tags"] == ["ai-cluster", "llm"]


# ---------------------------------------------------------------- 4: body size before reading


def test_a_declared_body_over_the_limit_is_refused_before_it_is_read(served):
    """Before: /mgmt read 50 MB before answering 400. Now any route answers 413 from the header alone."""
    api = served.api
    with socket.create_connection(("127.0.0.1", api.port), timeout=30) as conn:
        conn.sendall(b"PATCH /clusters/update/c1 HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                     b"Authorization: Bearer " + TOKEN.encode() + b"\r\nContent-Length: 52428800\r\n\r\n")
        answer = _read_response(conn)  # not one byte of the body was sent
    assert answer.startswith(b"HTTP/1.1 413") and b"over 16777216 bytes" in answer


def test_a_chunked_body_is_counted_and_refused_once_over_the_limit(served):
    api = served.api
    with socket.create_connection(("127.0.0.1", api.port), timeout=30) as conn:
        conn.sendall(b"POST /pre-check-policies/update HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
                     b"Authorization: Bearer " + TOKEN.encode() + b"\r\n\r\n")
        chunk = b"x" * 65536
        try:
            for _ in range(40):  # 2.5 MB against the 1 MiB default
                conn.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        except OSError:
            pass  # the server answered and closed while we were still sending
        answer = _read_response(conn)
    assert answer.startswith(b"HTTP/1.1 413") and b"over 1048576 bytes" in answer


def _read_response(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


# ---------------------------------------------------------------- 6: no 5xx, no internals


def test_an_unexpected_error_answers_500_without_internals(served):
    api = served.api
    status, answer, _ = api.call("GET", "/crash")
    assert status == 500 and answer["success"] is False
    assert "secret-internal-detail" not in answer["message"] and "RuntimeError" not in answer["message"]
    assert answer["message"].startswith("internal error (reference ")


def test_a_corrupt_policy_archive_is_a_refused_precheck_naming_it(served):
    """Before: BadZipFile/zlib.error escaped as a 500 with a traceback."""
    api, tmp_path = served.api, served.tmp_path
    good = write_zip(tmp_path / "guard.zip", policy_source("""
def __init__(self, rule_id, settings, parameters): pass
def eval(self, parameters, input_data, context): return {"allowed": True, "input_data": input_data}
"""))
    blob = bytearray(good.read_bytes())
    start = blob.index(b"function.py") + len("function.py")
    blob[start + 4:start + 40] = b"\x00" * 36  # inside the deflated data
    corrupt = tmp_path / "corrupt-guard.zip"
    corrupt.write_bytes(bytes(blob))
    status, _, _ = api.call("POST", "/pre-check-policies/update", json.dumps({"add_node": str(corrupt)}).encode())
    assert status == 200
    status, answer, _ = api.call("POST", "/pre-check/add_node", b'{"node": "n1"}')
    assert status == 200 and answer["data"]["allowed"] is False
    assert "corrupt-guard.zip" in answer["data"]["input_data"] and "Traceback" not in answer["data"]["input_data"]


# ---------------------------------------------------------------- 3: health and policy-bound work


def test_health_answers_while_the_policy_lane_is_full_and_more_work_is_turned_away(served):
    """Before: policy calls queued in the thread pool /healthz shared; /healthz took 30 s."""
    api, tmp_path, health, lane = served.api, served.tmp_path, served.health, served.lane
    slow = write_directory(tmp_path / "slow-guard", policy_source("""
def __init__(self, rule_id, settings, parameters): pass
def eval(self, parameters, input_data, context):
    import os, time
    # the gate sits beside the code: the policy sandbox lets a policy read its own folder only
    while not os.path.exists(os.path.join(os.path.dirname(__file__), "gate")):
        time.sleep(0.01)
    return {"allowed": True, "input_data": input_data}
"""))
    gate = slow / "code" / "gate"
    assert api.call("POST", "/pre-check-policies/update", json.dumps({"add_node": str(slow)}).encode())[0] == 200
    answers: list[int] = []
    callers = [threading.Thread(target=lambda: answers.append(api.call("POST", "/pre-check/add_node", b"{}")[0]))
               for _ in range(3)]  # the lane: 1 worker + 2 waiting
    for caller in callers:
        caller.start()
    try:
        wait_for(lambda: lane.in_flight == 3, what="the lane to be full")
        status, answer, headers = api.call("POST", "/pre-check/add_node", b"{}")
        assert status == 503 and headers.get("retry-after") == "1" and "busy" in answer["message"]
        assert api.call("GET", "/healthz", token=None)[:2] == (200, {"status": "ok", "checks": {"db": True}})
        listener = HealthListener(health, "127.0.0.1", 0)
        port = listener.start()
        try:
            health_api = Api(port)
            assert health_api.call("GET", "/healthz", token=None)[:2] == (200, {"status": "ok", "checks": {"db": True}})
            assert health_api.call("GET", "/clusters/read/c1", token=None)[0] == 404
        finally:
            listener.close()
    finally:
        gate.write_text("go")
        for caller in callers:
            caller.join(30)
    assert sorted(answers) == [200, 200, 200]
    assert lane.in_flight == 0


@pytest.fixture
def tight_connections(monkeypatch):
    monkeypatch.setattr(GuardedH11Protocol, "header_timeout_s", 0.3)
    monkeypatch.setattr(GuardedH11Protocol, "max_connections", 5)


def test_idle_and_half_open_connections_are_closed_and_capped(tight_connections, tmp_path):
    """Before: uvicorn kept idle and half-open connections until the client went (300 of them made
    /healthz time out)."""
    app = create_app(governance=Governance(Database(tmp_path / "b.db"), lambda uri: None),
                     cluster_store=ClusterStore(Database(tmp_path / "c.db")), tokens=[TOKEN],
                     routers=[healthz_router({"ok": lambda: True})])
    server = start_http_in_thread(app)
    try:
        half_open = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        half_open.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")  # and never the blank line
        assert half_open.recv(100) == b""  # closed by the server: the head deadline passed
        half_open.close()

        idle = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(5)]
        extra = socket.create_connection(("127.0.0.1", server.port), timeout=10)  # the sixth: one idle one goes
        extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert _read_response(extra).startswith(b"HTTP/1.1 200")
        closed = sum(1 for conn in idle if conn.recv(100) == b"")
        assert closed == 5  # the first by eviction, the rest by the head deadline
        for conn in (*idle, extra):
            conn.close()
    finally:
        server.stop()


def test_the_health_port_serves_healthz_only(tmp_path):
    db = Database(tmp_path / "h.db")
    health = HealthChecks({"db": db.ping, "broken": lambda: 1 / 0})
    listener = HealthListener(health, "127.0.0.1", 0)
    port = listener.start()
    try:
        status, body, _ = Api(port).call("GET", "/healthz", token=None)
        assert status == 503 and body == {"success": False, "message": "not ready: broken",
                                          "checks": {"db": True, "broken": False}}
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")  # half a head: dropped after 5 s, answered nothing
            assert conn.recv(100) == b""
    finally:
        listener.close()
        health.close()
        db.close()


def test_a_relative_policy_cache_dir_is_resolved_once_by_the_aggregator(tmp_path, monkeypatch):
    from aggregator.service import Aggregator, ServeConfig

    monkeypatch.chdir(tmp_path)
    aggregator = Aggregator(ServeConfig(db_path=tmp_path / "x.db", tokens=("t",), env={"AIOS_POLICY_CACHE_DIR": "cache"}))
    assert aggregator.config.env["AIOS_POLICY_CACHE_DIR"] == str(Path(tmp_path / "cache"))

"""Who may read and who may write: every route of the whole aggregator, and its gRPC methods.

The aggregator (`Aggregator`, in this process) serves HTTP and gRPC on loopback
with a write token and a read token. The HTTP routes are taken from the app
itself, so a route added later is checked too.
"""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.error
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from aggregator.web.base import OPEN_PATHS
from proto.cluster.v1 import cluster_pb2, cluster_pb2_grpc
from proto.stability.v1 import stability_pb2, stability_pb2_grpc
from proto.telemetry.v1 import telemetry_pb2 as pb
from proto.telemetry.v1 import telemetry_pb2_grpc as pb_grpc

pytestmark = pytest.mark.integration

WRITE, READ = "write-token-1", "read-token-1"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from aggregator.service import Aggregator, ServeConfig

    tmp = tmp_path_factory.mktemp("access")
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    aggregator = Aggregator(ServeConfig(db_path=tmp / "a.sqlite", tokens=(WRITE,), read_tokens=(READ,), grpc_port=0,
                                        http_port=0, host="127.0.0.1", cluster_id="c1", kubernetes=False,
                                        env={"AIOS_POLICY_CACHE_DIR": str(tmp / "cache")}))
    asyncio.run_coroutine_threadsafe(aggregator.start(), loop).result(30)
    aggregator.cluster_store.put("c1", {"id": "c1", "regionId": "r", "config": {}, "nodes": {}, "clusterMetadata": {}})
    try:
        yield aggregator
    finally:
        asyncio.run_coroutine_threadsafe(aggregator.stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def call(served, method: str, path: str, token: str | None) -> int:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    data = b"{}" if method in ("POST", "PUT", "PATCH") else None
    request = urllib.request.Request(f"http://127.0.0.1:{served.http.port}{path}", data=data, method=method,
                                     headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status
    except urllib.error.HTTPError as exc:
        json.loads(exc.read())  # always the API's JSON, never a bare error page
        return exc.code


def routes(served) -> list[tuple[str, str]]:
    """(method, path) of every route the served app describes, path parameters filled in."""
    with urllib.request.urlopen(f"http://127.0.0.1:{served.http.port}/openapi.json", timeout=30) as answer:
        paths = json.loads(answer.read())["paths"]
    fill = {"{cluster_id}": "c1", "{action}": "add_node"}
    found = []
    for path, operations in paths.items():
        for name, value in fill.items():
            path = path.replace(name, value)
        found += [(method.upper(), path) for method in operations]
    return found


def test_every_read_needs_a_token_and_the_read_token_is_enough(served):
    reads = [path for method, path in routes(served) if method == "GET" and path not in OPEN_PATHS]
    assert {"/clusters/read/c1", "/pre-check-policies", "/enrollment/records", "/stability/verdicts",
            "/check_stability", "/nodes_status", "/healthy_nodes"} <= set(reads)
    for path in reads:
        assert call(served, "GET", path, None) == 401, path
        assert call(served, "GET", path, "not-a-token") == 401, path
        assert call(served, "GET", path, READ) == 200, path
        assert call(served, "GET", path, WRITE) == 200, path


def test_health_metrics_and_the_api_description_are_open(served):
    for path in ("/healthz", "/metrics", "/openapi.json", "/docs"):
        assert call(served, "GET", path, None) == 200, path


def test_the_read_token_on_every_write_is_forbidden(served):
    writes = [(method, path) for method, path in routes(served) if method != "GET"]
    assert ("PATCH", "/clusters/update/c1") in writes and ("POST", "/mgmt") in writes
    for method, path in writes:
        assert call(served, method, path, READ) == 403, (method, path)
        assert call(served, method, path, None) == 401, (method, path)


def _metadata(token):
    return (("authorization", f"Bearer {token}"),) if token else ()


def test_grpc_reads_take_the_read_token_and_writes_refuse_it(served):
    with grpc.insecure_channel(f"127.0.0.1:{served.grpc.port}") as channel:
        query = pb_grpc.TelemetryQueryStub(channel)
        documents = cluster_pb2_grpc.ClusterDocumentsStub(channel)
        stability = stability_pb2_grpc.StabilityServiceStub(channel)
        assert query.ListNodes(pb.ListNodesRequest(), metadata=_metadata(READ), timeout=10) is not None
        assert stability.ListVerdicts(stability_pb2.ListVerdictsRequest(limit=1), metadata=_metadata(READ), timeout=10)
        with pytest.raises(grpc.RpcError) as missing:
            query.ListNodes(pb.ListNodesRequest(), timeout=10)
        assert missing.value.code() == grpc.StatusCode.UNAUTHENTICATED
        document = documents.GetClusterDocument(cluster_pb2.GetClusterDocumentRequest(cluster_id="c1"),
                                                metadata=_metadata(READ), timeout=10)
        assert json.loads(document.document_json)["id"] == "c1"
        with pytest.raises(grpc.RpcError) as refused:
            documents.PutClusterDocument(cluster_pb2.PutClusterDocumentRequest(cluster_id="c1", document_json="{}"),
                                         metadata=_metadata(READ), timeout=10)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        hello = pb.AgentMessage(hello=pb.Hello(node_id="n1", agent_instance="i"))
        with pytest.raises(grpc.RpcError) as ingest:
            list(pb_grpc.TelemetryIngestStub(channel).Stream(iter([hello]), metadata=_metadata(READ), timeout=10))
        assert ingest.value.code() == grpc.StatusCode.PERMISSION_DENIED
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert health.status == health_pb2.HealthCheckResponse.SERVING  # probes carry no token

"""The ClusterDocuments gRPC service on loopback: open reads, token-guarded writes."""

import json

import grpc
import pytest

from proto.cluster.v1 import cluster_pb2 as pb
from proto.cluster.v1 import cluster_pb2_grpc as pb_grpc
from tests.integration.aggregator_standin import TOKEN, AggregatorStandIn
from tests.support.onboarding_data import ENTRY_A, ENTRY_B, ENTRY_C, TOTALS_ABC, expected_document

pytestmark = pytest.mark.integration


@pytest.fixture
def service(tmp_path):
    standin = AggregatorStandIn(tmp_path / "aggregator.db")
    channel = grpc.insecure_channel(standin.address)
    yield standin, pb_grpc.ClusterDocumentsStub(channel)
    channel.close()
    standin.close()


def put(stub, document, token=TOKEN, cluster_id=None):
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    return stub.PutClusterDocument(
        pb.PutClusterDocumentRequest(cluster_id=cluster_id or document["id"], document_json=json.dumps(document)),
        metadata=metadata, timeout=5)


def test_store_then_read_back(service):
    standin, stub = service
    document = expected_document([ENTRY_A, ENTRY_B, ENTRY_C], TOTALS_ABC)
    assert put(stub, document).stored
    answer = stub.GetClusterDocument(pb.GetClusterDocumentRequest(cluster_id="cluster-eu-1"), timeout=5)
    assert answer.cluster_id == "cluster-eu-1"
    assert json.loads(answer.document_json) == document
    assert standin.store.get("cluster-eu-1") == document


def test_unknown_cluster_is_not_found(service):
    _, stub = service
    with pytest.raises(grpc.RpcError) as caught:
        stub.GetClusterDocument(pb.GetClusterDocumentRequest(cluster_id="nope"), timeout=5)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_writing_needs_a_valid_token(service, token):
    standin, stub = service
    with pytest.raises(grpc.RpcError) as caught:
        put(stub, expected_document([], {}), token=token)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert standin.store.ids() == []


def test_an_invalid_document_is_refused_with_its_problems(service):
    standin, stub = service
    document = expected_document([], {})
    del document["clusterMetadata"]
    with pytest.raises(grpc.RpcError) as caught:
        put(stub, document)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == "clusterMetadata: missing"
    with pytest.raises(grpc.RpcError) as caught:
        put(stub, expected_document([], {}), cluster_id="other")
    assert caught.value.details() == "id: 'cluster-eu-1' does not match cluster_id 'other'"
    assert standin.store.ids() == []

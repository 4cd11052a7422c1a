"""Where onboarding learns the nodes: the aggregator (agents' measurements) or Kubernetes.

Reading is kept apart from building the document (`document.py`, pure):
these functions only fetch and turn wire data into typed readings or plain
Node dicts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import grpc

from aggregator.kube_client import KubeUnavailable, load_kube_client
from aggregator.onboarding.errors import NodeSourceUnavailable, OnboardingError
from proto.cluster.v1 import cluster_pb2, cluster_pb2_grpc
from proto.telemetry.v1 import telemetry_pb2, telemetry_pb2_grpc
from proto.telemetry.v1.convert import inventory_from_pb, sample_from_pb
from proto.telemetry.v1.readings import NodeInventory, NodeSample

__all__ = ["MeasuredNode", "read_from_aggregator", "read_kube_nodes", "store_in_aggregator"]

# codes meaning "nobody answers there": fall back to Kubernetes
_UNREACHABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


@dataclass(frozen=True)
class MeasuredNode:
    inventory: NodeInventory
    latest: NodeSample | None


def _metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),) if token else ()


def _rpc_failure(what: str, address: str, error: grpc.RpcError) -> OnboardingError:
    text = f"{what} at {address}: {error.code().name}: {error.details()}"
    if error.code() in _UNREACHABLE:
        return NodeSourceUnavailable(text)
    return OnboardingError(text)


def read_from_aggregator(address: str, *, token: str | None = None, timeout_s: float = 10.0) -> list[MeasuredNode]:
    """Every node the aggregator knows, with its inventory and latest sample."""
    with grpc.insecure_channel(address) as channel:
        stub = telemetry_pb2_grpc.TelemetryQueryStub(channel)
        try:
            listing = stub.ListNodes(telemetry_pb2.ListNodesRequest(), timeout=timeout_s,
                                     metadata=_metadata(token), wait_for_ready=False)
            nodes = []
            for summary in listing.nodes:
                detail = stub.GetNode(telemetry_pb2.GetNodeRequest(node_id=summary.node_id),
                                      timeout=timeout_s, metadata=_metadata(token))
                latest = sample_from_pb(detail.latest_sample) if detail.HasField("latest_sample") else None
                nodes.append(MeasuredNode(inventory_from_pb(detail.inventory), latest))
        except grpc.RpcError as e:
            raise _rpc_failure("reading nodes from the aggregator", address, e) from e
    return nodes


def store_in_aggregator(address: str, document: dict, *, token: str | None, timeout_s: float = 10.0) -> None:
    """Hand the onboarded document to the aggregator, which then enrolls later nodes."""
    with grpc.insecure_channel(address) as channel:
        stub = cluster_pb2_grpc.ClusterDocumentsStub(channel)
        request = cluster_pb2.PutClusterDocumentRequest(
            cluster_id=document["id"], document_json=json.dumps(document, sort_keys=True)
        )
        try:
            stub.PutClusterDocument(request, timeout=timeout_s, metadata=_metadata(token))
        except grpc.RpcError as e:
            raise _rpc_failure("storing the document in the aggregator", address, e) from e


def read_kube_nodes(kubeconfig: str | None = None, *, timeout_s: float = 10.0) -> list[dict[str, Any]]:
    """Every Node object as JSON, through the official client.

    From `kubeconfig` when given, else `KUBECONFIG`, else the in-cluster
    service account, else `~/.kube/config` (`aggregator.kube_client`).
    """
    try:
        api_client = load_kube_client(kubeconfig, home_fallback=True)
    except KubeUnavailable as e:
        raise NodeSourceUnavailable(f"no Kubernetes API configured: {e}") from e
    from kubernetes import client  # late: 24 MiB, only the fallback needs it

    try:
        with api_client:
            listing = client.CoreV1Api(api_client).list_node(_request_timeout=timeout_s)
            return [api_client.sanitize_for_serialization(node) for node in listing.items]
    except client.ApiException as e:
        raise NodeSourceUnavailable(f"Kubernetes API: listing Nodes failed: {e.status} {e.reason}") from e
    except Exception as e:  # urllib3 connection errors come in several classes
        raise NodeSourceUnavailable(f"Kubernetes API unreachable: {type(e).__name__}: {e}") from e

"""gRPC service `aios.cluster.v1.ClusterDocuments`: read and store the cluster document.

The onboarding CLI stores the document here once the parser accepted it;
from then on enrollment keeps it current. The gRPC interceptor lets a read
token read (like the HTTP `GET /clusters/read/<id>`); a write needs a write
token, checked here again. The servicer is
asyncio (`grpc.aio`), the store is SQLite, so store calls run in a thread.

Register with `add_cluster_documents_servicer(server, store, tokens=..., cluster_id=..., on_stored=...)`:
an aggregator serving one cluster refuses another cluster's document, and
`on_stored(cluster_id)` lets enrollment catch up on nodes that said hello
before the document arrived.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

import grpc

from aggregator import strict_json
from aggregator.auth import bearer_token, load_tokens, token_matches
from aggregator.cluster.store import ClusterStore, UnknownCluster
from aggregator.onboarding.validate import validate_config
from proto.cluster.v1 import cluster_pb2 as pb
from proto.cluster.v1 import cluster_pb2_grpc as pb_grpc

__all__ = ["ClusterDocumentsServicer", "add_cluster_documents_servicer"]

log = logging.getLogger(__name__)


class ClusterDocumentsServicer(pb_grpc.ClusterDocumentsServicer):
    def __init__(self, store: ClusterStore, tokens: Callable[[], Iterable[str]] = load_tokens, *,
                 cluster_id: str = "", on_stored: Callable[[str], None] | None = None) -> None:
        self._store = store
        self._tokens = tokens
        self._cluster_id = cluster_id
        self._on_stored = on_stored

    async def GetClusterDocument(self, request: pb.GetClusterDocumentRequest, context) -> pb.ClusterDocument:
        try:
            document = await asyncio.to_thread(self._store.get, request.cluster_id)
        except UnknownCluster:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no document stored for cluster {request.cluster_id!r}")
        return pb.ClusterDocument(cluster_id=request.cluster_id, document_json=strict_json.dumps(document))

    async def PutClusterDocument(self, request: pb.PutClusterDocumentRequest, context) -> pb.PutClusterDocumentResponse:
        metadata = dict(context.invocation_metadata() or ())
        token = bearer_token(metadata.get("authorization"))
        if token is None or not token_matches(token, tuple(self._tokens())):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "a valid bearer token is required to store a document")
        problems = _document_problems(request.cluster_id, request.document_json)
        if problems:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "; ".join(problems))
        if self._cluster_id and request.cluster_id != self._cluster_id:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                f"this aggregator serves cluster {self._cluster_id!r}, not {request.cluster_id!r}")
        document = strict_json.loads(request.document_json)
        await asyncio.to_thread(self._store.put, request.cluster_id, document)
        log.info("cluster document %s stored (%d nodes)", request.cluster_id, len(document["nodes"].get("nodeData") or []))
        if self._on_stored is not None:
            self._on_stored(request.cluster_id)
        return pb.PutClusterDocumentResponse(stored=True)


def _document_problems(cluster_id: str, text: str) -> list[str]:
    if not cluster_id:
        return ["cluster_id: missing"]
    try:
        document = strict_json.loads(text)
    except strict_json.StrictJsonError as e:
        return [f"document_json {e.path}: {e.problem}"]
    except ValueError as e:
        return [f"document_json: invalid JSON ({e})"]
    problems = [str(p) for p in validate_config(document)]
    if not problems and document["id"] != cluster_id:
        problems.append(f"id: {document['id']!r} does not match cluster_id {cluster_id!r}")
    return problems


def add_cluster_documents_servicer(server, store: ClusterStore,
                                   tokens: Callable[[], Iterable[str]] = load_tokens, *, cluster_id: str = "",
                                   on_stored: Callable[[str], None] | None = None) -> ClusterDocumentsServicer:
    servicer = ClusterDocumentsServicer(store, tokens, cluster_id=cluster_id, on_stored=on_stored)
    pb_grpc.add_ClusterDocumentsServicer_to_server(servicer, server)
    return servicer

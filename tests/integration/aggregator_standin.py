"""An aggregator's gRPC side for onboarding tests, on 127.0.0.1 (grpc.aio in its own thread).

It serves the real `ClusterDocuments` service (with a real SQLite
`ClusterStore`) and a `TelemetryQuery` answering from the inventories the
test gives, encoded with the project's own converter, as the telemetry
branch's query service does.
"""

from __future__ import annotations

import asyncio
import threading

import grpc

from aggregator.cluster.store import ClusterStore
from aggregator.db import Database
from aggregator.onboarding.cluster_service import add_cluster_documents_servicer
from proto.telemetry.v1 import telemetry_pb2 as pb
from proto.telemetry.v1 import telemetry_pb2_grpc as pb_grpc
from proto.telemetry.v1.convert import inventory_to_pb

TOKEN = "onboarding-test-token"


class _Query(pb_grpc.TelemetryQueryServicer):
    def __init__(self, inventories):
        self.inventories = {inv.node_id: inv for inv in inventories}

    async def ListNodes(self, request, context):
        return pb.ListNodesResponse(nodes=[
            pb.NodeSummary(node_id=i.node_id, node_name=i.node_name, status=pb.NODE_STATUS_HEALTHY,
                           gpu_count=len(i.gpus))
            for i in self.inventories.values()
        ])

    async def GetNode(self, request, context):
        inventory = self.inventories.get(request.node_id)
        if inventory is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, request.node_id)
        return pb.NodeDetail(summary=pb.NodeSummary(node_id=inventory.node_id), inventory=inventory_to_pb(inventory))


class AggregatorStandIn:
    def __init__(self, db_path, inventories=()):
        self.db = Database(db_path)
        self.store = ClusterStore(self.db)
        self.query = _Query(inventories)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="aggregator-standin", daemon=True)
        self._thread.start()
        self._server, self.port = self._call(self._start())
        self.address = f"127.0.0.1:{self.port}"

    def _call(self, coro, timeout_s=10.0):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout_s)

    async def _start(self):
        server = grpc.aio.server()
        pb_grpc.add_TelemetryQueryServicer_to_server(self.query, server)
        add_cluster_documents_servicer(server, self.store, tokens=lambda: (TOKEN,))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        return server, port

    def close(self):
        self._call(self._server.stop(None))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()
        self.db.close()

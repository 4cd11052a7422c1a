"""The aggregator's gRPC server: ingest, queries, health and reflection.

Authentication is a bearer token checked by an interceptor on every service
but health (probes): a read token for the reading methods, a write token for
all (`aggregator.rpc.auth`); with Kubernetes agent authentication the ingest
checks its agents itself (`aggregator.rpc.agent_auth`). TLS is optional, from a certificate and key file.
Message size: messages up to `max_message_bytes` are accepted; larger ones
up to a hard cap are refused by the ingest with INVALID_ARGUMENT (naming the
size); beyond the cap gRPC itself answers RESOURCE_EXHAUSTED without reading
them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from aggregator.auth import AccessTokens
from aggregator.rpc.auth import BearerTokenInterceptor
from aggregator.telemetry.ingest import INGEST_SERVICE_NAME, IngestService
from aggregator.telemetry.query_service import QueryService
from proto.telemetry.v1 import telemetry_pb2 as pb
from proto.telemetry.v1 import telemetry_pb2_grpc as pb_grpc

__all__ = ["KEEPALIVE_OPTIONS", "GrpcServer", "TlsFiles", "build_grpc_server"]

QUERY_SERVICE_NAME = pb.DESCRIPTOR.services_by_name["TelemetryQuery"].full_name

# Agents ping every 30 s to notice dead connections through NATs and load
# balancers; allow that, and ping idle agents ourselves every 60 s.
KEEPALIVE_OPTIONS = (
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_ping_strikes", 0),
)


# gRPC core cancels new calls the application has not picked up yet beyond
# 1,000 (soft) / 3,000 (hard) pending. After an aggregator restart every agent
# of the cluster reconnects within seconds (5,000 nodes is Kubernetes'
# maximum), each hello costing more than the bare accept, so raise both: with
# the defaults, 5-10 % of 5,000 simultaneous opens were CANCELLED (measured
# with benchmarks/ingest.py).
RECONNECT_STORM_OPTIONS = (
    ("grpc.server.max_pending_requests", 20_000),
    ("grpc.server.max_pending_requests_hard_limit", 50_000),
)


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials([(Path(self.key).read_bytes(), Path(self.cert).read_bytes())])


@dataclass
class GrpcServer:
    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer

    async def stop(self, grace_s: float | None = 2.0) -> None:
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace_s)


async def build_grpc_server(
    ingest: IngestService,
    query: QueryService,
    *,
    tokens: AccessTokens | Sequence[str],
    host: str = "0.0.0.0",
    port: int = 0,
    tls: TlsFiles | None = None,
    add_services: Sequence[Callable[[grpc.aio.Server], None]] = (),
    self_authenticating: frozenset[str] = frozenset(),
) -> GrpcServer:
    """A started server; `port=0` picks a free one (see `.port`).

    `add_services`: more servicers (e.g. onboarding's ClusterDocuments), added before the start.
    `self_authenticating`: methods the interceptor passes through (the ingest with Kubernetes agent auth).
    """
    hard_cap = max(4 * ingest.max_message_bytes, 4 * 1024 * 1024)
    server = grpc.aio.server(
        interceptors=[BearerTokenInterceptor(tokens, self_authenticating=self_authenticating)],
        options=[
            ("grpc.max_receive_message_length", hard_cap),
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
            *KEEPALIVE_OPTIONS,
            *RECONNECT_STORM_OPTIONS,
        ],
    )
    server.add_generic_rpc_handlers((ingest.generic_handler(),))
    pb_grpc.add_TelemetryQueryServicer_to_server(query, server)
    for add in add_services:
        add(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (INGEST_SERVICE_NAME, QUERY_SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    address = f"{host}:{port}"
    bound = server.add_secure_port(address, tls.credentials()) if tls else server.add_insecure_port(address)
    if bound == 0:
        raise OSError(f"cannot listen on {address}")
    await server.start()
    for name in ("", INGEST_SERVICE_NAME, QUERY_SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return GrpcServer(server=server, port=bound, health=health_servicer)

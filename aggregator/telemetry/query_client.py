"""A small client of TelemetryQuery for the CLI and scripts (sync gRPC, token attached)."""

from __future__ import annotations

import os
from pathlib import Path

import grpc

from aggregator.auth import AuthError, load_tokens
from proto.telemetry.v1 import telemetry_pb2 as pb
from proto.telemetry.v1 import telemetry_pb2_grpc as pb_grpc

__all__ = ["DEFAULT_ADDRESS", "QueryClient", "QueryClientError"]

DEFAULT_ADDRESS = "127.0.0.1:50051"


class QueryClientError(Exception):
    """The aggregator could not be asked (unreachable, refused, not found); `code` is the gRPC status, if any."""

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.code = code


class QueryClient:
    def __init__(
        self,
        address: str | None = None,
        *,
        token: str | None = None,
        tls_ca: Path | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        self.address = address or os.environ.get("AIOS_AGGREGATOR_ADDR") or DEFAULT_ADDRESS
        if token is None:
            try:
                tokens = load_tokens()
            except AuthError as e:
                raise QueryClientError(str(e)) from e
            token = tokens[0] if tokens else None
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        if tls_ca is not None:
            creds = grpc.ssl_channel_credentials(root_certificates=Path(tls_ca).read_bytes())
            self._channel = grpc.secure_channel(self.address, creds)
        else:
            self._channel = grpc.insecure_channel(self.address)
        self._stub = pb_grpc.TelemetryQueryStub(self._channel)
        self._timeout = timeout_s

    def _call(self, method, request):
        try:
            return method(request, metadata=self._metadata, timeout=self._timeout)
        except grpc.RpcError as e:
            raise QueryClientError(f"{self.address}: {e.code().name}: {e.details()}", e.code()) from e

    def list_nodes(self) -> list[pb.NodeSummary]:
        return list(self._call(self._stub.ListNodes, pb.ListNodesRequest()).nodes)

    def get_node(self, node: str, max_health_events: int = 0) -> pb.NodeDetail:
        return self._call(self._stub.GetNode, pb.GetNodeRequest(node_id=node, max_health_events=max_health_events))

    def pod_gpus(self, namespace: str, pod: str) -> list[pb.GpuUse]:
        return list(self._call(self._stub.GetPodGpus, pb.PodGpusRequest(namespace=namespace, pod=pod)).uses)

    def gpu_pods(self, gpu_uuid: str = "", *, node: str = "", gpu_index: int | None = None) -> list[pb.GpuUse]:
        request = pb.GpuPodsRequest(gpu_uuid=gpu_uuid, node_id=node)
        if gpu_index is not None:
            request.gpu_index = gpu_index
        return list(self._call(self._stub.GetGpuPods, request).uses)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> QueryClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

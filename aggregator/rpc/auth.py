"""The gRPC side of bearer-token authentication (`authorization: Bearer ...`).

Every call must carry a token `aggregator.auth` accepts, except the standard
health service, which Kubernetes probes call without credentials. A read token
(`AIOS_READ_TOKEN`) is enough for the reading methods; the writing ones
(`WRITE_METHODS`) need a write token and answer PERMISSION_DENIED to a read token.

With agents authenticating as their Kubernetes ServiceAccount
(`AIOS_AGENT_AUTH=kubernetes`), the ingest stream is passed through here
(`self_authenticating`): `aggregator.rpc.agent_auth` checks its token, which
is no shared token at all, and binds the stream to the agent's node.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import grpc

from aggregator.auth import AccessTokens, Role, bearer_token

__all__ = ["INGEST_METHOD", "UNAUTHENTICATED_PREFIXES", "WRITE_METHODS", "BearerTokenInterceptor"]

log = logging.getLogger(__name__)

UNAUTHENTICATED_PREFIXES = ("/grpc.health.v1.Health/",)
INGEST_METHOD = "/aios.telemetry.v1.TelemetryIngest/Stream"
# every other method only reads (queries, cluster document reads, verdicts, reflection)
WRITE_METHODS = frozenset({INGEST_METHOD, "/aios.cluster.v1.ClusterDocuments/PutClusterDocument"})


def _denied_handler(handler: grpc.RpcMethodHandler, code: grpc.StatusCode, message: str) -> grpc.RpcMethodHandler:
    """A handler of the same shape as `handler` that only refuses the call."""

    async def refuse(_request, context: grpc.aio.ServicerContext) -> None:
        await context.abort(code, message)

    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(refuse)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(refuse)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(refuse)
    return grpc.unary_unary_rpc_method_handler(refuse)


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):
    def __init__(
        self,
        tokens: AccessTokens | Sequence[str] | Callable[[], AccessTokens],
        *,
        exempt_prefixes: Sequence[str] = UNAUTHENTICATED_PREFIXES,
        self_authenticating: frozenset[str] = frozenset(),
    ) -> None:
        """`tokens`: a plain sequence is write tokens; `self_authenticating`: methods whose
        handler checks the caller itself."""
        if isinstance(tokens, AccessTokens) or callable(tokens):
            self._tokens = tokens
        else:
            self._tokens = AccessTokens(write=tuple(tokens))
        if isinstance(self._tokens, AccessTokens) and not self._tokens.write:
            raise ValueError("at least one accepted write token is required")
        self._exempt = tuple(exempt_prefixes)
        self._self_authenticating = self_authenticating

    def _accepted(self) -> AccessTokens:
        return self._tokens() if callable(self._tokens) else self._tokens

    async def intercept_service(self, continuation, handler_call_details):
        method = handler_call_details.method
        if method.startswith(self._exempt) or method in self._self_authenticating:
            return await continuation(handler_call_details)
        header = None
        for key, value in handler_call_details.invocation_metadata or ():
            if key == "authorization":
                header = value
                break
        token = bearer_token(header if isinstance(header, str) else None)
        role = self._accepted().role_of(token)
        if role is Role.WRITE or (role is Role.READ and method not in WRITE_METHODS):
            return await continuation(handler_call_details)
        if role is Role.READ:
            code, message = grpc.StatusCode.PERMISSION_DENIED, f"a read-only token cannot call {method} (it writes)"
        else:
            reason = "missing bearer token" if token is None else "token not accepted"
            code, message = grpc.StatusCode.UNAUTHENTICATED, f"{reason} (send 'authorization: Bearer <token>')"
        log.warning("refused %s: %s", method, message)
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        return _denied_handler(handler, code, message)

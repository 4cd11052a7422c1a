"""The gRPC side of bearer-token authentication (`authorization: Bearer ...`).

Every call must carry a token `aggregator.auth` accepts, except the standard
health service, which Kubernetes probes call without credentials.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import grpc

from aggregator.auth import bearer_token, token_matches

__all__ = ["UNAUTHENTICATED_PREFIXES", "BearerTokenInterceptor"]

log = logging.getLogger(__name__)

UNAUTHENTICATED_PREFIXES = ("/grpc.health.v1.Health/",)


def _denied_handler(handler: grpc.RpcMethodHandler, message: str) -> grpc.RpcMethodHandler:
    """A handler of the same shape as `handler` that only refuses the call."""

    async def refuse(_request, context: grpc.aio.ServicerContext) -> None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(refuse)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(refuse)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(refuse)
    return grpc.unary_unary_rpc_method_handler(refuse)


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):
    def __init__(
        self, tokens: Sequence[str], *, exempt_prefixes: Sequence[str] = UNAUTHENTICATED_PREFIXES
    ) -> None:
        if not tokens:
            raise ValueError("at least one accepted token is required")
        self._tokens = tuple(tokens)
        self._exempt = tuple(exempt_prefixes)

    async def intercept_service(self, continuation, handler_call_details):
        method = handler_call_details.method
        if method.startswith(self._exempt):
            return await continuation(handler_call_details)
        header = None
        for key, value in handler_call_details.invocation_metadata or ():
            if key == "authorization":
                header = value
                break
        token = bearer_token(header if isinstance(header, str) else None)
        if token is not None and token_matches(token, self._tokens):
            return await continuation(handler_call_details)
        reason = "missing bearer token" if token is None else "token not accepted"
        log.warning("refused %s: %s", method, reason)
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        return _denied_handler(handler, f"{reason} (send 'authorization: Bearer <token>')")

"""What the HTTP API accepts, and for how long: body sizes, slow bodies, idle and half-open connections.

Every limit here is documented in docs/limits.md.

- Bodies: `BodyLimits` (ASGI middleware) gives each route its size limit. A
  declared `Content-Length` over it is answered 413 before anything is read;
  a body sent without one (chunked) is counted as it arrives and refused the
  moment it passes the limit. A body that does not arrive within
  `BODY_TIMEOUT_S` is answered 408.
- Connections: `GuardedH11Protocol` (uvicorn's h11 protocol) closes a
  connection whose request head has not arrived within `HEADER_TIMEOUT_S`
  of connecting or of the previous response (idle and half-open clients),
  and, past `MAX_CONNECTIONS`, closes the longest-idle connection to make
  room, so held connections never lock out a probe. uvicorn's own
  keep-alive timeout and head size limit apply on top.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = [
    "BODY_TIMEOUT_S",
    "DEFAULT_BODY_BYTES",
    "HEADER_TIMEOUT_S",
    "KEEPALIVE_TIMEOUT_S",
    "LARGE_BODY_BYTES",
    "MAX_CONNECTIONS",
    "MAX_HEAD_BYTES",
    "BodyLimits",
    "GuardedH11Protocol",
    "aggregator_body_limit",
]

DEFAULT_BODY_BYTES = 1024 * 1024
# a cluster document of 5,000 nodes is ~5 MB as JSON; updates and pre-checks carry one
LARGE_BODY_BYTES = 16 * 1024 * 1024
BODY_TIMEOUT_S = 30.0
HEADER_TIMEOUT_S = 10.0
KEEPALIVE_TIMEOUT_S = 5
MAX_CONNECTIONS = 1000
MAX_HEAD_BYTES = 16 * 1024  # request line + headers

SCOPE_KEY = "aios.max_body_bytes"

_LARGE_PREFIXES = (("PATCH", "/clusters/update/"), ("POST", "/pre-check/"))


def aggregator_body_limit(method: str, path: str) -> int:
    """The aggregator's rule: cluster updates and pre-checks may carry a whole cluster document."""
    if any(method == m and path.startswith(prefix) for m, prefix in _LARGE_PREFIXES):
        return LARGE_BODY_BYTES
    return DEFAULT_BODY_BYTES


class BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body is over {limit} bytes")
        self.limit = limit


class BodyTooSlow(Exception):
    def __init__(self, timeout_s: float) -> None:
        super().__init__(f"the request body did not arrive within {timeout_s:g} s")


def _failure_body(message: str) -> bytes:
    return json.dumps({"success": False, "message": message}).encode()


class BodyLimits:
    """ASGI middleware: per-route body size limit (checked before reading) and a body deadline.

    The limit is also left in the scope (`SCOPE_KEY`) for `read_json_body`;
    an over-long or too-slow body read by a route raises `BodyTooLarge` /
    `BodyTooSlow` out of `receive`, which the app's error handlers answer
    with 413 / 408 (`aggregator.web.app.install_error_handlers`).
    """

    def __init__(self, app: Any, limit_for: Callable[[str, str], int] = aggregator_body_limit,
                 timeout_s: float = BODY_TIMEOUT_S) -> None:
        self.app = app
        self.limit_for = limit_for
        self.timeout_s = timeout_s

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["method"], scope["path"])
        scope[SCOPE_KEY] = limit
        declared = next((v for k, v in scope.get("headers", ()) if k == b"content-length"), None)
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            problem = (f"the request body is over {limit} bytes" if declared.isdigit()
                       else "Content-Length is not a number")
            await self._answer(send, 413 if declared.isdigit() else 400, problem)
            return
        deadline = time.monotonic() + self.timeout_s
        received = 0

        async def limited_receive() -> dict:
            nonlocal received
            remaining = deadline - time.monotonic()
            try:
                message = await asyncio.wait_for(receive(), max(remaining, 0.001))
            except asyncio.TimeoutError:
                raise BodyTooSlow(self.timeout_s) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, limited_receive, send)

    @staticmethod
    async def _answer(send: Callable, status: int, message: str) -> None:
        body = _failure_body(message)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for the request head and a connection cap.

    uvicorn times a connection out only after a response (keep-alive): one
    that connects and sends nothing, or half a request head, is kept until the
    client goes. Here the head must be complete within `HEADER_TIMEOUT_S`.
    """

    header_timeout_s = HEADER_TIMEOUT_S
    max_connections = MAX_CONNECTIONS

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._head_deadline: asyncio.TimerHandle | None = None
        self._idle_since = time.monotonic()
        self._arm_head_deadline()
        if len(self.connections) > self.max_connections:
            self._evict_one_idle()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._busy() and self._head_deadline is not None:  # a whole request head arrived
            self._head_deadline.cancel()
            self._head_deadline = None

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._idle_since = time.monotonic()
        if not self.transport.is_closing():
            self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None
        super().connection_lost(exc)

    def _arm_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
        self._head_deadline = self.loop.call_later(self.header_timeout_s, self._head_timed_out)

    def _head_timed_out(self) -> None:
        self._head_deadline = None
        if not self._busy():
            self.transport.close()

    def _busy(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _evict_one_idle(self) -> None:
        idle = [c for c in self.connections if c is not self and isinstance(c, GuardedH11Protocol) and not c._busy()]
        if idle:
            oldest = min(idle, key=lambda c: c._idle_since)
            oldest.transport.close()

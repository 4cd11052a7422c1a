"""What every HTTP app of the aggregator shares (the API and the policy sidecar).

`ApiError` and the `{"success": false, "message": ...}` answers for it, for
validation errors, unknown paths, over-long or too-slow bodies and a busy
work lane (`install_error_handlers`); an unexpected error answers 500 naming
no internals (the log has them, under a reference the answer gives). The
bearer token rule (`require_token`: every request but `OPEN_PATHS`, a read
token for reads only); size-limited strict JSON bodies (`read_json_body`: the
route's limit from `web/limits.BodyLimits`, large bodies parsed in a thread);
answers rendered as strict JSON (`json_response`, to call in the work lane for
large ones); the app's work lane (`work_lane`). Imports nothing of the
aggregator above `auth`, `strict_json` and its own `web` siblings, so any
package may serve an app with it.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from aggregator import strict_json
from aggregator.auth import AccessTokens, Role, bearer_token
from aggregator.web.json_body import BodyError, parse_json_body
from aggregator.web.lanes import LaneBusy, WorkLane
from aggregator.web.limits import DEFAULT_BODY_BYTES, SCOPE_KEY, BodyTooLarge, BodyTooSlow

__all__ = [
    "MAX_BODY_BYTES",
    "OPEN_PATHS",
    "READ_METHODS",
    "ApiError",
    "Tokens",
    "access_tokens",
    "install_error_handlers",
    "json_response",
    "read_json_body",
    "require_token",
    "work_lane",
]

log = logging.getLogger(__name__)

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# what a probe or a scraper reads without a token: health, metrics, and the API's own description
OPEN_PATHS = frozenset({"/healthz", "/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})

Tokens = AccessTokens | Sequence[str] | Callable[[], AccessTokens | Sequence[str]]


class ApiError(Exception):
    """Raise from a route to answer `{"success": false, "message": message}` with `status`."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def _failure(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"success": False, "message": message}, status_code=status, headers=headers)


def access_tokens(tokens: Tokens) -> AccessTokens:
    """`tokens` as `AccessTokens`: a plain sequence is write tokens (read at each call when callable)."""
    value = tokens() if callable(tokens) else tokens
    return value if isinstance(value, AccessTokens) else AccessTokens(write=tuple(value))


def require_token(tokens: Tokens, *, open_paths: frozenset[str] = OPEN_PATHS) -> Callable[[Request], None]:
    """A FastAPI dependency: every request needs a valid bearer token, except on `open_paths`.

    A read token (`AIOS_READ_TOKEN`) is enough for `READ_METHODS`; anything else needs a
    write token, and a read token there is 403 (known, but not allowed), not 401.
    """

    def check(request: Request) -> None:
        if request.url.path in open_paths:
            return
        accepted = access_tokens(tokens)
        challenge = {"WWW-Authenticate": "Bearer"}
        if not accepted:
            raise ApiError(
                401, "this server has no token, so it refuses this request (set AIOS_TOKEN or AIOS_TOKEN_FILE)", challenge
            )
        presented = bearer_token(request.headers.get("authorization"))
        if presented is None:
            raise ApiError(401, "this request needs 'Authorization: Bearer <token>'", challenge)
        role = accepted.role_of(presented)
        if role is None:
            raise ApiError(401, "the bearer token is not valid", challenge)
        if role is Role.READ and request.method not in READ_METHODS:
            raise ApiError(403, f"a read-only token cannot {request.method} {request.url.path}: "
                                "this needs the write token (AIOS_TOKEN)")

    return check


MAX_BODY_BYTES = DEFAULT_BODY_BYTES  # a route's default; `web/limits.py` has each route's own
# bodies up to this size are parsed on the event loop (well under a millisecond); larger ones in a thread
_INLINE_PARSE_BYTES = 64 * 1024


async def read_json_body(request: Request, *, max_bytes: int | None = None) -> Any:
    """The request's JSON object, size-limited; `ApiError` (400/413) says what is wrong.

    `max_bytes`: the route's limit (default: what `BodyLimits` set for the route, else 1 MiB).
    """
    limit = max_bytes or request.scope.get(SCOPE_KEY) or MAX_BODY_BYTES
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"the request body is over {limit} bytes")
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > limit:
            raise ApiError(413, f"the request body is over {limit} bytes")
    try:
        if len(raw) <= _INLINE_PARSE_BYTES:
            return parse_json_body(bytes(raw))
        return await asyncio.to_thread(parse_json_body, bytes(raw))
    except BodyError as exc:
        raise ApiError(400, str(exc)) from exc


def json_response(payload: Any, status_code: int = 200) -> Response:
    """`payload` rendered as strict JSON (call it in a worker thread for large answers)."""
    try:
        body = strict_json.dumps(payload, sort_keys=False)
    except strict_json.StrictJsonError as exc:
        log.error("an answer is not strict JSON (%s); refusing to send it", exc)
        body = strict_json.dumps({"success": False, "message": f"the answer is not valid JSON at {exc.path}"})
        status_code = 500
    return Response(body.encode("utf-8"), status_code=status_code, media_type="application/json")


_FALLBACK_LANE = WorkLane("http")


def work_lane(request: Request) -> WorkLane:
    """The app's lane for slow work (`create_app` sets one); a shared fallback for other apps."""
    return getattr(request.app.state, "work_lane", None) or _FALLBACK_LANE


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()))
        parts.append(f"{where}: {error.get('msg', 'invalid')}" if where else str(error.get("msg")))
    return "invalid request: " + "; ".join(parts)


def install_error_handlers(app: FastAPI) -> None:
    """Errors, validation errors and unknown paths answer `{"success": false, "message": ...}`."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _failure(exc.status, exc.message, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such endpoint: {request.method} {request.url.path}"
        elif exc.status_code == 405:
            message = f"method {request.method} is not allowed on {request.url.path}"
        return _failure(exc.status_code, message, getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _failure(422, _validation_message(exc))

    @app.exception_handler(BodyTooLarge)
    async def _too_large(request: Request, exc: BodyTooLarge) -> JSONResponse:
        return _failure(413, str(exc), {"Connection": "close"})

    @app.exception_handler(BodyTooSlow)
    async def _too_slow(request: Request, exc: BodyTooSlow) -> JSONResponse:
        return _failure(408, str(exc), {"Connection": "close"})

    @app.exception_handler(LaneBusy)
    async def _busy(request: Request, exc: LaneBusy) -> JSONResponse:
        return _failure(503, str(exc), {"Retry-After": str(exc.retry_after_s)})

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # the body names no internals; the log has the traceback under the same reference
        reference = secrets.token_hex(4)
        log.exception("HTTP %s %s failed (reference %s)", request.method, request.url.path, reference)
        return _failure(500, f"internal error (reference {reference} in the aggregator's log)")

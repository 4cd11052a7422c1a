"""What every HTTP app of the aggregator shares (the API and the policy sidecar).

`ApiError` and the `{"success": false, "message": ...}` answers for it, for
validation errors and for unknown paths (`install_error_handlers`); the bearer
token rule (`require_token`: every request but `OPEN_PATHS`, a read token for reads only); size-limited JSON
bodies (`read_json_body`). Imports nothing of the aggregator above `auth` and
`web.json_body`, so any package may serve an app with it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from aggregator.auth import AccessTokens, Role, bearer_token
from aggregator.web.json_body import BodyError, parse_json_body

__all__ = [
    "MAX_BODY_BYTES",
    "OPEN_PATHS",
    "READ_METHODS",
    "ApiError",
    "Tokens",
    "access_tokens",
    "install_error_handlers",
    "read_json_body",
    "require_token",
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


MAX_BODY_BYTES = 16 * 1024 * 1024


async def read_json_body(request: Request, *, max_bytes: int = MAX_BODY_BYTES) -> Any:
    """The request's JSON object, size-limited; `ApiError` (400/413) says what is wrong."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise ApiError(413, f"the request body is over {max_bytes} bytes")
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > max_bytes:
            raise ApiError(413, f"the request body is over {max_bytes} bytes")
    try:
        return parse_json_body(bytes(raw))
    except BodyError as exc:
        raise ApiError(400, str(exc)) from exc


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

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("HTTP %s %s failed", request.method, request.url.path)
        return _failure(500, f"internal error: {type(exc).__name__}: {exc}")

"""The aggregator's HTTP API: the FastAPI app factory, the token rule, and serving it.

Every writing request (POST, PUT, PATCH, DELETE), on these routes and on
every router other components register, needs `Authorization: Bearer <token>`
with one of the aggregator's tokens (`aggregator/auth.py`); reads are open.
Errors, validation errors and unknown paths answer `{"success": false, "message": ...}`;
an unexpected error answers 500 naming no internals (the log has them).

Bodies are size-limited before they are read (`aggregator/web/limits.py`) and
parsed as strict JSON (`aggregator/web/json_body.py`), large ones in a thread.
Work that waits on a policy or builds large answers runs in the app's
`WorkLane` (`app.state.work_lane`), never in the event loop or the request
thread pool, so `/healthz` and gRPC health stay quick under load; answers are
rendered to strict JSON in that lane too (`json_response`).

Routes here: the pre-check map (`GET /pre-check-policies`,
`POST /pre-check-policies/update`), a generic pre-check
(`POST /pre-check/{action}`, body = the action's input), and cluster data
(`GET /clusters/read/{id}`, `PATCH /clusters/update/{id}`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from aggregator import strict_json
from aggregator.auth import bearer_token, token_matches
from aggregator.cluster.patch import ClusterPatchError, InvalidClusterDocument
from aggregator.cluster.store import ClusterStore, UnknownCluster
from aggregator.cluster.update import ClusterUpdater, PolicyBrokeDocument, UpdateConflict, UpdateRefused
from aggregator.governance.prechecks import Governance, GovernanceError
from aggregator.web.json_body import BodyError, parse_json_body
from aggregator.web.lanes import LaneBusy, WorkLane
from aggregator.web.limits import (
    DEFAULT_BODY_BYTES,
    KEEPALIVE_TIMEOUT_S,
    MAX_HEAD_BYTES,
    SCOPE_KEY,
    BodyLimits,
    BodyTooLarge,
    BodyTooSlow,
    GuardedH11Protocol,
    aggregator_body_limit,
)

__all__ = [
    "WRITE_METHODS",
    "ApiError",
    "HttpServer",
    "create_app",
    "install_error_handlers",
    "json_response",
    "read_json_body",
    "require_token",
    "require_token_for_writes",
    "serve_http",
    "start_http_in_thread",
    "work_lane",
]

log = logging.getLogger(__name__)

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

Tokens = Sequence[str] | Callable[[], Sequence[str]]


class ApiError(Exception):
    """Raise from a route to answer `{"success": false, "message": message}` with `status`."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def _failure(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"success": False, "message": message}, status_code=status, headers=headers)


def require_token(
    tokens: Tokens, *, methods: frozenset[str] | None = None, open_paths: frozenset[str] = frozenset()
) -> Callable[[Request], None]:
    """A FastAPI dependency: requests need a valid bearer token.

    `methods`: only these methods need it (None: all); `open_paths`: paths that never do.
    """

    def check(request: Request) -> None:
        if methods is not None and request.method not in methods:
            return
        if request.url.path in open_paths:
            return
        accepted = tokens() if callable(tokens) else tokens
        challenge = {"WWW-Authenticate": "Bearer"}
        if not accepted:
            raise ApiError(
                401, "this server has no token, so it refuses this request (set AIOS_TOKEN or AIOS_TOKEN_FILE)", challenge
            )
        presented = bearer_token(request.headers.get("authorization"))
        if presented is None:
            raise ApiError(401, "this request needs 'Authorization: Bearer <token>'", challenge)
        if not token_matches(presented, accepted):
            raise ApiError(401, "the bearer token is not valid", challenge)

    return check


def require_token_for_writes(tokens: Tokens) -> Callable[[Request], None]:
    """A FastAPI dependency: writing requests need a valid bearer token; reads are open."""
    return require_token(tokens, methods=WRITE_METHODS)


# bodies up to this size are parsed on the event loop (well under a millisecond); larger ones in a thread
_INLINE_PARSE_BYTES = 64 * 1024


async def read_json_body(request: Request, *, max_bytes: int | None = None) -> Any:
    """The request's JSON object, size-limited; `ApiError` (400/413) says what is wrong.

    `max_bytes`: the route's limit (default: what `BodyLimits` set for the route, else 1 MiB).
    """
    limit = max_bytes or request.scope.get(SCOPE_KEY) or DEFAULT_BODY_BYTES
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


# the routes read their bodies themselves (clear JSON errors); this documents them in OpenAPI
_JSON_OBJECT_BODY = {
    "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}}
}


def _governance_router(governance: Governance) -> APIRouter:
    router = APIRouter()

    @router.get("/pre-check-policies")
    def read_policy_map() -> dict:
        return {"success": True, "data": governance.policy_map()}

    @router.post("/pre-check-policies/update", openapi_extra=_JSON_OBJECT_BODY)
    async def update_policy_map(request: Request) -> Response:
        changes = await read_json_body(request)

        def update() -> Response:
            try:
                current = governance.update(changes)
            except GovernanceError as exc:
                raise ApiError(400, str(exc)) from exc
            return json_response({"success": True, "data": current})

        return await work_lane(request).run(update)

    @router.post("/pre-check/{action}", openapi_extra=_JSON_OBJECT_BODY)
    async def run_precheck(action: str, request: Request) -> Response:
        input_data = await read_json_body(request)

        def precheck() -> Response:
            try:
                verdict = governance.precheck(action, input_data)
            except GovernanceError as exc:
                raise ApiError(400, str(exc)) from exc
            return json_response({
                "success": True,
                "data": {"allowed": verdict.allowed, "input_data": verdict.input_data, "policy_uri": verdict.policy_uri},
            })

        return await work_lane(request).run(precheck)

    return router


def _cluster_router(store: ClusterStore, updater: ClusterUpdater) -> APIRouter:
    router = APIRouter()

    @router.get("/clusters/read/{cluster_id}")
    async def read_cluster(cluster_id: str, request: Request) -> Response:
        def read() -> Response:
            try:
                return json_response({"success": True, "data": store.get(cluster_id)})
            except UnknownCluster as exc:
                raise ApiError(404, f"cluster {cluster_id!r} is not known here") from exc

        return await work_lane(request).run(read)

    @router.patch("/clusters/update/{cluster_id}", openapi_extra=_JSON_OBJECT_BODY)
    async def update_cluster(cluster_id: str, request: Request) -> Response:
        changes = await read_json_body(request)

        def update() -> Response:
            try:
                document = updater.update(cluster_id, changes)
            except UnknownCluster as exc:
                raise ApiError(404, f"cluster {cluster_id!r} is not known here") from exc
            except (ClusterPatchError, InvalidClusterDocument) as exc:
                raise ApiError(400, str(exc)) from exc
            except UpdateRefused as exc:
                raise ApiError(403, f"update_cluster pre-check refused the update: {exc.reason}") from exc
            except PolicyBrokeDocument as exc:
                raise ApiError(403, f"update refused: {exc}") from exc
            except UpdateConflict as exc:
                raise ApiError(409, str(exc)) from exc
            return json_response({"success": True, "data": document})

        return await work_lane(request).run(update)

    return router


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


def create_app(
    *,
    governance: Governance,
    cluster_store: ClusterStore,
    tokens: Tokens,
    routers: Sequence[APIRouter] = (),
    title: str = "AIOS aggregator",
    lane: WorkLane | None = None,
    body_limit_for: Callable[[str, str], int] = aggregator_body_limit,
) -> FastAPI:
    """The aggregator's app. `routers` are other components' routes; the token rule covers them too.

    `lane`: where slow work runs (the caller closes it; default: one of the app's own).
    """
    app = FastAPI(title=title, dependencies=[Depends(require_token_for_writes(tokens))])
    app.state.governance = governance
    app.state.cluster_store = cluster_store
    app.state.work_lane = lane or WorkLane("http")
    app.add_middleware(BodyLimits, limit_for=body_limit_for)

    install_error_handlers(app)

    app.include_router(_governance_router(governance))
    app.include_router(_cluster_router(cluster_store, ClusterUpdater(cluster_store, governance)))
    for router in routers:
        app.include_router(router)
    return app


# --- serving -----------------------------------------------------------------


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its signal handlers: the aggregator's process owns SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self):
        yield


class HttpServer:
    """An app served by uvicorn inside the caller's asyncio loop."""

    def __init__(self, app: FastAPI, host: str, port: int) -> None:
        # idle and half-open connections are timed out and capped (aggregator/web/limits.py)
        config = uvicorn.Config(
            app, host=host, port=port, log_level="warning", access_log=False, lifespan="on",
            http=GuardedH11Protocol, timeout_keep_alive=KEEPALIVE_TIMEOUT_S,
            h11_max_incomplete_event_size=MAX_HEAD_BYTES,
        )
        self._server = _EmbeddedServer(config)
        self._task: asyncio.Task | None = None
        self.port: int | None = None

    async def start(self) -> int:
        """Listen; returns the bound port (useful with port 0)."""
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises the reason it could not start
                raise OSError("the HTTP server stopped before it started")
            await asyncio.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self.port

    async def wait(self) -> None:
        assert self._task is not None
        await asyncio.shield(self._task)

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task is not None:
            await self._task


async def serve_http(
    app: FastAPI, host: str, port: int, *, on_started: Callable[[int], None] | None = None
) -> None:
    """Serve until cancelled (then shut down cleanly); for running beside grpc.aio."""
    server = HttpServer(app, host, port)
    bound = await server.start()
    log.info("HTTP API listening on %s:%d", host, bound)
    if on_started is not None:
        on_started(bound)
    try:
        await server.wait()
    except asyncio.CancelledError:
        await server.stop()
        raise


@dataclass
class ThreadedHttpServer:
    port: int
    _loop: asyncio.AbstractEventLoop
    _server: HttpServer
    _thread: threading.Thread

    def stop(self, timeout_s: float = 10.0) -> None:
        asyncio.run_coroutine_threadsafe(self._server.stop(), self._loop).result(timeout_s)
        self._thread.join(timeout_s)


def start_http_in_thread(app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> ThreadedHttpServer:
    """Serve in a thread with its own loop (tools and tests); `.stop()` when done."""
    loop = asyncio.new_event_loop()
    server = HttpServer(app, host, port)
    started = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)

        async def main() -> None:
            try:
                await server.start()
            except BaseException as exc:  # noqa: BLE001 - handed to the starting thread
                failure.append(exc)
                started.set()
                return
            started.set()
            await server.wait()

        try:
            loop.run_until_complete(main())
        finally:
            loop.close()

    thread = threading.Thread(target=run, name=f"http-{host}:{port}", daemon=True)
    thread.start()
    if not started.wait(30.0):
        raise TimeoutError("the HTTP server did not start within 30 s")
    if failure:
        raise failure[0]
    return ThreadedHttpServer(server.port, loop, server, thread)

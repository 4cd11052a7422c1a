"""The aggregator's HTTP API: the FastAPI app factory, the token rule, and serving it.

Every writing request (POST, PUT, PATCH, DELETE), on these routes and on
every router other components register, needs `Authorization: Bearer <token>`
with one of the aggregator's tokens (`aggregator/auth.py`); reads are open.
Errors, validation errors and unknown paths answer `{"success": false, "message": ...}`.

Routes here: the pre-check map (`GET /pre-check-policies`,
`POST /pre-check-policies/update`), a generic pre-check
(`POST /pre-check/{action}`, body = the action's input), and cluster data
(`GET /clusters/read/{id}`, `PATCH /clusters/update/{id}`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from aggregator.auth import bearer_token, token_matches
from aggregator.cluster.patch import ClusterPatchError, InvalidClusterDocument
from aggregator.cluster.store import ClusterStore, UnknownCluster
from aggregator.cluster.update import ClusterUpdater, PolicyBrokeDocument, UpdateConflict, UpdateRefused
from aggregator.governance.prechecks import Governance, GovernanceError
from aggregator.web.json_body import BodyError, parse_json_body

__all__ = [
    "WRITE_METHODS",
    "ApiError",
    "HttpServer",
    "create_app",
    "install_error_handlers",
    "read_json_body",
    "require_token",
    "require_token_for_writes",
    "serve_http",
    "start_http_in_thread",
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
    async def update_policy_map(request: Request) -> dict:
        changes = await read_json_body(request)
        try:
            current = await run_in_threadpool(governance.update, changes)
        except GovernanceError as exc:
            raise ApiError(400, str(exc)) from exc
        return {"success": True, "data": current}

    @router.post("/pre-check/{action}", openapi_extra=_JSON_OBJECT_BODY)
    async def run_precheck(action: str, request: Request) -> dict:
        input_data = await read_json_body(request)
        try:
            verdict = await run_in_threadpool(governance.precheck, action, input_data)
        except GovernanceError as exc:
            raise ApiError(400, str(exc)) from exc
        return {
            "success": True,
            "data": {"allowed": verdict.allowed, "input_data": verdict.input_data, "policy_uri": verdict.policy_uri},
        }

    return router


def _cluster_router(store: ClusterStore, updater: ClusterUpdater) -> APIRouter:
    router = APIRouter()

    @router.get("/clusters/read/{cluster_id}")
    def read_cluster(cluster_id: str) -> dict:
        try:
            return {"success": True, "data": store.get(cluster_id)}
        except UnknownCluster as exc:
            raise ApiError(404, f"cluster {cluster_id!r} is not known here") from exc

    @router.patch("/clusters/update/{cluster_id}", openapi_extra=_JSON_OBJECT_BODY)
    async def update_cluster(cluster_id: str, request: Request) -> dict:
        changes = await read_json_body(request)
        try:
            document = await run_in_threadpool(updater.update, cluster_id, changes)
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
        return {"success": True, "data": document}

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

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("HTTP %s %s failed", request.method, request.url.path)
        return _failure(500, f"internal error: {type(exc).__name__}: {exc}")


def create_app(
    *,
    governance: Governance,
    cluster_store: ClusterStore,
    tokens: Tokens,
    routers: Sequence[APIRouter] = (),
    title: str = "AIOS aggregator",
) -> FastAPI:
    """The aggregator's app. `routers` are other components' routes; the token rule covers them too."""
    app = FastAPI(title=title, dependencies=[Depends(require_token_for_writes(tokens))])
    app.state.governance = governance
    app.state.cluster_store = cluster_store

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
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="on")
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
    bound: list[int] = []

    def run() -> None:
        asyncio.set_event_loop(loop)

        async def main() -> None:
            try:
                bound.append(await server.start())
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
    return ThreadedHttpServer(bound[0], loop, server, thread)

"""`GET /healthz`: the readiness of the whole aggregator (the Deployment's readinessProbe).

No token (probes carry none), nothing secret in the answer. 200 with
`{"status": "ok", "checks": {...}}` only when every check passes, else 503
with `{"success": false, "message": "not ready: <failing checks>", "checks": {...}}`.
A check that raises, or does not answer within `timeout_s`, counts as failing.

Served twice, from the same checks:
- `healthz_router`: on the API port. The route is async, its checks run in
  a thread of their own (never the request thread pool or the work lane),
  and probes arriving while the checks run share their result.
- `HealthListener`: on a port of its own (`--health-port`), answered by a
  thread and event loop of their own with a few lines of HTTP/1.1, so even
  an API port flooded with requests (each of which costs the API's event
  loop some work) cannot make a probe wait behind them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from aggregator.web.lanes import SharedCall

__all__ = ["HealthChecks", "HealthListener", "healthz_router", "run_checks"]

log = logging.getLogger(__name__)

_HEAD_TIMEOUT_S = 5.0
_MAX_HEAD_BYTES = 8 * 1024


def run_checks(checks: Mapping[str, Callable[[], bool]]) -> dict[str, bool]:
    results = {}
    for name, check in checks.items():
        try:
            results[name] = bool(check())
        except Exception as e:  # noqa: BLE001 - a failing check is an answer, not an error
            log.warning("health check %s failed: %s", name, e)
            results[name] = False
    return results


class HealthChecks:
    """The checks, run in one thread of their own with a deadline; `answer()` gives (status, body)."""

    def __init__(self, checks: Mapping[str, Callable[[], bool]], *, timeout_s: float = 2.0) -> None:
        self.checks = dict(checks)
        self.timeout_s = timeout_s
        self._executor: ThreadPoolExecutor | None = None
        self._shared: dict[asyncio.AbstractEventLoop, SharedCall] = {}  # one per event loop serving probes
        self._lock = threading.Lock()

    async def results(self) -> dict[str, bool]:
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="healthz")
            shared = self._shared.setdefault(loop, SharedCall())
            executor = self._executor
        return await shared.run(lambda: self._run(loop, executor))

    async def _run(self, loop: asyncio.AbstractEventLoop, executor: ThreadPoolExecutor) -> dict[str, bool]:
        try:
            return await asyncio.wait_for(loop.run_in_executor(executor, run_checks, self.checks), self.timeout_s)
        except asyncio.TimeoutError:
            log.warning("health checks did not answer within %g s", self.timeout_s)
            return {name: False for name in self.checks}

    async def answer(self) -> tuple[int, dict]:
        results = await self.results()
        failing = [name for name, ok in results.items() if not ok]
        if failing:
            return 503, {"success": False, "message": "not ready: " + ", ".join(failing), "checks": results}
        return 200, {"status": "ok", "checks": results}

    def close(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)


def healthz_router(checks: Mapping[str, Callable[[], bool]] | HealthChecks, *, timeout_s: float = 2.0) -> APIRouter:
    health = checks if isinstance(checks, HealthChecks) else HealthChecks(checks, timeout_s=timeout_s)
    router = APIRouter()

    @router.get("/healthz")
    async def healthz():
        status, body = await health.answer()
        return JSONResponse(body, status_code=status)

    return router


class HealthListener:
    """`GET /healthz` on its own port, thread and event loop; `start()` returns the bound port."""

    def __init__(self, health: HealthChecks, host: str, port: int) -> None:
        self.health = health
        self.host = host
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None

    def start(self, timeout_s: float = 10.0) -> int:
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = self._loop = asyncio.new_event_loop()
            try:
                self._server = loop.run_until_complete(asyncio.start_server(self._serve, self.host, self.port))
                self.port = self._server.sockets[0].getsockname()[1]
            except BaseException as e:  # noqa: BLE001 - handed to the starting thread
                failure.append(e)
                started.set()
                loop.close()
                return
            started.set()
            try:
                loop.run_forever()
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name=f"healthz-{self.host}:{self.port}", daemon=True)
        self._thread.start()
        if not started.wait(timeout_s):
            raise TimeoutError("the health listener did not start")
        if failure:
            raise failure[0]
        return self.port

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _HEAD_TIMEOUT_S)
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            writer.close()
            return
        request_line = head.split(b"\r\n", 1)[0].split()
        if len(head) > _MAX_HEAD_BYTES or len(request_line) != 3:
            status, body = 400, {"success": False, "message": "bad request"}
        elif request_line[0] != b"GET" or request_line[1].split(b"?")[0] != b"/healthz":
            status, body = 404, {"success": False, "message": "this port serves GET /healthz only"}
        else:
            status, body = await self.health.answer()
        payload = json.dumps(body).encode()
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 503: "Service Unavailable"}[status]
        writer.write(
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
            f"Connection: close\r\n\r\n".encode() + payload
        )
        try:
            await asyncio.wait_for(writer.drain(), _HEAD_TIMEOUT_S)
        except (asyncio.TimeoutError, OSError):
            pass
        writer.close()

    def close(self) -> None:
        loop, server = self._loop, self._server
        if loop is None or server is None or loop.is_closed():
            return

        async def shut() -> None:
            server.close()
            await server.wait_closed()

        try:
            asyncio.run_coroutine_threadsafe(shut(), loop).result(5.0)
        except Exception:  # noqa: BLE001 - stopping anyway
            log.warning("the health listener did not close cleanly")
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(5.0)

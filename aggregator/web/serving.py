"""Serving a FastAPI app with uvicorn: in the caller's asyncio loop, or in a thread of its own.

`HttpServer` (explicit `start()`/`stop()` inside a running loop), `serve_http`
(until cancelled, beside grpc.aio), `start_http_in_thread` (tools and tests).
uvicorn's signal handlers are off: the process that serves owns SIGTERM/SIGINT.
Idle and half-open connections are timed out and capped, and request heads
size-limited (`web/limits.py`: `GuardedH11Protocol`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI

from aggregator.web.limits import KEEPALIVE_TIMEOUT_S, MAX_HEAD_BYTES, GuardedH11Protocol

__all__ = ["HttpServer", "ThreadedHttpServer", "serve_http", "start_http_in_thread"]

log = logging.getLogger(__name__)


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its signal handlers: the aggregator's process owns SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class HttpServer:
    """An app served by uvicorn inside the caller's asyncio loop."""

    def __init__(self, app: FastAPI, host: str, port: int) -> None:
        config = uvicorn.Config(
            app, host=host, port=port, log_level="warning", access_log=False, lifespan="on",
            http=GuardedH11Protocol, timeout_keep_alive=KEEPALIVE_TIMEOUT_S,
            h11_max_incomplete_event_size=MAX_HEAD_BYTES,
        )
        self._server = _EmbeddedServer(config)
        self._task: asyncio.Task[None] | None = None
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


def start_http_in_thread(
    app: FastAPI, host: str = "127.0.0.1", port: int = 0, *, on_started: Callable[[int], None] | None = None
) -> ThreadedHttpServer:
    """Serve in a thread with its own loop; `.stop()` when done.

    `on_started(port)` runs in that thread as soon as it listens (before this returns).
    """
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
                if on_started is not None:
                    on_started(bound[0])
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

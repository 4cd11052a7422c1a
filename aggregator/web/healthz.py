"""`GET /healthz`: the readiness of the whole aggregator (the Deployment's readinessProbe).

No token (probes carry none), nothing secret in the answer. 200 with
`{"status": "ok", "checks": {...}}` only when every check passes, else 503
with `{"success": false, "message": "not ready: <failing checks>", "checks": {...}}`.
A check that raises, or does not answer within `timeout_s`, counts as failing.

Independent of everything else the app does: the route is async and its
checks run in a thread of their own (never the request thread pool or the
work lane), and probes arriving while the checks run share their result, so
a crowd of policy calls or of probes cannot make a probe wait.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from aggregator.web.lanes import SharedCall

__all__ = ["healthz_router", "run_checks"]

log = logging.getLogger(__name__)


def run_checks(checks: Mapping[str, Callable[[], bool]]) -> dict[str, bool]:
    results = {}
    for name, check in checks.items():
        try:
            results[name] = bool(check())
        except Exception as e:  # noqa: BLE001 - a failing check is an answer, not an error
            log.warning("health check %s failed: %s", name, e)
            results[name] = False
    return results


def healthz_router(checks: Mapping[str, Callable[[], bool]], *, timeout_s: float = 2.0) -> APIRouter:
    router = APIRouter()
    shared = SharedCall()
    executor: list[ThreadPoolExecutor] = []  # one thread, made on the first probe

    async def results() -> dict[str, bool]:
        if not executor:
            executor.append(ThreadPoolExecutor(1, thread_name_prefix="healthz"))
        future = asyncio.get_running_loop().run_in_executor(executor[0], run_checks, checks)
        try:
            return await asyncio.wait_for(future, timeout_s)
        except asyncio.TimeoutError:
            log.warning("health checks did not answer within %g s", timeout_s)
            return {name: False for name in checks}

    @router.get("/healthz")
    async def healthz():
        answer = await shared.run(results)
        failing = [name for name, ok in answer.items() if not ok]
        if failing:
            return JSONResponse(
                {"success": False, "message": "not ready: " + ", ".join(failing), "checks": answer},
                status_code=503,
            )
        return JSONResponse({"status": "ok", "checks": answer})

    return router

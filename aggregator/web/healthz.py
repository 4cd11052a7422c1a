"""`GET /healthz`: the readiness of the whole aggregator (the Deployment's readinessProbe).

No token (probes carry none), nothing secret in the answer. 200 with
`{"status": "ok", "checks": {...}}` only when every check passes, else 503
with `{"success": false, "message": "not ready: <failing checks>", "checks": {...}}`.
A check that raises counts as failing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from fastapi import APIRouter
from fastapi.responses import JSONResponse

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


def healthz_router(checks: Mapping[str, Callable[[], bool]]) -> APIRouter:
    router = APIRouter()

    @router.get("/healthz")
    def healthz():
        results = run_checks(checks)
        failing = [name for name, ok in results.items() if not ok]
        if failing:
            return JSONResponse(
                {"success": False, "message": "not ready: " + ", ".join(failing), "checks": results},
                status_code=503,
            )
        return {"status": "ok", "checks": results}

    return router

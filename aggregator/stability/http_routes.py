"""HTTP routes of the stability checker and the nodes service (docs/network-formats.md §5).

- `GET /check_stability`: runs a check now; 200 with the policy's answer, or
  500 `{"success": false, "message": ...}` carrying the policy's error.
- `POST /mgmt` (token required: it changes the policy's state): the policy's
  `management(mgmt_action, mgmt_data)` -> `{"success": true, "data": result}`.
- `GET /stability/verdicts?limit=N`: the stored history, newest first.
- `GET /nodes_status` and `GET /healthy_nodes`: from the agents' measurements.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from aggregator.stability.checker import StabilityChecker
from aggregator.stability.nodes_data import healthy_node_ids

__all__ = ["create_stability_router"]

log = logging.getLogger(__name__)

MGMT_SERVICE = "stability_checker"


def _error(status: int, message: str, **extra) -> JSONResponse:
    return JSONResponse({"success": False, "message": message, **extra}, status_code=status)


def create_stability_router(checker: StabilityChecker, *, require_token: Callable | None = None) -> APIRouter:
    """`require_token`: a FastAPI dependency refusing a request without a valid token, for an
    app that does not already guard every write (`aggregator.web.app.create_app` does)."""
    router = APIRouter()
    mgmt_dependencies = [Depends(require_token)] if require_token is not None else []

    @router.get("/check_stability")
    def check_stability():
        verdict = checker.check("request")
        body = verdict.to_json()
        if verdict.outcome == "error":
            return _error(500, f"stability policy {verdict.policy_uri} failed: {verdict.error}", **body)
        return {"success": True, **body}

    @router.get("/stability/verdicts")
    def verdicts(limit: int = 100, before_id: int | None = None):
        if not 1 <= limit <= 10000:
            return _error(400, "limit: expected 1..10000")
        return {"success": True, "verdicts": [v.to_json() for v in checker.history(limit, before_id)]}

    @router.post("/mgmt", dependencies=mgmt_dependencies)
    async def mgmt(request: Request):
        try:
            body = await request.json()
        except ValueError as e:
            return _error(400, f"request body: invalid JSON ({e})")
        problem = _mgmt_problem(body)
        if problem:
            return _error(400, problem)
        action, data = body["mgmt_action"], body.get("mgmt_data") or {}
        from starlette.concurrency import run_in_threadpool  # the policy call blocks

        try:
            result = await run_in_threadpool(checker.management, action, data)
        except Exception as e:  # noqa: BLE001 - a policy's management call may raise anything; answered as a 500
            reason = getattr(e, "reason", None) or str(e) or type(e).__name__
            log.warning("stability management %r failed: %s", action, reason)
            return _error(500, f"management action {action!r} failed: {reason}")
        return {"success": True, "data": result}

    @router.get("/nodes_status")
    def nodes_status():
        try:
            return {"success": True, "nodes_status": checker.nodes_data()}
        except Exception as e:  # the registry failing must not look like an empty cluster
            log.exception("building nodes_status failed")
            return _error(500, f"nodes status unavailable: {e}")

    @router.get("/healthy_nodes")
    def healthy_nodes():
        try:
            return {"success": True, "nodes": healthy_node_ids(checker.nodes_data())}
        except Exception as e:
            log.exception("building healthy_nodes failed")
            return _error(500, f"healthy nodes unavailable: {e}")

    return router


def _mgmt_problem(body) -> str | None:
    if not isinstance(body, dict):
        return "request body: expected a JSON object"
    if body.get("service") != MGMT_SERVICE:
        return f"service: expected {MGMT_SERVICE!r} (got {body.get('service')!r})"
    if body.get("block_id") not in (None, ""):
        return "block_id: expected \"\" for the stability checker"
    action = body.get("mgmt_action")
    if not isinstance(action, str) or not action:
        return "mgmt_action: expected a non-empty string"
    data = body.get("mgmt_data")
    if data is not None and not isinstance(data, dict):
        return "mgmt_data: expected an object"
    return None

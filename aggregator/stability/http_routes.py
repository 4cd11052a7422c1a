"""HTTP routes of the stability checker and the nodes service (docs/network-formats.md §5).

- `GET /check_stability`: runs a check now; 200 with the policy's answer, or
  500 `{"success": false, "message": ...}` carrying the policy's error. Calls
  that arrive while a check is running share that check's verdict (one
  evaluation, one verdict row), and the check runs in the app's work lane,
  so a crowd of callers holds neither the event loop nor the request threads.
- `POST /mgmt` (token required: it changes the policy's state): the policy's
  `management(mgmt_action, mgmt_data)` -> `{"success": true, "data": result}`;
  an error the policy itself raises (an unknown action, say) is 400 with the
  policy's own message; a policy that cannot run (crash, timeout) is 502.
- `GET /stability/verdicts?limit=N&before_id=M`: the stored history, newest first.
- `GET /nodes_status` and `GET /healthy_nodes`: from the agents' measurements
  (built in the lane too, shared by concurrent callers).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from aggregator.policies import PolicyError, PolicyRaised
from aggregator.stability.checker import ConfigError, StabilityChecker
from aggregator.stability.nodes_data import healthy_node_ids
from aggregator.web.base import ApiError, json_response, read_json_body, work_lane
from aggregator.web.lanes import SharedCall

__all__ = ["MAX_VERDICT_ID", "create_stability_router"]

log = logging.getLogger(__name__)

MGMT_SERVICE = "stability_checker"
MAX_VERDICT_ID = 2**63 - 1  # SQLite's largest integer
MGMT_BODY_BYTES = 256 * 1024
# the route reads its body itself (strict JSON, clear errors); this documents it in OpenAPI
_MGMT_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "type": "object",
    "required": ["service", "mgmt_action"],
    "properties": {
        "service": {"type": "string", "enum": ["stability_checker"]},
        "block_id": {"type": "string"},
        "mgmt_action": {"type": "string", "minLength": 1},
        "mgmt_data": {"type": "object"},
    },
}}}}}


def _error(status: int, message: str, **extra) -> JSONResponse:
    return JSONResponse({"success": False, "message": message, **extra}, status_code=status)


def create_stability_router(checker: StabilityChecker, *, require_token: Callable | None = None) -> APIRouter:
    """`require_token`: a FastAPI dependency refusing a request without a valid token, for an
    app that does not already guard every write (`aggregator.web.app.create_app` does)."""
    router = APIRouter()
    mgmt_dependencies = [Depends(require_token)] if require_token is not None else []
    check_call = SharedCall()
    nodes_call = SharedCall()

    def check_answer() -> Response:
        verdict = checker.check_shared("request")
        body = verdict.to_json()
        if verdict.outcome == "error":
            return json_response(
                {"success": False, "message": f"stability policy {verdict.policy_uri} failed: {verdict.error}", **body},
                status_code=500,
            )
        return json_response({"success": True, **body})

    @router.get("/check_stability")
    async def check_stability(request: Request) -> Response:
        lane = work_lane(request)
        return await check_call.run(lambda: lane.run(check_answer))

    @router.get("/stability/verdicts")
    async def verdicts(request: Request, limit: int = 100, before_id: int | None = None) -> Response:
        if not 1 <= limit <= 10000:
            return _error(400, "limit: expected 1..10000")
        if before_id is not None and not 1 <= before_id <= MAX_VERDICT_ID:
            return _error(400, f"before_id: expected 1..{MAX_VERDICT_ID}")
        return await work_lane(request).run(
            lambda: json_response({"success": True, "verdicts": [v.to_json() for v in checker.history(limit, before_id)]})
        )

    @router.post("/mgmt", dependencies=mgmt_dependencies, openapi_extra=_MGMT_BODY)
    async def mgmt(request: Request) -> Response:
        body = await read_json_body(request, max_bytes=MGMT_BODY_BYTES)
        problem = _mgmt_problem(body)
        if problem:
            return _error(400, problem)
        action, data = body["mgmt_action"], body.get("mgmt_data") or {}

        def manage() -> Response:
            try:
                result = checker.management(action, data)
            except PolicyRaised as e:  # the policy's own answer: its worker and state are kept
                log.info("stability management %r refused by the policy: %s", action, e.policy_message)
                return json_response({"success": False, "message": e.policy_message}, status_code=400)
            except ConfigError as e:
                raise ApiError(400, str(e)) from e
            except PolicyError as e:
                log.warning("stability management %r failed: %s", action, e.reason)
                raise ApiError(502, f"management action {action!r} failed: {e.reason}") from e
            return json_response({"success": True, "data": result})

        return await work_lane(request).run(manage)

    def nodes_data() -> list[dict]:
        return checker.nodes_data()

    async def shared_nodes_data(request: Request) -> list[dict]:
        lane = work_lane(request)
        try:
            return await nodes_call.run(lambda: lane.run(nodes_data))
        except Exception as e:  # the registry failing must not look like an empty cluster
            if isinstance(e, ApiError):
                raise
            log.exception("building nodes_data failed")
            raise ApiError(500, "nodes status unavailable (see the aggregator's log)") from e

    @router.get("/nodes_status")
    async def nodes_status(request: Request) -> Response:
        data = await shared_nodes_data(request)
        return await work_lane(request).run(lambda: json_response({"success": True, "nodes_status": data}))

    @router.get("/healthy_nodes")
    async def healthy_nodes(request: Request) -> Response:
        data = await shared_nodes_data(request)
        return await work_lane(request).run(lambda: json_response({"success": True, "nodes": healthy_node_ids(data)}))

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

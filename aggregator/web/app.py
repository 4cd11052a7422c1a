"""The aggregator's HTTP API: the FastAPI app factory and its own routes.

Every request, on these routes and on every router other components register,
needs `Authorization: Bearer <token>` (`aggregator/auth.py`, `web/base.require_token`),
except `OPEN_PATHS` (`/healthz`, `/metrics`, the OpenAPI document and its pages).
Reads (GET, HEAD) take a read token or a write token; everything else only a
write token (a read token there answers 403).
Errors, validation errors and unknown paths answer `{"success": false, "message": ...}`
(the shared pieces are in `web/base.py`; serving is `web/serving.py`).

Routes here: the pre-check map (`GET /pre-check-policies`,
`POST /pre-check-policies/update`), a generic pre-check
(`POST /pre-check/{action}`, body = the action's input), and cluster data
(`GET /clusters/read/{id}`, `PATCH /clusters/update/{id}`).
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import APIRouter, Depends, FastAPI, Request
from starlette.concurrency import run_in_threadpool

from aggregator.cluster.patch import ClusterPatchError, InvalidClusterDocument
from aggregator.cluster.store import ClusterStore, UnknownCluster
from aggregator.cluster.update import ClusterUpdater, PolicyBrokeDocument, UpdateConflict, UpdateRefused
from aggregator.governance.prechecks import Governance, GovernanceError
from aggregator.web.base import ApiError, Tokens, install_error_handlers, read_json_body, require_token

__all__ = ["create_app"]


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


def create_app(
    *,
    governance: Governance,
    cluster_store: ClusterStore,
    tokens: Tokens,
    routers: Sequence[APIRouter] = (),
    title: str = "AIOS aggregator",
) -> FastAPI:
    """The aggregator's app. `routers` are other components' routes; the token rule covers them too."""
    app = FastAPI(title=title, dependencies=[Depends(require_token(tokens))])
    app.state.governance = governance
    app.state.cluster_store = cluster_store

    install_error_handlers(app)

    app.include_router(_governance_router(governance))
    app.include_router(_cluster_router(cluster_store, ClusterUpdater(cluster_store, governance)))
    for router in routers:
        app.include_router(router)
    return app

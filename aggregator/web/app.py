"""The aggregator's HTTP API: the FastAPI app factory and its own routes.

Every request, on these routes and on every router other components register,
needs `Authorization: Bearer <token>` (`aggregator/auth.py`, `web/base.require_token`),
except `OPEN_PATHS` (`/healthz`, `/metrics`, the OpenAPI document and its pages).
Reads (GET, HEAD) take a read token or a write token; everything else only a
write token (a read token there answers 403).
Errors, validation errors and unknown paths answer `{"success": false, "message": ...}`
(the shared pieces are in `web/base.py`; serving is `web/serving.py`).

Bodies are size-limited before they are read (`web/limits.py`, installed
here) and parsed as strict JSON. Work that waits on a policy or builds large
answers runs in the app's `WorkLane` (`app.state.work_lane`, `web/lanes.py`),
never in the event loop or the request thread pool, so `/healthz` and gRPC
health stay quick under load; answers are rendered to strict JSON there too.

Routes here: the pre-check map (`GET /pre-check-policies`,
`POST /pre-check-policies/update`), a generic pre-check
(`POST /pre-check/{action}`, body = the action's input), and cluster data
(`GET /clusters/read/{id}`, `PATCH /clusters/update/{id}`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import Response

from aggregator.cluster.patch import ClusterPatchError, InvalidClusterDocument
from aggregator.cluster.store import ClusterStore, UnknownCluster
from aggregator.cluster.update import ClusterUpdater, PolicyBrokeDocument, UpdateConflict, UpdateRefused
from aggregator.governance.prechecks import Governance, GovernanceError
from aggregator.web.base import (
    ApiError,
    Tokens,
    install_error_handlers,
    json_response,
    read_json_body,
    require_token,
    work_lane,
)
from aggregator.web.lanes import WorkLane
from aggregator.web.limits import BodyLimits, aggregator_body_limit

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
    app = FastAPI(title=title, dependencies=[Depends(require_token(tokens))])
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

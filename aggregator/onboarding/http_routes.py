"""HTTP route of enrollment: what happened to the nodes that joined after onboarding.

`GET /enrollment/records` answers `{"success": true, "records": [...]}`, oldest
first, each `{"timestamp", "node_id", "action", "outcome", "detail"}`, so an
operator can see why a node was left out (a refused pre-check, the parser's
refusal) without reading logs. Register with
`create_app(..., routers=[enrollment_router(aggregator.onboarding.enrollment)])`.
"""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter

from aggregator.onboarding.enrollment import Enrollment

__all__ = ["enrollment_router"]


def enrollment_router(enrollment: Enrollment | None) -> APIRouter:
    router = APIRouter()

    @router.get("/enrollment/records")
    def enrollment_records() -> dict:
        if enrollment is None:
            return {"success": True, "records": [], "message": "enrollment is off (no cluster id configured)"}
        return {"success": True, "records": [asdict(r) for r in enrollment.records()]}

    return router

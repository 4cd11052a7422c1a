"""`GET /quarantine`: the mode, the budget, every node the quarantine has something to say about, and its history.

Reads are open like the aggregator's other reads (the app's token rule guards writes).
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from aggregator.quarantine.controller import QuarantineController
from aggregator.quarantine.store import QuarantineStore

__all__ = ["create_quarantine_router"]


def create_quarantine_router(controller: QuarantineController, store: QuarantineStore) -> APIRouter:
    router = APIRouter()

    @router.get("/quarantine")
    def quarantine(limit: int = 100, node_id: str | None = None, before_id: int | None = None):
        if not 1 <= limit <= 10000:
            return JSONResponse({"success": False, "message": "limit: expected 1..10000"}, status_code=400)
        config = controller.config
        return {
            "success": True,
            "mode": config.mode,
            "budget": {"max_nodes": config.max_nodes, "max_percent": config.max_percent,
                       "max_cycles_per_day": config.max_cycles_per_day},
            "taint_effect": config.taint_effect,
            "nodes": {node: record.to_json() for node, record in sorted(controller.view().items())},
            "actions": [a.to_json() for a in store.history(limit=limit, node_id=node_id, before_id=before_id)],
        }

    return router

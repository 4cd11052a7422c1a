"""`GET /addons`: each add-on's URL (from the cluster document's `config.urlMap`) and readiness.

Readiness comes from the add-on's Deployments and StatefulSets in its namespace (the one in its
recorded URL, else the default), read with the aggregator's own service account; each add-on's
base grants it exactly that (`aggregator-read.yaml`: get/list on deployments and statefulsets in
the add-on's namespace). The answer:

    {"success": true, "clusterId": "...", "addons": [
      {"name": "container-registry", "urlMapKey": "containerRegistry", "url": "http://...",
       "namespace": "aios-addons", "installed": true, "ready": false,
       "objects": [{"kind": "Deployment", "name": "...", "ready": false, "state": "0/1 ready",
                    "problems": ["MinimumReplicasUnavailable: ..."]}]}, ...]}

`ready` is null, with an `error`, where Kubernetes could not be asked (no API configured, a
permission missing, the API server down); one add-on failing does not hide the others.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter

from aggregator.addons.catalogue import ADDONS, DEFAULT_NAMESPACE, AddOn, namespace_from_url
from aggregator.addons.kube import KubeError, KubeObjects
from aggregator.addons.lifecycle import AddOnLifecycle
from aggregator.cluster.store import ClusterStore, UnknownCluster

__all__ = ["WORKLOAD_KINDS", "addons_router", "addons_router_for"]

WORKLOAD_KINDS = ("Deployment", "StatefulSet")


def _url_map(store: ClusterStore, cluster_id: str) -> dict[str, Any]:
    if not cluster_id:
        return {}
    try:
        config = store.get(cluster_id).get("config")
    except UnknownCluster:
        return {}
    url_map = config.get("urlMap") if isinstance(config, dict) else None
    return url_map if isinstance(url_map, dict) else {}


def _entry(item: AddOn, url: Any, lifecycle: AddOnLifecycle | None) -> dict[str, Any]:
    namespace = namespace_from_url(url) or DEFAULT_NAMESPACE
    entry: dict[str, Any] = {"name": item.name, "urlMapKey": item.url_map_key,
                             "url": url if isinstance(url, str) else None, "namespace": namespace}
    if lifecycle is None:
        return {**entry, "installed": None, "ready": None, "objects": [],
                "error": "the aggregator has no Kubernetes API configured"}
    try:
        status = lifecycle.status(item, namespace, details=False, kinds=WORKLOAD_KINDS)
    except KubeError as e:
        return {**entry, "installed": None, "ready": None, "objects": [], "error": str(e)}
    return {**entry, "installed": status.installed, "ready": status.ready,
            "objects": [o.to_json() for o in status.objects]}


def addons_router(*, cluster_store: ClusterStore, cluster_id: str,
                  kube: Callable[[], KubeObjects | None] | KubeObjects | None) -> APIRouter:
    """`kube`: the aggregator's `KubeObjects` (or a callable returning it, or None without an API)."""
    router = APIRouter()

    @router.get("/addons")
    def list_addons() -> dict:  # sync: FastAPI runs it in a worker thread (the calls block)
        objects = kube() if callable(kube) else kube
        lifecycle = AddOnLifecycle(objects) if objects is not None else None
        url_map = _url_map(cluster_store, cluster_id)
        return {"success": True, "clusterId": cluster_id or None,
                "addons": [_entry(item, url_map.get(item.url_map_key), lifecycle) for item in ADDONS]}

    return router


def addons_router_for(*, cluster_store: ClusterStore, cluster_id: str, api_client: Any) -> APIRouter:
    """The router for `aios-aggregator serve`: `api_client` is its Kubernetes `ApiClient`, or None."""
    from aggregator.addons.catalogue import FIELD_MANAGER

    kube = KubeObjects(api_client, field_manager=FIELD_MANAGER) if api_client is not None else None
    return addons_router(cluster_store=cluster_store, cluster_id=cluster_id, kube=kube)

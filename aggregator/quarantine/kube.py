"""The quarantine's Kubernetes writes: the taint, the cordon, and an Event on the Node.

A Node's `spec.taints` is an atomic list (a patch replaces it whole), so the
patch carries the whole list as the Node watch last showed it, with our taint
added or removed and everybody else's left exactly as they were; on a real API
server the patch also carries the `resourceVersion` it was computed from, so
a concurrent change (someone else's taint) makes it fail with 409 instead of
being overwritten, and the next round computes it again.

`quarantine_patch` / `release_patch` are pure. `NodeQuarantineApi` makes the
calls through the official `CoreV1Api` (strategic merge patch, `nodes patch`;
Events `create` in the aggregator's namespace: `kubectl describe node`
lists a Node's Events from every namespace).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

from aggregator.quarantine.config import TAINT_KEY
from aggregator.telemetry.node_watch import KubeNode, NodeTaint

__all__ = [
    "PATCH_CONTENT_TYPE",
    "KubeWriteError",
    "NodeQuarantineApi",
    "event_body",
    "quarantine_patch",
    "release_patch",
    "taint_value",
]

log = logging.getLogger(__name__)

PATCH_CONTENT_TYPE = "application/strategic-merge-patch+json"
_LABEL_VALUE = re.compile(r"[^A-Za-z0-9._-]+")


class KubeWriteError(Exception):
    """A Node patch or an Event create failed; `.status` is the HTTP status (None: no answer)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


def taint_value(reason: str) -> str:
    """A taint value (a label value: <= 63 of [A-Za-z0-9._-], alphanumeric at both ends)."""
    value = _LABEL_VALUE.sub("", reason).strip("-._")[:63].rstrip("-._")
    return value or "Unhealthy"


def _now_text(now: float) -> str:
    return datetime.fromtimestamp(now, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _with_version(node: KubeNode, patch: dict) -> dict:
    if node.resource_version and node.resource_version != "...":
        patch["metadata"] = {"resourceVersion": node.resource_version}
    return patch


def quarantine_patch(node: KubeNode, reason: str, effect: str, cordon: bool, now: float) -> tuple[dict | None, KubeNode]:
    """The patch putting our taint (`gpu.aios/unhealthy=<reason>:<effect>`) on the Node, and cordoning it
    when asked and not cordoned yet; None when the Node carries exactly that already. Also the Node as it
    will be after the patch."""
    value = taint_value(reason)
    ours = [t for t in node.taints if t.key == TAINT_KEY]
    others = [t for t in node.taints if t.key != TAINT_KEY]
    taint_ok = len(ours) == 1 and ours[0].value == value and ours[0].effect == effect
    cordon_needed = cordon and not node.unschedulable
    if taint_ok and not cordon_needed:
        return None, node
    taints = (*others, NodeTaint(TAINT_KEY, value, effect, _now_text(now))) if not taint_ok else node.taints
    spec: dict[str, Any] = {"taints": [t.to_json() for t in taints]}
    if cordon_needed:
        spec["unschedulable"] = True
    after = replace(node, taints=taints, unschedulable=node.unschedulable or cordon_needed)
    return _with_version(node, {"spec": spec}), after


def release_patch(node: KubeNode, uncordon: bool) -> tuple[dict | None, KubeNode]:
    """The patch taking our taint off (every other taint kept) and, when we cordoned it, uncordoning."""
    others = tuple(t for t in node.taints if t.key != TAINT_KEY)
    spec: dict[str, Any] = {}
    if len(others) != len(node.taints):
        spec["taints"] = [t.to_json() for t in others]
    if uncordon and node.unschedulable:
        spec["unschedulable"] = False
    if not spec:
        return None, node
    after = replace(node, taints=others, unschedulable=node.unschedulable and not uncordon)
    return _with_version(node, {"spec": spec}), after


def event_body(node: KubeNode, *, namespace: str, name: str, reason: str, message: str, warning: bool,
               now: float, component: str = "aios-aggregator") -> dict:
    """A core/v1 Event about the Node (pure)."""
    stamp = _now_text(now)
    involved = {"apiVersion": "v1", "kind": "Node", "name": node.name}
    if node.uid:
        involved["uid"] = node.uid
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": namespace},
        "involvedObject": involved,
        "reason": reason,
        "message": message[:1024],
        "type": "Warning" if warning else "Normal",
        "source": {"component": component},
        "reportingComponent": component,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


class NodeQuarantineApi:
    """The calls, through `kubernetes.client.CoreV1Api`."""

    def __init__(self, core_v1: Any, *, namespace: str, clock: Callable[[], float] = time.time,
                 request_timeout_s: float = 10.0) -> None:
        self._api = core_v1
        self.namespace = namespace
        self._clock = clock
        self._timeout = request_timeout_s

    def patch(self, node: KubeNode, body: dict) -> None:
        try:
            self._api.patch_node(node.name, body, _content_type=PATCH_CONTENT_TYPE, _request_timeout=self._timeout)
        except Exception as exc:  # ApiException, urllib3 errors: reported, retried by the controller
            raise KubeWriteError(_describe("patch node", node.name, exc), getattr(exc, "status", None)) from exc

    def event(self, body: dict) -> None:
        try:
            self._api.create_namespaced_event(self.namespace, body, _request_timeout=self._timeout)
        except Exception as exc:
            if getattr(exc, "status", None) == 409:
                return  # an earlier attempt got through
            raise KubeWriteError(_describe("create an Event about node", body["involvedObject"]["name"], exc),
                                 getattr(exc, "status", None)) from exc


def _describe(what: str, name: str, exc: BaseException) -> str:
    status = getattr(exc, "status", None)
    if status == 403:
        return (f"{what} {name!r}: forbidden (403): the aggregator's service account needs 'patch' on 'nodes' "
                f"and 'create' on 'events' (docs/rbac.md)")
    if status == 409:
        return f"{what} {name!r}: conflict (409): the Node changed since the watch showed it; computed again next round"
    if status:
        return f"{what} {name!r}: HTTP {status} {getattr(exc, 'reason', '')}".rstrip()
    return f"{what} {name!r}: {type(exc).__name__}: {exc}"

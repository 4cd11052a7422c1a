"""Following Kubernetes Nodes, so a Node deleted from the cluster leaves the aggregator too.

`NodeWatcher` lists the Nodes, then watches them, on a thread of its own
(the official client is blocking). When a Node is deleted it calls
`on_deleted(KubeNode)`; the service then removes the matching registry node,
which enrollment takes out of the stored cluster document.

What counts as a deletion:
- a watched DELETED event;
- on a re-list (after the watch ended or failed), a Node seen before that is
  no longer listed: its deletion fell between two watches.
What never does:
- the first list: a node the registry holds but Kubernetes does not list is
  only reported through `on_listed` (the service logs it); one odd answer of
  the API at start must not wipe nodes;
- a re-list answering no Nodes at all while some were known: a cluster
  cannot lose its last Node while this runs on one, so that answer is not
  trusted (logged, and the next re-list decides).

Errors (API down, 403, a watch ended by the server) lead to a re-list after
a capped exponential backoff with jitter. kmock (the tests' API server)
gives no resourceVersion: then each watch starts from "now" and the
re-list after it catches what fell between.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from urllib3.exceptions import ReadTimeoutError

from proto.common.backoff import backoff_delay

__all__ = ["NODE_ID_LABEL", "KubeNode", "NodeTaint", "NodeWatcher", "kube_node_from", "registry_matches"]

log = logging.getLogger(__name__)

NODE_ID_LABEL = "nodeID"  # docs/network-formats.md §1


@dataclass(frozen=True)
class NodeTaint:
    key: str
    value: str = ""
    effect: str = ""
    time_added: str = ""  # RFC 3339, as the API gives it ("" when unset)

    def to_json(self) -> dict:
        taint = {"key": self.key, "effect": self.effect}
        if self.value:
            taint["value"] = self.value
        if self.time_added:
            taint["timeAdded"] = self.time_added
        return taint


@dataclass(frozen=True)
class KubeNode:
    name: str
    node_id: str  # the `nodeID` label, else the name
    # what the quarantine reads before it rewrites the (atomic) taint list
    taints: tuple[NodeTaint, ...] = ()
    unschedulable: bool = False
    resource_version: str = ""
    uid: str = ""


def _get(obj: Any, json_key: str, attr: str | None = None) -> Any:
    if obj is None:
        return None
    return obj.get(json_key) if isinstance(obj, dict) else getattr(obj, attr or json_key, None)


def _time_text(value: Any) -> str:
    if value is None:
        return ""
    if hasattr(value, "strftime"):
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)


def kube_node_from(obj: Any) -> KubeNode | None:
    """A `V1Node` (or its JSON dict) as a `KubeNode`; None when it has no name (pure)."""
    metadata = _get(obj, "metadata")
    if metadata is None:
        return None
    name, labels = _get(metadata, "name"), _get(metadata, "labels")
    if not name:
        return None
    label = str((labels or {}).get(NODE_ID_LABEL) or "").strip()
    spec = _get(obj, "spec")
    taints = tuple(
        NodeTaint(
            key=str(_get(t, "key") or ""), value=str(_get(t, "value") or ""), effect=str(_get(t, "effect") or ""),
            time_added=_time_text(_get(t, "timeAdded", "time_added")),
        )
        for t in (_get(spec, "taints") or ())
    )
    return KubeNode(
        name=name, node_id=label or name, taints=taints, unschedulable=bool(_get(spec, "unschedulable")),
        resource_version=str(_get(metadata, "resourceVersion", "resource_version") or ""),
        uid=str(_get(metadata, "uid") or ""),
    )


class NodeWatcher:
    def __init__(
        self,
        core_v1: Any,  # kubernetes.client.CoreV1Api
        *,
        on_deleted: Callable[[KubeNode], None],
        on_listed: Callable[[list[KubeNode]], None] | None = None,
        watch_timeout_s: int = 300,
        request_timeout_s: float = 30.0,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 60.0,
        rng: random.Random | None = None,
    ) -> None:
        self._api = core_v1
        self._on_deleted = on_deleted
        self._on_listed = on_listed
        self.watch_timeout_s = watch_timeout_s
        self.request_timeout_s = request_timeout_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self._rng = rng or random.Random()
        self._stop = threading.Event()
        self._watch: Any = None  # the current kubernetes.watch.Watch, to interrupt it on close
        self._watch_lock = threading.Lock()
        self._known: dict[str, KubeNode] = {}  # by Node name
        self.lists = 0  # completed lists (tests and logs read it)
        self._thread = threading.Thread(target=self._run, name="node-watch", daemon=True)

    # ------------------------------------------------------------ lifecycle

    def start(self) -> NodeWatcher:
        self._thread.start()
        return self

    def close(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        with self._watch_lock:
            watch = self._watch
        if watch is not None:
            watch.stop()
            # the Watch keeps its open response in `_resp`: shutting the socket
            # down ends the blocked read now instead of at the next event
            response = getattr(watch, "_resp", None)
            shutdown = getattr(response, "shutdown", None)
            if callable(shutdown):
                try:
                    shutdown()
                except Exception:  # noqa: BLE001 - already closed
                    pass
        self._thread.join(timeout_s)

    def known(self) -> list[KubeNode]:
        return list(self._known.values())

    def note_written(self, node: KubeNode) -> None:
        """What we just wrote to a Node (the quarantine), until the watch shows it: a second
        write before the watch event must start from it, not from the older state."""
        if node.name in self._known:
            self._known[node.name] = node

    # ------------------------------------------------------------ the loop

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                resource_version = self._list()
                failures = 0
                self._watch_once(resource_version)
            except Exception as e:  # noqa: BLE001 - every failure means: back off, re-list
                if self._stop.is_set():
                    return
                failures += 1
                delay = backoff_delay(
                    failures - 1, self.backoff_initial_s, self.backoff_max_s, jitter="equal", rand=self._rng.random
                )
                log.warning("watching Kubernetes Nodes failed (%s); re-listing in %.1f s", _describe(e), delay)
                self._stop.wait(delay)

    def _list(self) -> str | None:
        listing = self._api.list_node(_request_timeout=self.request_timeout_s)
        listed = {n.name: n for n in filter(None, (kube_node_from(item) for item in listing.items or ()))}
        first = self.lists == 0
        if not first:
            vanished = [n for name, n in self._known.items() if name not in listed]
            if vanished and not listed:
                log.warning(
                    "the Kubernetes API listed no Nodes while %d were known: not trusted, nothing removed",
                    len(self._known),
                )
                return None  # keep what is known; the watch and the next re-list decide
            for node in vanished:
                log.info("Node %s (id %s) is gone since the last watch", node.name, node.node_id)
                self._deleted(node)
        self._known = listed
        self.lists += 1
        if first and self._on_listed is not None:
            self._on_listed(list(listed.values()))
        metadata = getattr(listing, "metadata", None)
        return getattr(metadata, "resource_version", None) or None

    def _watch_once(self, resource_version: str | None) -> None:
        from kubernetes import watch  # late: the client is only loaded where Kubernetes is configured

        w = watch.Watch()
        with self._watch_lock:
            if self._stop.is_set():
                return
            self._watch = w
        kwargs: dict[str, Any] = {
            "timeout_seconds": self.watch_timeout_s,
            "_request_timeout": self.watch_timeout_s + self.request_timeout_s,
        }
        if resource_version:
            kwargs["resource_version"] = resource_version
        try:
            for event in w.stream(self._api.list_node, **kwargs):
                if self._stop.is_set():
                    break
                self._apply(event)
        except ReadTimeoutError:
            # a server that does not end the watch at timeoutSeconds (kmock): our read
            # timeout did; that is the watch's normal end, and the re-list follows
            log.debug("the Node watch went quiet past its timeout; re-listing")
        finally:
            with self._watch_lock:
                self._watch = None

    def _apply(self, event: dict) -> None:
        node = kube_node_from(event.get("object"))
        if node is None:
            return
        kind = event.get("type")
        if kind in ("ADDED", "MODIFIED"):
            self._known[node.name] = node
        elif kind == "DELETED":
            self._known.pop(node.name, None)
            log.info("Node %s (id %s) was deleted from Kubernetes", node.name, node.node_id)
            self._deleted(node)

    def _deleted(self, node: KubeNode) -> None:
        try:
            self._on_deleted(node)
        except Exception:
            log.exception("removing node %s after its deletion failed", node.node_id)


def _describe(e: BaseException) -> str:
    status = getattr(e, "status", None)
    reason = getattr(e, "reason", None)
    if status:
        return f"HTTP {status} {reason or ''}".strip()
    return f"{type(e).__name__}: {e}"


def registry_matches(kube: KubeNode, entries: Iterable[tuple[str, str]]) -> list[str]:
    """Registry node ids that are this Kubernetes Node: by id, or by the inventory's node name (pure).

    `entries`: (node_id, inventory node_name) pairs.
    """
    return [node_id for node_id, node_name in entries if node_id == kube.node_id or (node_name and node_name == kube.name)]

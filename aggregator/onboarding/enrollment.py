"""Automatic enrollment of nodes that join after the cluster was onboarded.

Subscribed to the registry's changes (`NodeChange`):
- "joined" (an agent's first hello): once the cluster's document is stored,
  the node's entry is built from its inventory, passes the `add_node`
  pre-check (docs/network-formats.md §4; the entry the policy returns is the one
  used), is posted to the parser's `/api/addNode` when a parser client is
  configured, and is added to the stored document with the totals updated.
- "removed" (the Node was deleted from Kubernetes): the `remove_node`
  pre-check, then the entry leaves the document, totals updated. The
  parser has no remove call (docs/network-formats.md §3), so nothing is posted.
- "inventory" (an enrolled node's GPUs, disks or NICs changed): its entry is
  rebuilt from the new inventory and, when it differs, replaces the stored
  one in place, totals updated. Fields the builder does not write (an
  operator's or a policy's `tags`, `nodeMetadata`) are kept. No pre-check
  (it is the same node) and nothing posted (the parser has no update
  call). A node that is not in the document (refused, never enrolled)
  stays out. A repeated hello of an enrolled node refreshes its entry the
  same way (the aggregator may have restarted while the node changed).

The registry calls listeners on its own thread, so `on_change` only queues;
one worker thread, started by `start()` and stopped by `close()`, does the
work (changes queued before `start()` wait for it). The latest change per node wins (a
"removed" replaces a pending "joined"; an "inventory" only refreshes the
state a pending "joined" carries, never replaces it), a repeated hello adds nothing twice
(the stored document is re-checked inside the store's transaction), and
network failures (parser unreachable, pre-check unavailable) are retried
with a capped, jittered exponential backoff. Refusals are logged, kept in `records()`
and never retried: a node refused by a policy stays out until its next hello.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aggregator.cluster.store import ClusterStore, UnknownCluster
from aggregator.onboarding.document import document_node_ids, node_entry, with_node, without_node
from aggregator.onboarding.errors import ParserFailed, ParserRefused, ParserUnreachable
from aggregator.telemetry.model import NodeChange, NodeState
from proto.common.backoff import backoff_delay

__all__ = ["OUTCOMES", "Enrollment", "EnrollmentRecord"]

log = logging.getLogger(__name__)

OUTCOMES = ("enrolled", "removed", "updated", "refused", "failed")
_ACTIONS = {"joined": "add_node", "removed": "remove_node", "inventory": "update_node"}


class _Verdict(Protocol):
    allowed: bool
    input_data: Any


class _Governance(Protocol):
    def precheck(self, action: str, input_data: dict) -> _Verdict: ...


class _AddNodeClient(Protocol):
    def add_node(self, cluster_id: str, node_data: dict) -> Any: ...


@dataclass(frozen=True)
class EnrollmentRecord:
    timestamp: float
    node_id: str
    action: str  # "add_node" | "remove_node" | "update_node"
    outcome: str  # one of OUTCOMES
    detail: str = ""


@dataclass
class _Job:
    kind: str  # "joined" | "removed" | "inventory"
    state: NodeState
    attempt: int = 0
    due: float = 0.0  # time.monotonic()


class _RetryLater(Exception):
    """A network failure: the job goes back to the queue with a delay."""


class _Unchanged(Exception):
    """Raised inside the store's transaction to leave the document unwritten."""


class Enrollment:
    def __init__(
        self,
        cluster_store: ClusterStore,
        cluster_id: str,
        governance: _Governance | None,
        parser_client: _AddNodeClient | None,
        clock: Callable[[], float] = time.time,
        *,
        cluster_metrics: Callable[[], dict] = dict,
        retry_initial_s: float = 1.0,
        retry_max_s: float = 60.0,
        max_attempts: int = 20,
        history: int = 1000,
        rng: random.Random | None = None,
    ) -> None:
        self._store = cluster_store
        self._cluster_id = cluster_id
        self._governance = governance
        self._parser = parser_client
        self._clock = clock
        self._cluster_metrics = cluster_metrics
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self._max_attempts = max_attempts
        self._rng = rng or random.Random()  # jitter: pending nodes do not retry the parser API together
        self._records: deque[EnrollmentRecord] = deque(maxlen=history)
        self._pending: dict[str, _Job] = {}
        self._busy = False
        self._stopped = False
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ public

    def start(self) -> None:
        """Start the worker thread (once)."""
        with self._cond:
            if self._thread is not None or self._stopped:
                return
            self._thread = threading.Thread(target=self._run, name="enrollment", daemon=True)
            self._thread.start()

    def subscribe_to(self, registry: Any) -> None:
        registry.subscribe(self.on_change)

    def on_change(self, change: NodeChange) -> None:
        """The registry's callback: queue and return at once."""
        if change.kind not in _ACTIONS:
            return
        node_id = change.node.node_id
        with self._cond:
            if self._stopped:
                return
            queued = self._pending.get(node_id)
            if change.kind == "inventory" and queued is not None and queued.kind != "inventory":
                # a pending join builds from the newest inventory; a pending removal stays one
                if queued.kind == "joined":
                    queued.state = change.node
                return
            self._pending[node_id] = _Job(change.kind, change.node, 0, time.monotonic())
            self._cond.notify_all()

    def enroll_missing(self, states: list[NodeState]) -> int:
        """Queue the known nodes not yet in the stored document; how many were queued.

        For nodes that said hello before the document was stored (or while
        the aggregator was down). Nothing happens before onboarding.
        """
        document = self._document()
        if document is None:
            return 0
        present = set(document_node_ids(document))
        missing = [s for s in states if s.node_id not in present]
        for state in missing:
            self.on_change(NodeChange(kind="joined", node=state, timestamp=self._clock()))
        return len(missing)

    def records(self) -> list[EnrollmentRecord]:
        with self._cond:
            return list(self._records)

    def refusals(self) -> dict[str, EnrollmentRecord]:
        """The latest refusal per node (of nodes whose latest record is a refusal)."""
        latest: dict[str, EnrollmentRecord] = {}
        for record in self.records():
            latest[record.node_id] = record
        return {k: r for k, r in latest.items() if r.outcome == "refused"}

    def wait_idle(self, timeout_s: float) -> bool:
        """True once nothing is queued or running (retries count as queued)."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._pending or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def close(self, timeout_s: float = 5.0) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout_s)

    # ------------------------------------------------------------ worker

    def _run(self) -> None:
        while True:
            with self._cond:
                job = self._next_due_job()
                if job is None:
                    return
                self._busy = True
            try:
                self._process(job)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _next_due_job(self) -> _Job | None:
        """Block until a job is due; None when stopped. Called with the lock held."""
        while not self._stopped:
            now = time.monotonic()
            due = [(job.due, node_id) for node_id, job in self._pending.items()]
            if due:
                when, node_id = min(due)
                if when <= now:
                    return self._pending.pop(node_id)
                self._cond.wait(when - now)
            else:
                self._cond.wait()
        return None

    def _process(self, job: _Job) -> None:
        action = _ACTIONS[job.kind]
        node_id = job.state.node_id
        try:
            if job.kind == "joined":
                self._enroll(job.state)
            elif job.kind == "inventory":
                self._update(job.state)
            else:
                self._remove(job.state)
        except _RetryLater as e:
            job.attempt += 1
            if job.attempt >= self._max_attempts:
                self._record(node_id, action, "failed", f"gave up after {job.attempt} attempts: {e}")
                return
            delay = backoff_delay(
                job.attempt - 1, self._retry_initial_s, self._retry_max_s, jitter="equal", rand=self._rng.random
            )
            log.warning("%s %s: %s; retry %d in %.1f s", action, node_id, e, job.attempt, delay)
            with self._cond:
                # a newer change for this node replaces the retry
                if node_id not in self._pending and not self._stopped:
                    job.due = time.monotonic() + delay
                    self._pending[node_id] = job
                    self._cond.notify_all()
        except Exception as e:  # a bug or a store failure must not kill the worker
            log.exception("%s %s failed", action, node_id)
            self._record(node_id, action, "failed", f"{type(e).__name__}: {e}")

    def _document(self) -> dict | None:
        try:
            return self._store.get(self._cluster_id)
        except UnknownCluster:
            return None

    def _precheck(self, action: str, input_data: dict) -> tuple[bool, Any]:
        if self._governance is None:
            return True, input_data
        try:
            verdict = self._governance.precheck(action, input_data)
        except Exception as e:  # a policy that fails to run may be fixed or reachable later
            raise _RetryLater(f"{action} pre-check could not run: {type(e).__name__}: {e}") from e
        return bool(verdict.allowed), verdict.input_data

    def _enroll(self, state: NodeState) -> None:
        node_id = state.node_id
        document = self._document()
        if document is None:
            log.debug("node %s joined before cluster %s was onboarded: left to onboarding", node_id, self._cluster_id)
            return
        if node_id in document_node_ids(document):
            log.debug("node %s already in the document of %s: refreshing its entry", node_id, self._cluster_id)
            self._update(state)
            return
        entry = node_entry(state.inventory, state.latest)
        log.info("node %s joined: add_node pre-check", node_id)
        allowed, result = self._precheck(
            "add_node", {"node_data": entry, "cluster_data": document, "cluster_metrics": self._cluster_metrics()}
        )
        if not allowed:
            self._record(node_id, "add_node", "refused", f"add_node pre-check: {result}")
            return
        if isinstance(result, dict) and isinstance(result.get("node_data"), dict):
            entry = result["node_data"]
        entry["id"] = node_id  # a policy may reshape the entry, not rename the node
        if self._parser is not None:
            log.info("node %s: POST /api/addNode", node_id)
            try:
                self._parser.add_node(self._cluster_id, entry)
            except ParserUnreachable as e:
                raise _RetryLater(str(e)) from e
            except ParserRefused as e:
                self._record(node_id, "add_node", "refused", f"parser (HTTP {e.status}): {e.message}")
                return
            except ParserFailed as e:
                self._record(node_id, "add_node", "failed", f"parser: {e.message}")
                return

        def add(doc: dict) -> dict:
            return doc if node_id in document_node_ids(doc) else with_node(doc, entry)

        updated = self._store.update(self._cluster_id, add)
        self._record(node_id, "add_node", "enrolled", f"{updated['nodes']['count']} nodes in the cluster")

    def _remove(self, state: NodeState) -> None:
        node_id = state.node_id
        document = self._document()
        if document is None or node_id not in document_node_ids(document):
            log.debug("node %s removed: not in the document of %s", node_id, self._cluster_id)
            return
        log.info("node %s removed from Kubernetes: remove_node pre-check", node_id)
        allowed, result = self._precheck(
            "remove_node",
            # the aggregator does not know block placement: no block instances to report
            {"node_id": node_id, "cluster_data": document, "cluster_metrics": self._cluster_metrics(),
             "block_instances": []},
        )
        if not allowed:
            self._record(node_id, "remove_node", "refused", f"remove_node pre-check: {result}")
            return
        updated = self._store.update(self._cluster_id, lambda doc: without_node(doc, node_id))
        self._record(node_id, "remove_node", "removed", f"{updated['nodes']['count']} nodes in the cluster")

    def _update(self, state: NodeState) -> None:
        node_id = state.node_id
        document = self._document()
        stored = _entry_of(document, node_id) if document is not None else None
        if stored is None:
            log.debug("node %s inventory changed: not in the document of %s, left out", node_id, self._cluster_id)
            return
        built = node_entry(state.inventory, state.latest)
        if _refreshed(stored, built) == stored:
            log.debug("node %s inventory changed: its entry in %s is unchanged", node_id, self._cluster_id)
            return
        log.info("node %s inventory changed: updating its entry in the document of %s "
                 "(not posted: the parser has no update call)", node_id, self._cluster_id)
        changed: list[str] = []

        def refresh(doc: dict) -> dict:
            current = _entry_of(doc, node_id)  # re-read inside the transaction
            if current is None:
                raise _Unchanged
            entry = _refreshed(current, built)
            if entry == current:
                raise _Unchanged
            changed[:] = sorted(k for k in entry if entry.get(k) != current.get(k))
            return with_node(doc, entry)

        try:
            updated = self._store.update(self._cluster_id, refresh)
        except (_Unchanged, UnknownCluster):
            return
        self._record(node_id, "update_node", "updated",
                     f"{', '.join(changed)} changed; {updated['nodes']['count']} nodes in the cluster")

    def _record(self, node_id: str, action: str, outcome: str, detail: str) -> None:
        level = logging.INFO if outcome in ("enrolled", "removed", "updated") else logging.WARNING
        log.log(level, "%s %s: %s (%s)", action, node_id, outcome, detail)
        with self._cond:
            self._records.append(EnrollmentRecord(self._clock(), node_id, action, outcome, detail))


def _entry_of(document: dict, node_id: str) -> dict | None:
    for entry in (document.get("nodes") or {}).get("nodeData") or []:
        if isinstance(entry, dict) and entry.get("id") == node_id:
            return entry
    return None


def _refreshed(stored: dict, built: dict) -> dict:
    """The builder's entry, keeping the stored entry's fields the builder does not write."""
    return {**built, **{k: v for k, v in stored.items() if k not in built}}

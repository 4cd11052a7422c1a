"""The quarantine controller: judge every node with the shared health rule, decide within the budget, act, report.

Runs on a thread of its own. It evaluates shortly (`debounce_s`) after the
registry reports a node change (a health event, a status change, ...) or a
stability verdict arrives, and every `interval_s` (event windows expire with
time). One evaluation:

1. judges each node (`judge_node`): the shared rule (`proto.health.gpu_rule`)
   over its inventory, latest sample and the health events operators have not
   acknowledged; it needs quarantine when a GPU is lost or a problem needs a
   GPU reset, a reboot or support (thermal throttling alone does not). The
   stability policy may name more nodes (`stability_check_data.quarantine_nodes`);
2. decides (`aggregator.quarantine.plan`): quarantine within the budget,
   release, hold a flapping node, report the rest over budget;
3. passes each quarantine and release through the `cluster_mgmt` pre-check,
   when one is set (`{"cluster_data", "input": {"action": "quarantine_node" |
   "release_node", "payload": {...}}}`); a refusal leaves the node untouched
   and stands, with the policy's reason, for `recheck_s`;
4. in `taint`/`cordon` mode, patches the Node and creates an Event on it; in
   `dry-run` it only records and reports (no write at all, pre-checks not
   asked: nothing would be done);
5. records every change (`aggregator.quarantine.store`) and counts it.

`view()` is what `/nodes_status`, the gRPC node query, `GET /quarantine` and
the metrics read: every node the quarantine has something to say about.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from aggregator.quarantine.config import TAINT_KEY, QuarantineConfig
from aggregator.quarantine.kube import KubeWriteError, event_body, quarantine_patch, release_patch, taint_value
from aggregator.quarantine.plan import OCCUPYING_STATES, Blocked, Decision, NodeHealth, plan
from aggregator.quarantine.store import QuarantineAction, QuarantineRecord, QuarantineStore
from aggregator.telemetry.model import NodeChange, NodeState
from aggregator.telemetry.node_watch import KubeNode
from proto.health.acknowledgements import unacknowledged
from proto.health.conditions import condition_message, problem_reason, severity, worst_first
from proto.health.gpu_rule import GpuProblem, HealthRule, ProblemKind, node_problems
from proto.health.xid_catalog import UNHEALTHY_RESOLUTIONS
from proto.telemetry.v1.readings import Acknowledgement

__all__ = ["QuarantineController", "judge_node", "needs_quarantine", "policy_named_nodes"]

log = logging.getLogger(__name__)

DAY_S = 86400.0
_FAILED_RETRY_S = (5.0, 300.0)  # first and longest wait after a failed write
_MAX_NAMED = 10_000
TRIGGERING_CHANGES = frozenset({"health", "status", "inventory", "removed"})


def needs_quarantine(problem: GpuProblem) -> bool:
    """A lost GPU, or a problem whose recovery is a GPU reset, a reboot or support; not throttling."""
    if problem.kind is ProblemKind.THERMAL_THROTTLING:
        return False
    return problem.kind is ProblemKind.LOST or problem.resolution in UNHEALTHY_RESOLUTIONS


def judge_node(state: NodeState, acks: Sequence[Acknowledgement], now: float, rule: HealthRule) -> NodeHealth:
    """Pure: whether the node needs quarantine, and why (the shared rule over its unacknowledged events)."""
    events = unacknowledged(state.health_events, acks)
    problems = [p for p in node_problems(state.inventory, state.latest, events, now, rule) if needs_quarantine(p)]
    if not problems:
        return NodeHealth(state.node_id, False)
    worst = worst_first(problems)[0]
    seen = [p.since for p in problems if p.since is not None]
    return NodeHealth(
        node_id=state.node_id,
        needs_quarantine=True,
        reason=problem_reason(worst.kind, [worst]),
        detail=condition_message(problems),
        gpus=tuple(sorted({p.gpu_index for p in problems if p.gpu_index is not None})),
        severity=severity(worst),
        since=min(seen) if seen else None,
    )


def policy_named_nodes(stability_check_data: Any) -> dict[str, str]:
    """Node id -> reason, from the policy's optional `quarantine_nodes`: a list of node ids or of
    `{"node_id", "reason"}` objects (pure; what is not either is skipped and logged)."""
    if not isinstance(stability_check_data, Mapping):
        return {}
    listed = stability_check_data.get("quarantine_nodes")
    if listed is None:
        return {}
    if not isinstance(listed, list):
        log.warning("stability_check_data.quarantine_nodes: expected a list, got %s", type(listed).__name__)
        return {}
    named: dict[str, str] = {}
    for i, entry in enumerate(listed[:_MAX_NAMED]):
        reason = ""
        if isinstance(entry, str):
            node_id = entry
        elif isinstance(entry, Mapping) and isinstance(entry.get("node_id"), str):
            node_id = entry["node_id"]
            if isinstance(entry.get("reason"), str):
                reason = entry["reason"]
        else:
            log.warning("stability_check_data.quarantine_nodes[%d]: expected a node id or {node_id, reason}: %r", i, entry)
            continue
        if 0 < len(node_id) <= 253:
            named[node_id] = reason
    return named


class RegistryLike(Protocol):
    def snapshot(self) -> list[NodeState]: ...
    def subscribe(self, callback: Callable[[NodeChange], None]) -> Any: ...


@dataclass(frozen=True)
class QuarantineParts:
    """What the controller needs from the rest of the aggregator (all optional but the registry)."""

    registry: RegistryLike
    store: QuarantineStore
    rule: HealthRule
    precheck: Callable[[str, dict], Any] | None = None  # governance's precheck("cluster_mgmt", input) -> PrecheckVerdict
    cluster_data: Callable[[], dict] = dict  # the stored cluster document
    kube_nodes: Callable[[], list[KubeNode]] | None = None  # the Node watch's view
    note_written: Callable[[KubeNode], None] | None = None  # tell the watch what we wrote
    kube_api: Any = None  # aggregator.quarantine.kube.NodeQuarantineApi
    acknowledgements: Callable[[], Mapping[str, list[Acknowledgement]]] = dict
    latest_verdict: Callable[[], Any] = lambda: None


class QuarantineController:
    def __init__(self, config: QuarantineConfig, parts: QuarantineParts, *, clock: Callable[[], float] = time.time,
                 interval_s: float = 30.0, debounce_s: float = 0.1) -> None:
        self.config = config
        self._parts = parts
        self._clock = clock
        self.interval_s = interval_s
        self.debounce_s = debounce_s
        self._view: dict[str, QuarantineRecord] = parts.store.current()
        self._counts: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()  # guards _view and _counts
        self._run_lock = threading.Lock()  # one evaluation at a time
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._unsubscribe: Any = None
        self._verdict_id: int | None = None
        self._failures: dict[str, int] = {}
        self.evaluations = 0

    # ------------------------------------------------------------ lifecycle

    def start(self) -> QuarantineController:
        if not self.config.active:
            log.info("quarantine: off (AIOS_QUARANTINE=off)")
            return self
        if self.config.writes and self._parts.kube_api is None:
            log.warning("quarantine: mode %s but no Kubernetes API: nothing can be tainted; decisions are recorded only",
                        self.config.mode)
        self._unsubscribe = self._parts.registry.subscribe(self._on_change)
        self._thread = threading.Thread(target=self._run, name="quarantine", daemon=True)
        self._thread.start()
        log.info("quarantine: mode %s, budget %d node(s) / %g%%, %d cycle(s) per node per day, taint %s:%s",
                 self.config.mode, self.config.max_nodes, self.config.max_percent, self.config.max_cycles_per_day,
                 TAINT_KEY, self.config.taint_effect)
        return self

    def close(self, timeout_s: float = 15.0) -> None:
        self._stop.set()
        self._wake.set()
        if callable(self._unsubscribe):
            self._unsubscribe()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def request(self) -> None:
        """Evaluate soon (after `debounce_s`: a burst of changes is one evaluation)."""
        self._wake.set()

    def on_verdict(self, verdict: Any) -> None:
        """A stability verdict arrived (it may name nodes to quarantine)."""
        self._verdict_id = getattr(verdict, "id", None)
        self.request()

    def _on_change(self, change: NodeChange) -> None:
        if change.kind in TRIGGERING_CHANGES:
            self.request()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval_s)
            if self._stop.is_set():
                return
            if self._wake.is_set():
                self._stop.wait(self.debounce_s)
            self._wake.clear()
            try:
                self.evaluate()
            except Exception:
                log.exception("quarantine: the evaluation failed; trying again at the next change")

    # ------------------------------------------------------------ reading

    def view(self) -> dict[str, QuarantineRecord]:
        with self._lock:
            return dict(self._view)

    def counts(self) -> dict[tuple[str, str], int]:
        """(action, outcome) -> how many since start (the metric)."""
        with self._lock:
            return dict(self._counts)

    # ------------------------------------------------------------ one evaluation

    def evaluate(self) -> list[Decision]:
        if not self.config.active:
            return []
        with self._run_lock:
            now = self._clock()
            states = self._parts.registry.snapshot()
            acks = self._parts.acknowledgements()
            healths = {s.node_id: judge_node(s, acks.get(s.node_id, ()), now, self._parts.rule) for s in states}
            self._add_policy_named(healths, states)
            records = self._parts.store.current()
            kube_nodes = self._parts.kube_nodes() if self._parts.kube_nodes is not None else []
            if self.config.mode == "dry-run":
                # a taint left from a writing mode stays as it is: dry-run touches nothing
                frozen = {n for n, r in records.items() if r.tainted}
                healths = {n: h for n, h in healths.items() if n not in frozen}
                records_for_plan = {n: r for n, r in records.items() if n not in frozen}
            else:
                records_for_plan = records
            occupying = {n: r.state for n, r in records_for_plan.items() if r.state in OCCUPYING_STATES}
            decisions = plan(
                healths,
                occupying,
                {n: r.reason for n, r in records_for_plan.items()},
                self._parts.store.quarantines_since(now - DAY_S),
                self.config.budget(max(len(states), len(kube_nodes))),
                self.config.max_cycles_per_day,
                {n: r.blocked for n, r in records_for_plan.items() if r.blocked is not None},
                set(records_for_plan),
                now,
            )
            names = _kube_names(states, kube_nodes)
            by_name = {k.name: k for k in kube_nodes}
            for decision in decisions:
                record = records.get(decision.node_id)
                kube = names.get(decision.node_id) or (by_name.get(record.node_name) if record is not None else None)
                try:
                    self._apply(decision, record, kube, now)
                except Exception:
                    log.exception("quarantine: acting on node %s (%s) failed", decision.node_id, decision.action)
            with self._lock:
                self._view = self._parts.store.current()
            self.evaluations += 1
            return decisions

    def _add_policy_named(self, healths: dict[str, NodeHealth], states: list[NodeState]) -> None:
        verdict = self._parts.latest_verdict()
        named = policy_named_nodes(getattr(verdict, "stability_check_data", None))
        if not named:
            return
        uri = getattr(verdict, "policy_uri", "the stability policy")
        for node_id, reason in named.items():
            health = healths.get(node_id)
            if health is None:
                continue  # not a node this aggregator knows
            if health.needs_quarantine:
                continue  # its own problems say more
            healths[node_id] = NodeHealth(
                node_id, True, taint_value(reason) if reason else "PolicyNamed",
                f"named by the stability policy {uri}" + (f": {reason}" if reason else ""), (), 0, None,
            )

    # ------------------------------------------------------------ acting

    def _apply(self, decision: Decision, record: QuarantineRecord | None, kube: KubeNode | None, now: float) -> None:
        action, health = decision.action, decision.health
        if action in ("keep", "refused", "failed"):
            if record is not None and health is not None:
                # a held node whose problem is back is plainly quarantined again
                state = "quarantined" if action == "keep" and record.state == "held" else record.state
                if (record.detail, record.gpus, record.state) != (health.detail, health.gpus, state):
                    self._parts.store.put(replace(record, detail=health.detail, gpus=health.gpus, state=state))
            return
        if action == "clear":
            if record is not None:
                self._parts.store.delete(decision.node_id)
            return
        assert health is not None or action in ("release", "hold")
        if action == "over_budget":
            assert health is not None
            if record is None or record.state != "over_budget":
                self._put(decision.node_id, "over_budget", health, kube, now, record)
                self._act(decision.node_id, "over_budget", "reported", health, kube, now,
                          event=("GpuQuarantineOverBudget", True,
                                 f"would quarantine, over budget ({self._budget_text()}): {health.detail}"))
            return
        if action == "hold":
            if record is not None and record.state != "held":
                held = replace(record, state="held", since=now)
                self._parts.store.put(held)
                text = (f"quarantined {self.config.max_cycles_per_day} times within 24 h: kept quarantined "
                        f"(flapping) rather than released")
                self._act(decision.node_id, "hold", "reported", health, kube, now, reason=record.reason,
                          detail=text, event=("GpuQuarantineHeld", True, text))
            return
        if action in ("quarantine", "retaint"):
            assert health is not None
            self._quarantine(decision.node_id, health, record, kube, now, retaint=action == "retaint")
        elif action == "release":
            assert record is not None
            self._release(decision.node_id, record, kube, now)

    def _quarantine(self, node_id: str, health: NodeHealth, record: QuarantineRecord | None, kube: KubeNode | None,
                    now: float, *, retaint: bool) -> None:
        action = "retaint" if retaint else "quarantine"
        if self.config.mode == "dry-run":
            self._put(node_id, "would_quarantine", health, kube, now, record)
            self._act(node_id, action, "dry_run", health, kube, now)
            log.info("quarantine (dry-run): would quarantine node %s (%s): %s", node_id, health.reason, health.detail)
            return
        reason = health.reason
        if not retaint:
            allowed, answer = self._precheck("quarantine_node", node_id, health, kube)
            if not allowed:
                self._refused(node_id, "quarantine", health, record, kube, now, answer)
                return
            reason = answer or reason
        if kube is None or self._parts.kube_api is None:
            self._failed(node_id, action, health, record, kube, now,
                         "no Kubernetes Node is known for it (no API configured, or the Node watch has not listed it)")
            return
        patch, after = quarantine_patch(kube, reason, self.config.taint_effect, self.config.mode == "cordon", now)
        try:
            if patch is not None:
                self._parts.kube_api.patch(kube, patch)
        except KubeWriteError as exc:
            self._failed(node_id, action, health, record, kube, now, str(exc))
            return
        if self._parts.note_written is not None:
            self._parts.note_written(after)
        self._failures.pop(node_id, None)
        cordoned = (record.cordoned if record is not None else False) or (after.unschedulable and not kube.unschedulable)
        self._parts.store.put(QuarantineRecord(
            node_id=node_id, state="quarantined", since=record.since if retaint and record else now,
            node_name=kube.name, reason=reason, detail=health.detail, gpus=health.gpus, mode=self.config.mode,
            tainted=True, cordoned=cordoned,
        ))
        taint = f"{TAINT_KEY}={taint_value(reason)}:{self.config.taint_effect}"
        done = "re-tainted" if retaint else "quarantined"
        text = f"{done}: {taint}" + (", cordoned" if cordoned else "") + f"; {health.detail}"
        self._act(node_id, action, "applied", health, kube, now, reason=reason, event=("GpuQuarantined", True, text))
        log.warning("quarantine: node %s (%s) %s", node_id, kube.name, text)

    def _release(self, node_id: str, record: QuarantineRecord, kube: KubeNode | None, now: float) -> None:
        if self.config.mode == "dry-run" or not record.tainted:
            self._parts.store.delete(node_id)
            self._act(node_id, "release", "dry_run" if self.config.mode == "dry-run" else "applied", None, kube, now,
                      reason=record.reason, detail="healthy again")
            return
        health = NodeHealth(node_id, False, record.reason, record.detail, record.gpus)
        allowed, why = self._precheck("release_node", node_id, health, kube)
        if not allowed:
            self._refused(node_id, "release", health, record, kube, now, why)
            return
        if kube is None:
            self._parts.store.delete(node_id)  # the Node is gone: nothing left to lift
            self._act(node_id, "release", "applied", health, kube, now, detail="the Node no longer exists")
            return
        patch, after = release_patch(kube, uncordon=record.cordoned)
        try:
            if patch is not None and self._parts.kube_api is not None:
                self._parts.kube_api.patch(kube, patch)
        except KubeWriteError as exc:
            self._failed(node_id, "release", health, record, kube, now, str(exc), keep_state=True)
            return
        if self._parts.note_written is not None:
            self._parts.note_written(after)
        self._failures.pop(node_id, None)
        self._parts.store.delete(node_id)
        text = f"released: {TAINT_KEY} removed" + (", uncordoned" if record.cordoned else "") + "; the node is healthy again"
        self._act(node_id, "release", "applied", health, kube, now, reason=record.reason,
                  event=("GpuQuarantineReleased", False, text))
        log.info("quarantine: node %s (%s) %s", node_id, kube.name, text)

    def _precheck(self, action: str, node_id: str, health: NodeHealth, kube: KubeNode | None) -> tuple[bool, str]:
        """(allowed, the reason to use / the refusal's reason)."""
        if self._parts.precheck is None:
            return True, ""
        payload = {
            "node_id": node_id, "node_name": kube.name if kube is not None else "", "reason": health.reason,
            "gpus": list(health.gpus), "detail": health.detail, "mode": self.config.mode,
            "taint": {"key": TAINT_KEY, "value": taint_value(health.reason), "effect": self.config.taint_effect},
        }
        try:
            cluster_data = self._parts.cluster_data()
        except Exception:  # no readable cluster document: the policy still sees the action
            log.debug("quarantine: no cluster document for the pre-check", exc_info=True)
            cluster_data = {}
        verdict = self._parts.precheck(
            "cluster_mgmt", {"cluster_data": cluster_data, "input": {"action": action, "payload": payload}}
        )
        if not verdict.allowed:
            return False, verdict.reason or "refused by the cluster_mgmt pre-check"
        returned = verdict.input_data if isinstance(verdict.input_data, Mapping) else {}
        new_payload = (returned.get("input") or {}).get("payload") if isinstance(returned.get("input"), Mapping) else None
        reason = new_payload.get("reason") if isinstance(new_payload, Mapping) else None
        return True, reason if isinstance(reason, str) and reason.strip() else ""

    def _refused(self, node_id: str, action: str, health: NodeHealth, record: QuarantineRecord | None,
                 kube: KubeNode | None, now: float, why: str) -> None:
        block = Blocked(action, health.reason if action == "quarantine" else "", now + self.config.recheck_s, "refused")
        if action == "quarantine":
            self._parts.store.put(QuarantineRecord(
                node_id=node_id, state="refused", since=now, node_name=kube.name if kube else "",
                reason=health.reason, detail=f"refused by the cluster_mgmt pre-check: {why}", gpus=health.gpus,
                mode=self.config.mode, blocked=block,
            ))
        elif record is not None:
            self._parts.store.put(replace(record, blocked=block))
        self._act(node_id, action, "refused", health, kube, now, detail=why,
                  event=("GpuQuarantineRefused", True, f"{action} refused by the cluster_mgmt pre-check: {why}"))
        log.warning("quarantine: %s of node %s refused by the cluster_mgmt pre-check: %s", action, node_id, why)

    def _failed(self, node_id: str, action: str, health: NodeHealth, record: QuarantineRecord | None,
                kube: KubeNode | None, now: float, why: str, *, keep_state: bool = False) -> None:
        failures = self._failures.get(node_id, 0) + 1
        self._failures[node_id] = failures
        first, cap = _FAILED_RETRY_S
        wait = min(cap, first * 2 ** min(failures - 1, 16))
        block_action = "release" if action == "release" else "quarantine"
        block = Blocked(block_action, health.reason if block_action == "quarantine" else "", now + wait, "failed")
        if keep_state and record is not None:
            self._parts.store.put(replace(record, blocked=block))
        else:
            self._parts.store.put(QuarantineRecord(
                node_id=node_id, state="failed", since=now, node_name=kube.name if kube else "", reason=health.reason,
                detail=f"{action} failed: {why}", gpus=health.gpus, mode=self.config.mode,
                tainted=record.tainted if record else False, cordoned=record.cordoned if record else False, blocked=block,
            ))
        self._act(node_id, action, "failed", health, kube, now, detail=why)
        log.warning("quarantine: %s of node %s failed (%s); trying again in %.0f s", action, node_id, why, wait)

    # ------------------------------------------------------------ recording

    def _put(self, node_id: str, state: str, health: NodeHealth, kube: KubeNode | None, now: float,
             record: QuarantineRecord | None) -> None:
        self._parts.store.put(QuarantineRecord(
            node_id=node_id, state=state, since=record.since if record is not None and record.state == state else now,
            node_name=kube.name if kube else "", reason=health.reason, detail=health.detail, gpus=health.gpus,
            mode=self.config.mode,
        ))

    def _act(self, node_id: str, action: str, outcome: str, health: NodeHealth | None, kube: KubeNode | None,
             now: float, *, reason: str | None = None, detail: str | None = None,
             event: tuple[str, bool, str] | None = None) -> None:
        row = self._parts.store.record_action(QuarantineAction(
            at=now, node_id=node_id, action=action, outcome=outcome, mode=self.config.mode,
            node_name=kube.name if kube else "", reason=reason if reason is not None else (health.reason if health else ""),
            detail=detail if detail is not None else (health.detail if health else ""),
            gpus=health.gpus if health else (), verdict_id=self._verdict_id,
        ))
        with self._lock:
            self._counts[(action, outcome)] = self._counts.get((action, outcome), 0) + 1
        if event is not None and self.config.writes and kube is not None and self._parts.kube_api is not None:
            reason_word, warning, message = event
            body = event_body(kube, namespace=self._parts.kube_api.namespace,
                              name=f"{kube.name}.aios-quarantine.{row.id}", reason=reason_word, message=message,
                              warning=warning, now=now)
            try:
                self._parts.kube_api.event(body)
            except KubeWriteError as exc:
                log.warning("quarantine: the Event about node %s was not created: %s", kube.name, exc)

    def _budget_text(self) -> str:
        return f"at most {self.config.max_nodes} node(s) and {self.config.max_percent:g}% of the cluster"


def _kube_names(states: Sequence[NodeState], kube_nodes: Sequence[KubeNode]) -> dict[str, KubeNode]:
    """Registry node id -> its Kubernetes Node: by the `nodeID` label, else by the name the agent gave."""
    by_id = {k.node_id: k for k in kube_nodes}
    by_name = {k.name: k for k in kube_nodes}
    found = {}
    for state in states:
        kube = by_id.get(state.node_id) or by_name.get(state.inventory.node_name or "")
        if kube is not None:
            found[state.node_id] = kube
    return found


"""The stability checker: runs the cluster's stability policy over live `nodes_data`.

Which policy: `config.stabilityChecker` (`policyRuleURI` + `parameters`) of the
stored cluster document, or the default policy package shipped in
`aggregator/default_policies/stability` when none is configured. The policy
runs through the policies package (`open_policy` -> `PolicyHandle`, in its own
worker), passed in as `open_policy` so this module never runs user code itself.

When: on a schedule (APScheduler; `CLUSTER_STABILITY_CHECK_INTERVAL`, default
60 s), on demand (`check()`), and shortly after the registry reports a node
change (health event, status change, ...): a burst of changes within
`debounce_s` becomes one check.

Every verdict, the policy's answer or its error, is stored with its history;
listeners hear of every verdict, and of transitions (stable <-> unstable).
`check_shared()` (the HTTP and gRPC "check now" requests) joins a requested
check already in flight instead of queueing another: one evaluation, one
verdict row, whatever the number of callers. An answer that is not strict
JSON (`aggregator/strict_json.py`) is an error verdict naming where.
"""

from __future__ import annotations

import gc
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Protocol

from apscheduler.jobstores.base import JobLookupError

from aggregator import strict_json
from aggregator.cluster.store import ClusterStore, UnknownCluster
from aggregator.stability.nodes_data import ThrottleTracker, build_nodes_data
from aggregator.stability.verdicts import Verdict, VerdictStore
from aggregator.telemetry.model import NodeChange, NodeState

__all__ = [
    "DEFAULT_INTERVAL_S",
    "DEFAULT_POLICY_DIR",
    "DEFAULT_POLICY_URI",
    "ConfigError",
    "PolicySelection",
    "StabilityChecker",
    "Transition",
    "interval_from_env",
    "policy_opener",
    "select_policy",
]

log = logging.getLogger(__name__)

DEFAULT_POLICY_DIR = Path(__file__).resolve().parent.parent / "default_policies" / "stability"
# what verdicts name as their policy when the default one ran
DEFAULT_POLICY_URI = "aios-default-stability"
DEFAULT_INTERVAL_S = 60.0


# A node joining says nothing about stability until it reports a problem (which
# comes as a health or status change); skipping joins keeps a 5,000-node join
# ramp from running a full check every debounce interval.
TRIGGERING_CHANGES = frozenset({"health", "status", "inventory", "removed"})


class ConfigError(ValueError):
    """The cluster document's `config.stabilityChecker` cannot be used."""


class PolicyHandleLike(Protocol):
    def eval(self, input_data: dict, parameters: dict | None = None) -> dict: ...
    def management(self, action: str, data: dict) -> dict: ...
    def close(self) -> None: ...


# (source, parameters) -> handle; the lead wires the policies package's
# `open_policy(source, parameters=..., config=...)` in here.
PolicyOpener = Callable[[str, "dict | None"], PolicyHandleLike]


class RegistryLike(Protocol):
    def snapshot(self) -> list[NodeState]: ...
    def subscribe(self, callback: Callable[[NodeChange], None]) -> Any: ...


def policy_opener(config) -> PolicyOpener:
    """An opener over the policies package. `config`: a `PolicyConfig`, or a callable
    returning one at each opening (so env/cluster-config changes apply). The default
    package always runs locally: a remote executor only knows policies by URI."""
    from aggregator.policies import open_policy

    def open_(source: str, parameters: dict | None):
        cfg = config() if callable(config) else config
        if Path(source) == DEFAULT_POLICY_DIR and cfg.mode != "local":
            cfg = cfg.with_overrides(mode="local")
        return open_policy(source, parameters=parameters, config=cfg)

    return open_


@dataclass(frozen=True)
class PolicySelection:
    source: str  # what open_policy loads: a policy rule URI, an archive, a directory
    parameters: dict | None
    uri: str  # what verdicts report


@dataclass(frozen=True)
class Transition:
    """The verdict changed between stable and unstable (errors do not count as either)."""

    verdict: Verdict
    previous: Verdict | None  # the last stable/unstable verdict before it, if any


def select_policy(document: Mapping, default_source: str) -> PolicySelection:
    """The policy a cluster document asks for (pure)."""
    config = document.get("config") if isinstance(document, Mapping) else None
    checker = config.get("stabilityChecker") if isinstance(config, Mapping) else None
    if checker in (None, {}):
        return PolicySelection(default_source, None, DEFAULT_POLICY_URI)
    if not isinstance(checker, Mapping):
        raise ConfigError("config.stabilityChecker: expected an object")
    uri = checker.get("policyRuleURI")
    if uri in (None, ""):
        return PolicySelection(default_source, _parameters(checker), DEFAULT_POLICY_URI)
    if not isinstance(uri, str):
        raise ConfigError("config.stabilityChecker.policyRuleURI: expected a string")
    return PolicySelection(uri, _parameters(checker), uri)


def _parameters(checker: Mapping) -> dict | None:
    parameters = checker.get("parameters")
    if parameters is None:
        return None
    if not isinstance(parameters, Mapping):
        raise ConfigError("config.stabilityChecker.parameters: expected an object")
    return dict(parameters)


def interval_from_env(env: Mapping[str, str]) -> float:
    raw = env.get("CLUSTER_STABILITY_CHECK_INTERVAL")
    if raw in (None, ""):
        return DEFAULT_INTERVAL_S
    try:
        value = float(raw)
    except ValueError as e:
        raise ConfigError(f"CLUSTER_STABILITY_CHECK_INTERVAL={raw!r}: expected seconds") from e
    if not value > 0:
        raise ConfigError(f"CLUSTER_STABILITY_CHECK_INTERVAL={raw!r}: must be above 0")
    return value


class StabilityChecker:
    def __init__(
        self,
        *,
        cluster_id: str,
        registry: RegistryLike,
        cluster_store: ClusterStore,
        verdicts: VerdictStore,
        open_policy: PolicyOpener,
        clock: Callable[[], float] = time.time,
        default_policy_source: str | Path = DEFAULT_POLICY_DIR,
        interval_s: float = DEFAULT_INTERVAL_S,
        debounce_s: float = 0.2,
    ) -> None:
        self.cluster_id = cluster_id
        self._registry = registry
        self._clusters = cluster_store
        self._verdicts = verdicts
        self._open_policy = open_policy
        self._clock = clock
        self._default_source = str(default_policy_source)
        self.interval_s = interval_s
        self.debounce_s = debounce_s
        self._check_lock = threading.Lock()  # one evaluation at a time
        self._flight_lock = threading.Lock()
        self._flight: _Flight | None = None  # the requested check callers may join
        self._throttle = ThrottleTracker()
        self._throttle_lock = threading.Lock()
        self._handle: PolicyHandleLike | None = None
        self._handle_key: tuple[str, str] | None = None
        self._listeners: list[Callable[[Verdict], None]] = []
        self._transition_listeners: list[Callable[[Transition], None]] = []
        self._management_listeners: list[Callable[[str, dict, Any], None]] = []
        self._node_fields: dict[str, Callable[[], Mapping[str, Any]]] = {}
        self._listeners_lock = threading.Lock()
        self._scheduler = None
        self._own_scheduler = False
        self._unsubscribe = None
        self._event_pending = False
        self._event_lock = threading.Lock()
        self._closed = False

    # ------------------------------------------------------------ listeners

    def on_verdict(self, callback: Callable[[Verdict], None]) -> Callable[[], None]:
        """Call `callback(verdict)` after each stored verdict; returns an unsubscribe function."""
        with self._listeners_lock:
            self._listeners.append(callback)
        return lambda: self._remove(self._listeners, callback)

    def on_management(self, callback: Callable[[str, dict, Any], None]) -> Callable[[], None]:
        """`callback(action, data, result)` after each management call the policy answered
        (e.g. `acknowledge`: the aggregator records it and tells the node's agent)."""
        with self._listeners_lock:
            self._management_listeners.append(callback)
        return lambda: self._remove(self._management_listeners, callback)

    def add_node_field(self, name: str, values: Callable[[], Mapping[str, Any]]) -> None:
        """Every `nodes_data` entry (the policy's input, `/nodes_status`) gets `name`: `values()[node_id]`,
        or None for a node it does not name (e.g. `quarantine`, from aggregator/quarantine/)."""
        self._node_fields[name] = values

    def on_transition(self, callback: Callable[[Transition], None]) -> Callable[[], None]:
        with self._listeners_lock:
            self._transition_listeners.append(callback)
        return lambda: self._remove(self._transition_listeners, callback)

    def _remove(self, listeners: list, callback) -> None:
        with self._listeners_lock:
            if callback in listeners:
                listeners.remove(callback)

    # ------------------------------------------------------------ reading

    def nodes_data(self) -> list[dict]:
        """The current `nodes_data` (also what /nodes_status serves)."""
        with _gc_paused():
            return self._build_nodes_data()

    def _build_nodes_data(self) -> list[dict]:
        states = self._registry.snapshot()
        with self._throttle_lock:
            self._throttle.observe(states)
            since = dict(self._throttle.since)
        data = build_nodes_data(states, self._clock(), since)
        for name, values in self._node_fields.items():
            try:
                found = values()
            except Exception:  # a failing extra must not take nodes_data down
                log.exception("nodes_data field %s failed", name)
                found = {}
            for entry in data:
                entry[name] = found.get(entry["node_id"])
        return data

    def latest(self) -> Verdict | None:
        return self._verdicts.latest(self.cluster_id)

    def history(self, limit: int = 100, before_id: int | None = None) -> list[Verdict]:
        return self._verdicts.history(self.cluster_id, limit=limit, before_id=before_id)

    # ------------------------------------------------------------ checking

    def check(self, trigger: str = "request") -> Verdict:
        """Evaluate the policy now and store the verdict (never raises for a policy failure)."""
        with self._check_lock, _gc_paused():
            # GC stays paused until nodes_data is freed again: re-enabled earlier,
            # the next collection would walk all of it (see _gc_paused)
            started = self._clock()
            t0 = time.perf_counter()
            nodes_data = self._build_nodes_data()
            uri = DEFAULT_POLICY_URI
            try:
                document = self._document()
                selection = select_policy(document, self._default_source)
                uri = selection.uri
                handle = self._handle_for(selection)
                policy_input = {"cluster_data": document, "cluster": document, "nodes_data": nodes_data}
                result = handle.eval(policy_input, selection.parameters)
                outcome, data = _read_result(result)
                error = ""
            except Exception as e:  # noqa: BLE001 - a policy, its loading or its config failed: a verdict of its own
                outcome, data, error = "error", None, _reason(e)
                log.warning("stability policy %s failed: %s", uri, error)
            node_count = len(nodes_data)
            del nodes_data
            verdict = Verdict(
                cluster_id=self.cluster_id,
                checked_at=started,
                duration_s=time.perf_counter() - t0,
                policy_uri=uri,
                outcome=outcome,
                stability_check_data=data,
                error=error,
                trigger=trigger,
                nodes=node_count,
            )
            previous = self._verdicts.latest_known(self.cluster_id) if outcome != "error" else None
            verdict = self._verdicts.record(verdict)
        self._announce(verdict, previous)
        return verdict

    def check_shared(self, trigger: str = "request") -> Verdict:
        """Like `check`, but a caller arriving while a shared check is pending or running gets its verdict."""
        with self._flight_lock:
            flight = self._flight
            leader = flight is None
            if flight is None:
                flight = self._flight = _Flight()
        if not leader:
            return flight.wait()
        try:
            verdict = self.check(trigger)
        except BaseException as e:
            with self._flight_lock:
                self._flight = None
            flight.fail(e)
            raise
        with self._flight_lock:
            self._flight = None
        flight.finish(verdict)
        return verdict

    def management(self, action: str, data: dict) -> dict:
        """Run the current policy's `management(action, data)`; raises what the policy raised."""
        if not isinstance(action, str) or not action:
            raise ConfigError("mgmt_action: expected a non-empty string")
        with self._check_lock:
            selection = select_policy(self._document(), self._default_source)
            result = self._handle_for(selection).management(action, data)
        with self._listeners_lock:
            listeners = list(self._management_listeners)
        for callback in listeners:
            try:
                callback(action, data, result)
            except Exception:
                log.exception("a stability management listener failed")
        return result

    def _document(self) -> dict:
        try:
            return self._clusters.get(self.cluster_id)
        except UnknownCluster:
            return {}  # not onboarded yet: the policy still sees the nodes

    def _handle_for(self, selection: PolicySelection) -> PolicyHandleLike:
        key = (selection.source, json.dumps(selection.parameters, sort_keys=True))
        if self._handle is not None and self._handle_key == key:
            return self._handle
        if self._handle is not None:
            self._close_handle()
        self._handle = self._open_policy(selection.source, selection.parameters)
        self._handle_key = key
        return self._handle

    def _close_handle(self) -> None:
        handle, self._handle, self._handle_key = self._handle, None, None
        if handle is not None:
            try:
                handle.close()
            except Exception:  # closing a broken worker must not stop the checker
                log.exception("closing the stability policy failed")

    def _announce(self, verdict: Verdict, previous: Verdict | None) -> None:
        with self._listeners_lock:
            listeners = list(self._listeners)
            transition_listeners = list(self._transition_listeners)
        for callback in listeners:
            _call_safely(callback, verdict)
        changed = verdict.outcome != "error" and (
            (previous is None and verdict.outcome == "unstable")
            or (previous is not None and previous.outcome != verdict.outcome)
        )
        if changed:
            log.info("cluster %s is now %s (policy %s)", self.cluster_id, verdict.outcome, verdict.policy_uri)
            for on_change in transition_listeners:
                _call_safely(on_change, Transition(verdict, previous))

    # ------------------------------------------------------------ scheduling

    def start(self, scheduler=None) -> None:
        """Check every `interval_s` and after node changes. `scheduler`: a running APScheduler 3 scheduler."""
        if scheduler is None:
            from apscheduler.schedulers.background import BackgroundScheduler

            scheduler = BackgroundScheduler(timezone=timezone.utc)
            scheduler.start()
            self._own_scheduler = True
        self._scheduler = scheduler
        scheduler.add_job(
            self._scheduled_check,
            "interval",
            seconds=self.interval_s,
            id=f"stability-check-{self.cluster_id}",
            replace_existing=True,
            max_instances=1,
            coalesce=True,
            next_run_time=datetime.now(timezone.utc),
        )
        self._unsubscribe = self._registry.subscribe(self._on_node_change)

    def _scheduled_check(self) -> None:
        self.check("schedule")

    def _on_node_change(self, change: NodeChange) -> None:
        # called on the registry's thread: only schedule, never evaluate here
        if self._scheduler is None or self._closed:
            return
        if change.kind not in TRIGGERING_CHANGES:
            return
        with self._event_lock:
            if self._event_pending:
                return  # a check is already due and will see this change too
            self._event_pending = True
        try:
            self._scheduler.add_job(
                self._event_check,
                "date",
                run_date=datetime.now(timezone.utc) + timedelta(seconds=self.debounce_s),
                id=f"stability-event-{self.cluster_id}",
                replace_existing=True,
                misfire_grace_time=60,
            )
        except Exception:
            with self._event_lock:
                self._event_pending = False
            log.exception("could not schedule a stability check after a node change")

    def _event_check(self) -> None:
        with self._event_lock:
            self._event_pending = False
        self.check("event")

    def close(self) -> None:
        """Stop scheduling and listening, close the policy; safe to call twice."""
        self._closed = True
        unsubscribe, self._unsubscribe = self._unsubscribe, None
        if callable(unsubscribe):
            unsubscribe()
        scheduler, self._scheduler = self._scheduler, None
        if scheduler is not None:
            for job_id in (f"stability-check-{self.cluster_id}", f"stability-event-{self.cluster_id}"):
                try:
                    scheduler.remove_job(job_id)
                except JobLookupError:
                    pass  # not scheduled (ran already, or never added)
            if self._own_scheduler:
                scheduler.shutdown(wait=True)
        with self._check_lock:
            self._close_handle()


_gc_lock = threading.Lock()
_gc_pausers = 0
_gc_restore = False


class _gc_paused:
    """Defers Python's cyclic GC while a large, acyclic `nodes_data` is built.

    Building it allocates a few hundred thousand dicts (5,000 nodes x 8 GPUs),
    which triggers full collections that tripled the build time in
    benchmarks/stability_check.py; nothing built here forms cycles. A check
    keeps it paused until its nodes_data is freed (the policy call included,
    bounded by the policy's time limit): cyclic garbage made meanwhile by
    other threads waits for the next collection, nothing is lost. Counted,
    so overlapping pauses (several threads) re-enable GC only at the last exit,
    and GC that someone else disabled stays disabled.
    """

    def __enter__(self) -> None:
        global _gc_pausers, _gc_restore
        with _gc_lock:
            if _gc_pausers == 0:
                _gc_restore = gc.isenabled()
                gc.disable()
            _gc_pausers += 1

    def __exit__(self, *exc_info) -> None:
        global _gc_pausers
        with _gc_lock:
            _gc_pausers -= 1
            if _gc_pausers == 0 and _gc_restore:
                gc.enable()


class _Flight:
    """One shared check: its verdict (or exception), and the event its joiners wait on."""

    def __init__(self) -> None:
        self._done = threading.Event()
        self._verdict: Verdict | None = None
        self._error: BaseException | None = None

    def finish(self, verdict: Verdict) -> None:
        self._verdict = verdict
        self._done.set()

    def fail(self, error: BaseException) -> None:
        self._error = error
        self._done.set()

    def wait(self) -> Verdict:
        self._done.wait()
        if self._error is not None:
            raise self._error
        assert self._verdict is not None
        return self._verdict


def _read_result(result: Any) -> tuple[str, dict | None]:
    if not isinstance(result, Mapping):
        raise ValueError(f"the policy returned {type(result).__name__}, expected an object with is_stable")
    is_stable = result.get("is_stable")
    if not isinstance(is_stable, bool):
        raise ValueError(f"the policy's result has no boolean is_stable (got {is_stable!r})")
    data = result.get("stability_check_data")
    if data is not None and not isinstance(data, Mapping):
        data = {"value": data}  # keep a non-object answer verbatim, under one key
    if data is not None:
        try:
            strict_json.dumps(data)  # stored and served as JSON: refuse what a reader could not read back
        except strict_json.StrictJsonError as e:
            raise ValueError(f"the policy's stability_check_data is not strict JSON at {e.path}: {e.problem}") from e
    return ("stable" if is_stable else "unstable"), (dict(data) if data is not None else None)


def _reason(e: Exception) -> str:
    reason = getattr(e, "reason", None)
    text = str(reason) if reason else str(e)
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _call_safely(callback, arg) -> None:
    try:
        callback(arg)
    except Exception:
        log.exception("a stability listener failed")

"""Keep the agent's GPU conditions on its Node's status, without flooding the API server.

The GPU health side calls `observe(states)` with the whole set of owned
conditions whenever it re-judges them (any thread; it only records and wakes
the worker, never touches the network). The worker, in its own thread:

- reads the Node once at start (what it already carries: a `lastTransitionTime`
  survives an agent restart when the status did not change), then writes every
  owned type once, even if all are False: "healthy" and "not reporting" differ;
- writes a transition (a status or reason change) `batch_s` after the first
  change it has not written yet, so a burst (an XID, then the GPU lost) is one
  PATCH, well within 2 s of the event;
- writes a change of wording only (a second GPU named, a counter grown, a
  slowdown lasting longer) at most once per `message_interval_s` (default: with
  the heartbeat, so a long-lasting problem whose detail keeps moving costs no
  more than a steady node);
- otherwise writes only the heartbeat: every `heartbeat_s` (default 300 s),
  refreshing `lastHeartbeatTime`. A steady node costs 12 PATCHes an hour,
  nothing more: an unchanged observation never causes a write;
- when a PATCH fails (API server away, 403, 5xx), logs one sentence and retries
  with capped, jittered backoff; each attempt sends the latest state, so what
  changed meanwhile is not replayed step by step: the latest state wins.

`step()` does what is due at `clock()` and says how long to sleep: the thread
loops on it, and a test drives it with an injected clock (a simulated hour).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from agent.backoff import Backoff
from agent.kube.client import KubeApiError, api_error
from agent.kube.conditions import (
    ConditionState,
    WrittenCondition,
    change_kind,
    conditions_patch,
    owned_conditions,
    written_from_entry,
)
from agent.kube.step_loop import StepLoop
from proto.common.settings import number_setting

__all__ = [
    "DEFAULT_BATCH_S",
    "DEFAULT_HEARTBEAT_S",
    "DEFAULT_MESSAGE_INTERVAL_S",
    "ConditionWriterStatus",
    "NodeConditionWriter",
    "condition_writer_from_env",
]

log = logging.getLogger(__name__)

DEFAULT_HEARTBEAT_S = 300.0
DEFAULT_BATCH_S = 0.25
DEFAULT_MESSAGE_INTERVAL_S = DEFAULT_HEARTBEAT_S
STATUS_RESOURCE = "nodes/status"


@dataclass(frozen=True)
class ConditionWriterStatus:
    in_sync: bool  # the Node carries what was last observed
    reads: int
    patches: int  # status PATCHes accepted
    consecutive_failures: int
    last_error: str
    last_success_at: float | None  # clock() of the last accepted PATCH


class NodeConditionWriter:
    def __init__(
        self,
        api: Any,  # agent.kube.client.NodeApi (read_node, patch_node_status)
        node_name: str,
        types: Sequence[str],
        *,
        clock: Callable[[], float] = time.time,
        heartbeat_s: float = DEFAULT_HEARTBEAT_S,
        batch_s: float = DEFAULT_BATCH_S,
        message_interval_s: float | None = None,  # None: the heartbeat
        request_timeout_s: float = 10.0,
        backoff: Backoff | None = None,
    ) -> None:
        if message_interval_s is None:
            message_interval_s = heartbeat_s
        if heartbeat_s <= 0 or batch_s < 0 or message_interval_s < 0:
            raise ValueError(
                f"bad condition writer timing: heartbeat_s={heartbeat_s}, batch_s={batch_s}, "
                f"message_interval_s={message_interval_s}"
            )
        if not types:
            raise ValueError("the condition writer needs the condition types it owns")
        self._api = api
        self.node_name = node_name
        self.types = tuple(types)
        self._clock = clock
        self.heartbeat_s = heartbeat_s
        self.batch_s = batch_s
        self.message_interval_s = message_interval_s
        self._request_timeout_s = request_timeout_s
        # equal jitter: a floor, so a node the agent may not patch (RBAC) is not retried at once, fleet-wide
        self._backoff = backoff or Backoff(jitter="equal")

        self._lock = threading.Lock()  # guards _desired and _pending_since
        self._desired: dict[str, ConditionState] | None = None
        self._pending_since: float | None = None  # clock() when the oldest unwritten change was observed
        self._loop = StepLoop("node-conditions", self.step, self._backoff, request_timeout_s + 1, log)

        # worker-only state
        self._read_done = False
        self._written: dict[str, WrittenCondition] = {}
        self._ever_written = False
        self._last_patch_at: float | None = None
        self._retry_at = 0.0
        self._status = ConditionWriterStatus(False, 0, 0, 0, "", None)

    # ------------------------------------------------------------ health side

    def observe(self, states: Iterable[ConditionState]) -> None:
        """The whole set of owned conditions as they should be now; never blocks."""
        desired = {s.type: s for s in states}
        unknown = set(desired) - set(self.types)
        if unknown or len(desired) != len(self.types):
            raise ValueError(
                f"condition writer owns {sorted(self.types)}; observed {sorted(desired)}"
            )
        with self._lock:
            if desired == self._desired:
                return
            self._desired = desired
            if self._pending_since is None:
                self._pending_since = self._clock()
        self._loop.wake()

    def status(self) -> ConditionWriterStatus:
        return self._status

    def written(self) -> dict[str, WrittenCondition]:
        """What the Node carries for our types, as last read or written (a copy)."""
        return dict(self._written)

    # ------------------------------------------------------------ worker

    def start(self) -> None:
        self._loop.start()

    def stop(self, timeout_s: float | None = None) -> None:
        """Stop the worker; a call in flight ends within `request_timeout_s`."""
        self._loop.stop(timeout_s)

    def step(self) -> float:
        """Do what is due now; return the seconds until something is due next."""
        now = self._clock()
        if now < self._retry_at:
            return self._retry_at - now
        with self._lock:
            desired = self._desired
            pending_since = self._pending_since
        if desired is None:
            return self.heartbeat_s  # nothing observed yet; observe() wakes us
        try:
            if not self._read_done:
                self._read()
            due, changes = self._due_at(desired, pending_since, now)
            if not changes:
                with self._lock:  # a change undone before it was written needs no write
                    if self._desired is desired:
                        self._pending_since = None
                self._status = replace(self._status, in_sync=True)
            if now < due:
                return due - now
            self._patch(desired, now)
        except KubeApiError as exc:
            delay = self._backoff.next_delay()
            self._retry_at = now + delay
            self._status = replace(
                self._status,
                in_sync=False,
                consecutive_failures=self._status.consecutive_failures + 1,
                last_error=str(exc),
            )
            log.warning("node conditions: %s; retrying in %.1f s", exc, delay)
            return delay
        if self._status.consecutive_failures:
            log.info("node conditions: node %r written again after %d failure(s)", self.node_name,
                     self._status.consecutive_failures)
        self._backoff.reset()
        self._retry_at = 0.0
        with self._lock:
            in_sync = self._desired is desired
            if in_sync:
                self._pending_since = None
        self._status = replace(
            self._status, in_sync=in_sync, consecutive_failures=0, last_error="", last_success_at=now
        )
        return 0.0 if not in_sync else self.heartbeat_s

    def _due_at(
        self, desired: dict[str, ConditionState], pending_since: float | None, now: float
    ) -> tuple[float, bool]:
        """When the next PATCH is due, and whether it carries a change (not only the heartbeat)."""
        if not self._ever_written or self._last_patch_at is None:
            return now, True  # the first write at start: every type, False or not
        kinds = {change_kind(state, self._written.get(t)) for t, state in desired.items()}
        first_seen = now if pending_since is None else pending_since
        heartbeat = self._last_patch_at + self.heartbeat_s
        if "transition" in kinds:
            return min(first_seen + self.batch_s, heartbeat), True
        if "message" in kinds:
            return min(max(first_seen + self.batch_s, self._last_patch_at + self.message_interval_s), heartbeat), True
        return heartbeat, False

    # ------------------------------------------------------------ API calls

    def _read(self) -> None:
        try:
            node = self._api.read_node(self.node_name, _request_timeout=self._request_timeout_s)
        except Exception as exc:
            raise api_error(exc, verb="get", node_name=self.node_name, timeout_s=self._request_timeout_s) from exc
        status = getattr(node, "status", None)
        self._written = owned_conditions(getattr(status, "conditions", None), self.types)
        self._read_done = True
        self._status = replace(self._status, reads=self._status.reads + 1)

    def _patch(self, desired: dict[str, ConditionState], now: float) -> None:
        body = conditions_patch(desired.values(), self._written, now)
        try:
            self._api.patch_node_status(self.node_name, body, _request_timeout=self._request_timeout_s)
        except Exception as exc:
            raise api_error(exc, verb="patch", node_name=self.node_name, timeout_s=self._request_timeout_s,
                            resource=STATUS_RESOURCE) from exc
        changed = [
            entry for entry in body["status"]["conditions"]
            if change_kind(desired[entry["type"]], self._written.get(entry["type"])) != "none"
        ]
        self._written = {entry["type"]: written_from_entry(entry) for entry in body["status"]["conditions"]}
        self._ever_written = True
        self._last_patch_at = now
        self._status = replace(self._status, patches=self._status.patches + 1)
        for entry in changed:
            log.info("node conditions: %s=%s (%s): %s", entry["type"], entry["status"], entry["reason"],
                     entry["message"])


def condition_writer_from_env(api: Any, node_name: str, types: Sequence[str], env: Any = None) -> NodeConditionWriter:
    """The daemon's writer: `AIOS_CONDITION_HEARTBEAT_S` (default 300, at least 10) sets the heartbeat.
    Not started: call `.start()`."""
    import os

    env = os.environ if env is None else env
    heartbeat = float(number_setting(env, "AIOS_CONDITION_HEARTBEAT_S", DEFAULT_HEARTBEAT_S, low=10, high=3600,
                                     unit="seconds"))
    return NodeConditionWriter(api, node_name, types, heartbeat_s=heartbeat)

"""The agent's view of its GPUs' health, as the Node conditions it should carry.

It keeps what the health rule (`proto.health.gpu_rule`, the one rule the
aggregator judges with too) needs: the inventory, the latest sample, the
recent health events (pushed XIDs and the events found while sampling), since
when each throttle reason has been in force, and the operator's
acknowledgements (`proto.health.acknowledgements`). After each of them it
judges the node again and, when the outcome changed, hands every owned
condition to its listeners (the Node condition writer), on the caller's
thread; judging costs microseconds and never blocks.

One condition per `ProblemKind` (docs/gpu-health.md): True while the kind has
a problem, with the reason and message of `proto.health.conditions`; False
from the start (`NoCriticalXid`, ...), and False again with the reason saying
why it ended (`GpuAnswersAgain`, ..., `AcknowledgedByOperator`).
`lastTransitionTime` is when the problem was seen (the event's or sample's
time), or when it ended.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import replace

from agent.kube.conditions import ConditionState
from proto.common.settings import number_setting
from proto.health.acknowledgements import unacknowledged
from proto.health.conditions import (
    ACKNOWLEDGED_REASON,
    cleared_reason,
    condition_message,
    healthy_reason,
    problem_reason,
)
from proto.health.gpu_rule import DEFAULT_RULE, GpuProblem, HealthRule, ProblemKind, node_problems
from proto.telemetry.v1.readings import Acknowledgement, HealthEvent, NodeInventory, NodeSample

__all__ = ["GpuHealthTracker", "agent_rule_from_env"]

log = logging.getLogger(__name__)

_MAX_EVENTS = 1000
_MAX_ACKS = 100
Listener = Callable[[list[ConditionState]], None]


def agent_rule_from_env(env: Mapping[str, str] | None = None) -> HealthRule:
    """The rule's settings for the agent's conditions: the registry's defaults, plus a GPU that
    cannot be read (a hung call) and a slowdown lasting `AIOS_THROTTLE_THRESHOLD_S` (300 s)
    as problems; `AIOS_GPU_EVENT_WINDOW_S` (the rule's 600 s) for how long an XID counts."""
    env = os.environ if env is None else env

    def seconds(name: str, default: float) -> float:  # at most a week
        return float(number_setting(env, name, default, low=0, high=7 * 86400, low_exclusive=True, unit="seconds"))

    return replace(
        DEFAULT_RULE,
        unresponsive=True,
        throttle_threshold_s=seconds("AIOS_THROTTLE_THRESHOLD_S", 300.0),
        event_window_s=seconds("AIOS_GPU_EVENT_WINDOW_S", DEFAULT_RULE.event_window_s),
    )


class GpuHealthTracker:
    def __init__(self, rule: HealthRule = DEFAULT_RULE, *, clock: Callable[[], float] = time.time,
                 call_bound_s: float | None = None) -> None:
        self.rule = rule
        self._clock = clock
        self._call_bound_s = call_bound_s
        self._lock = threading.Lock()
        self._inventory: NodeInventory | None = None
        self._sample: NodeSample | None = None
        self._events: deque[HealthEvent] = deque(maxlen=_MAX_EVENTS)  # most recent first
        self._acks: deque[Acknowledgement] = deque(maxlen=_MAX_ACKS)
        self._acked_at: float | None = None  # clock() of the latest acknowledgement
        self._throttle_since: dict[tuple[int, str], float] = {}
        self._states: dict[str, ConditionState] = {}
        self._listeners: list[Listener] = []

    # ------------------------------------------------------------ inputs (any thread)

    def on_change(self, listener: Listener) -> None:
        """`listener(states)` with every owned condition, now and after each change."""
        with self._lock:
            self._listeners.append(listener)
            states = list(self._current(self._clock()).values())
        listener(states)

    def observe_inventory(self, inventory: NodeInventory) -> None:
        with self._lock:
            self._inventory = inventory
        self._judge()

    def observe_sample(self, sample: NodeSample) -> None:
        with self._lock:
            self._sample = sample
            self._note_throttles(sample)
            for event in sample.health_events:
                self._events.appendleft(event)
        self._judge()

    def observe_event(self, event: HealthEvent) -> None:
        """A health event pushed as it arrived (an XID), not with a sample."""
        with self._lock:
            self._events.appendleft(event)
        self._judge()

    def acknowledge(self, ack: Acknowledgement) -> None:
        """The operator acknowledged problems (the aggregator tells us over the stream)."""
        log.info("acknowledged by the operator: GPU %s, events up to %.3f%s%s",
                 "all" if ack.gpu_index is None else ack.gpu_index, ack.up_to,
                 f", XIDs {list(ack.xids)}" if ack.xids else "", f" ({ack.reason})" if ack.reason else "")
        with self._lock:
            self._acks.append(ack)
            self._acked_at = self._clock()
        self._judge()

    # ------------------------------------------------------------ reading

    def problems(self, now: float | None = None) -> tuple[GpuProblem, ...]:
        with self._lock:
            return self._problems(self._clock() if now is None else now)

    def states(self) -> list[ConditionState]:
        with self._lock:
            return list(self._current(self._clock()).values())

    def unresponsive_gpus(self) -> list[int]:
        return sorted({p.gpu_index for p in self.problems() if p.kind is ProblemKind.UNRESPONSIVE
                       and p.gpu_index is not None})

    # ------------------------------------------------------------ judging

    def _judge(self) -> None:
        with self._lock:
            before = dict(self._states)
            states = self._current(self._clock())
            listeners = list(self._listeners) if states != before else []
        for listener in listeners:
            try:
                listener(list(states.values()))
            except Exception:
                log.exception("a GPU condition listener failed")

    def _problems(self, now: float) -> tuple[GpuProblem, ...]:
        if self._inventory is None:
            return ()
        events = unacknowledged(self._events, tuple(self._acks))
        return node_problems(self._inventory, self._sample, events, now, self.rule, self._throttle_since)

    def _current(self, now: float) -> dict[str, ConditionState]:
        """Every owned condition now; remembers them (for transition times and why one ended)."""
        by_kind: dict[ProblemKind, list[GpuProblem]] = {kind: [] for kind in ProblemKind}
        for problem in self._problems(now):
            by_kind[problem.kind].append(problem)
        states = {}
        for kind, problems in by_kind.items():
            previous = self._states.get(kind.condition_type)
            states[kind.condition_type] = self._state(kind, problems, previous, now)
        self._states = states
        return states

    def _state(self, kind: ProblemKind, problems: list[GpuProblem], previous: ConditionState | None,
               now: float) -> ConditionState:
        if problems:
            if previous is not None and previous.status:
                since = previous.since
            else:
                seen = [p.since for p in problems if p.since is not None]
                since = min(min(seen), now) if seen else now
            return ConditionState(kind.condition_type, True, problem_reason(kind, problems),
                                  condition_message(problems), since)
        if previous is None:
            return ConditionState(kind.condition_type, False, healthy_reason(kind), self._healthy_message(kind), now)
        if not previous.status:
            return previous
        if self._acked_at is not None and self._acked_at >= previous.since:
            ack = self._acks[-1]
            return ConditionState(kind.condition_type, False, ACKNOWLEDGED_REASON,
                                  "acknowledged by the operator" + (f": {ack.reason}" if ack.reason else ""), now)
        return ConditionState(kind.condition_type, False, cleared_reason(kind),
                              f"ended: {previous.message}"[:512], now)

    def _healthy_message(self, kind: ProblemKind) -> str:
        rule = self.rule
        if kind is ProblemKind.XID_CRITICAL:
            return f"no critical XID within {rule.event_window_s:g} s and no recovery action asked by the driver"
        if kind is ProblemKind.LOST:
            return "every GPU answers NVML"
        if kind is ProblemKind.MEMORY_ERRORS:
            return "no uncorrectable memory errors"
        if kind is ProblemKind.UNRESPONSIVE:
            bound = f" within {self._call_bound_s:g} s" if self._call_bound_s else ""
            return f"every NVML call returns{bound}"
        threshold = rule.throttle_threshold_s
        return ("no hardware or thermal slowdown" + (f" longer than {threshold:g} s" if threshold else ""))

    def _note_throttles(self, sample: NodeSample) -> None:
        in_force = {(gpu.index, reason) for gpu in sample.gpus for reason in gpu.throttle_reasons}
        for key in list(self._throttle_since):
            if key not in in_force:
                del self._throttle_since[key]
        for key in in_force:
            self._throttle_since.setdefault(key, sample.timestamp)

"""Node conditions the agent owns: what they say, and the status patch that says it.

Pure functions only (the API work is `agent.kube.condition_writer`). A
condition is node-problem-detector's shape: `type` names the problem and
starts with `GPU`, `status` is "True" while the problem is present, `reason`
is one CamelCase word, `message` says which GPU, what was seen and what to
do. The agent owns a fixed set of types (docs/gpu-health.md) and writes all
of them in every patch, so a consumer can tell "healthy" (False) from "not
reporting" (absent or an old `lastHeartbeatTime`).

The patch is a strategic merge patch of `status.conditions`: the API server
merges that list by `type` (the Node's patch merge key), so the kubelet's
conditions (Ready, MemoryPressure, ...) and anybody else's are left alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

__all__ = [
    "MAX_MESSAGE_CHARS",
    "ConditionState",
    "WrittenCondition",
    "change_kind",
    "condition_entry",
    "conditions_patch",
    "owned_conditions",
    "parse_time",
    "rfc3339",
    "written_from_entry",
]

# Kubernetes sets no limit on a Node condition's message; `kubectl describe`
# shows it on one line, and a few GPUs' worth of detail fits in this.
MAX_MESSAGE_CHARS = 1024


@dataclass(frozen=True)
class ConditionState:
    """What one owned condition should say now."""

    type: str  # e.g. "GPUXidCritical"
    status: bool  # True: the problem is present
    reason: str  # CamelCase, e.g. "XidNeedsGpuReset" or "NoCriticalXid"
    message: str
    since: float  # unix seconds: when `status` last changed, as observed (not when written)


@dataclass(frozen=True)
class WrittenCondition:
    """What the Node carries for one owned type (as read, or as we last wrote it)."""

    status: bool
    reason: str
    message: str
    last_transition: float  # unix seconds


def rfc3339(t: float) -> str:
    """Kubernetes' time format (seconds, UTC, `Z`)."""
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: Any) -> float | None:
    """A Kubernetes time (RFC 3339 text, or the client's `datetime`) as unix seconds; None when unreadable."""
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).timestamp()
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _clip(message: str) -> str:
    return message if len(message) <= MAX_MESSAGE_CHARS else message[: MAX_MESSAGE_CHARS - 1] + "…"


def change_kind(desired: ConditionState, written: WrittenCondition | None) -> str:
    """"none", "message" (only the wording changed) or "transition" (status or reason changed, or never written)."""
    if written is None or written.status != desired.status or written.reason != desired.reason:
        return "transition"
    if written.message != _clip(desired.message):
        return "message"
    return "none"


def condition_entry(desired: ConditionState, written: WrittenCondition | None, now: float) -> dict:
    """One `status.conditions[]` entry. `lastTransitionTime` is kept from what the Node carries
    while the status is unchanged (a new reason or message is no transition)."""
    if written is not None and written.status == desired.status:
        transition = written.last_transition
    else:
        transition = desired.since
    return {
        "type": desired.type,
        "status": "True" if desired.status else "False",
        "reason": desired.reason,
        "message": _clip(desired.message),
        "lastHeartbeatTime": rfc3339(now),
        "lastTransitionTime": rfc3339(min(transition, now)),
    }


def conditions_patch(
    desired: Iterable[ConditionState], written: Mapping[str, WrittenCondition], now: float
) -> dict:
    """The strategic merge patch of the status subresource writing every owned condition."""
    entries = [condition_entry(d, written.get(d.type), now) for d in sorted(desired, key=lambda d: d.type)]
    return {"status": {"conditions": entries}}


def written_from_entry(entry: Mapping[str, Any]) -> WrittenCondition:
    return WrittenCondition(
        status=entry.get("status") == "True",
        reason=str(entry.get("reason") or ""),
        message=str(entry.get("message") or ""),
        last_transition=parse_time(entry.get("lastTransitionTime")) or 0.0,
    )


def owned_conditions(conditions: Iterable[Any] | None, types: Iterable[str]) -> dict[str, WrittenCondition]:
    """Our types out of a live Node's `status.conditions` (client models or JSON dicts)."""
    wanted = set(types)
    found: dict[str, WrittenCondition] = {}
    for condition in conditions or ():
        entry = condition if isinstance(condition, Mapping) else _model_entry(condition)
        if entry.get("type") in wanted:
            found[entry["type"]] = written_from_entry(entry)
    return found


def _model_entry(condition: Any) -> dict:
    """A `V1NodeCondition` as the JSON-shaped dict `written_from_entry` reads."""
    return {
        "type": getattr(condition, "type", None),
        "status": getattr(condition, "status", None),
        "reason": getattr(condition, "reason", None),
        "message": getattr(condition, "message", None),
        "lastTransitionTime": getattr(condition, "last_transition_time", None),
    }

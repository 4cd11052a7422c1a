"""Governance (pre-check) policies: the action -> policy map and running a pre-check.

The map lives in SQLite (table `precheck_policies`). A pre-check of an action
with no policy is allowed with its input unchanged. A policy that cannot be
loaded, fails, or answers something other than
`{"allowed": bool, "input_data": ...}` makes the pre-check refuse (fail
closed): a governance rule that cannot be evaluated must not let the action
through. The refusal's reason says what went wrong.

Loaded policies are cached per URI and closed when no action maps to their
URI any more (a changed URI loads the new policy at the next pre-check).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aggregator.db import Database
from aggregator.policies import PolicyError, PolicyHandle

__all__ = [
    "ACTIONS",
    "Governance",
    "GovernanceError",
    "InvalidPolicyMap",
    "PrecheckVerdict",
    "UnknownAction",
]

log = logging.getLogger(__name__)

# docs/network-formats.md §4; add_cluster/remove_cluster are the gateway's, accepted too
ACTIONS = (
    "add_node",
    "remove_node",
    "update_cluster",
    "scale_block",
    "add_block",
    "remove_block",
    "add_vdag_controller",
    "remove_vdag_controller",
    "block_mgmt",
    "cluster_mgmt",
    "add_cluster",
    "remove_cluster",
)

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS precheck_policies (
        action     TEXT PRIMARY KEY,
        policy_uri TEXT NOT NULL,
        updated_at REAL NOT NULL
    )""",
)


class GovernanceError(ValueError):
    """A request to the governance service is invalid."""


class UnknownAction(GovernanceError):
    def __init__(self, names: list[str]) -> None:
        self.names = names
        super().__init__(
            f"unknown pre-check action(s): {', '.join(repr(n) for n in names)}; "
            f"known: {', '.join(ACTIONS)}"
        )


class InvalidPolicyMap(GovernanceError):
    """The update body is not `{action: uri-or-empty-string}`."""


@dataclass(frozen=True)
class PrecheckVerdict:
    allowed: bool
    input_data: Any  # the (possibly modified) input when allowed; the reason when not
    policy_uri: str | None = None  # None: no policy set for the action

    @property
    def reason(self) -> str:
        """The refusal reason as text (empty when allowed)."""
        if self.allowed:
            return ""
        if isinstance(self.input_data, str):
            return self.input_data
        return json.dumps(self.input_data, sort_keys=True)


def _check_action(action: str) -> None:
    if action not in ACTIONS:
        raise UnknownAction([action])


class Governance:
    def __init__(
        self,
        db: Database,
        open_policy: Callable[[str], PolicyHandle],
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`open_policy(uri)` loads a policy (e.g. `functools.partial(open_policy, config=...)`)."""
        self._db = db
        self._open_policy = open_policy
        self._clock = clock
        self._handles: dict[str, PolicyHandle] = {}
        self._lock = threading.Lock()  # guards _handles
        self._load_locks: dict[str, threading.Lock] = {}
        db.ensure_schema(_SCHEMA)

    # --- the map -----------------------------------------------------------

    def policy_map(self) -> dict[str, str]:
        rows = self._db.query("SELECT action, policy_uri FROM precheck_policies ORDER BY action")
        return {row["action"]: row["policy_uri"] for row in rows}

    def policy_for(self, action: str) -> str | None:
        _check_action(action)
        rows = self._db.query("SELECT policy_uri FROM precheck_policies WHERE action = ?", (action,))
        return rows[0]["policy_uri"] if rows else None

    def update(self, changes: Mapping[str, Any]) -> dict[str, str]:
        """Set (a URI) or remove (`""`) each named action; the others keep theirs."""
        if not isinstance(changes, Mapping):
            raise InvalidPolicyMap(
                f"the body must be a JSON object of action -> policy rule URI, not {type(changes).__name__}"
            )
        unknown = sorted(name for name in changes if name not in ACTIONS)
        if unknown:
            raise UnknownAction(unknown)
        for action, uri in changes.items():
            if not isinstance(uri, str):
                raise InvalidPolicyMap(
                    f"{action}: the value must be a policy rule URI or \"\" (to remove), not {type(uri).__name__}"
                )
        now = self._clock()
        with self._db.transaction() as conn:
            for action, uri in changes.items():
                if uri.strip():
                    conn.execute(
                        "INSERT INTO precheck_policies (action, policy_uri, updated_at) VALUES (?, ?, ?) "
                        "ON CONFLICT(action) DO UPDATE SET policy_uri = excluded.policy_uri, "
                        "updated_at = excluded.updated_at",
                        (action, uri.strip(), now),
                    )
                else:
                    conn.execute("DELETE FROM precheck_policies WHERE action = ?", (action,))
        current = self.policy_map()
        self._close_unused(set(current.values()))
        return current

    def seed(self, mapping: Mapping[str, str]) -> dict[str, str]:
        """Fill actions that have no policy yet (e.g. from the cluster's `config.actionsPolicyMap`)."""
        existing = self.policy_map()
        fresh = {a: u for a, u in mapping.items() if a not in existing and isinstance(u, str) and u.strip()}
        return self.update(fresh) if fresh else existing

    # --- running -----------------------------------------------------------

    def precheck(self, action: str, input_data: dict) -> PrecheckVerdict:
        for attempt in (1, 2):
            uri = self.policy_for(action)
            if uri is None:
                return PrecheckVerdict(True, input_data, None)
            handle = None
            try:
                handle = self._handle(uri)
                result = handle.eval(input_data)
                break
            except PolicyError as exc:
                with self._lock:
                    replaced = handle is not None and self._handles.get(uri) is not handle
                if attempt == 1 and replaced:
                    continue  # a map update closed this handle mid-call; ask the current map again
                log.warning("pre-check %s: policy %s failed, refusing: %s", action, uri, exc.reason)
                return PrecheckVerdict(False, f"pre-check policy {uri} failed: {exc.reason}", uri)
        allowed = result.get("allowed")
        if not isinstance(allowed, bool) or "input_data" not in result:
            return PrecheckVerdict(
                False,
                f"pre-check policy {uri} answered without a boolean 'allowed' and an 'input_data'",
                uri,
            )
        return PrecheckVerdict(allowed, result["input_data"], uri)

    def _handle(self, uri: str) -> PolicyHandle:
        with self._lock:
            handle = self._handles.get(uri)
            if handle is not None:
                return handle
            load_lock = self._load_locks.setdefault(uri, threading.Lock())
        with load_lock:  # one load per URI even when pre-checks race
            with self._lock:
                handle = self._handles.get(uri)
            if handle is None:
                handle = self._open_policy(uri)
                with self._lock:
                    self._handles[uri] = handle
            return handle

    def _close_unused(self, in_use: set[str]) -> None:
        with self._lock:
            stale = [uri for uri in self._handles if uri not in in_use]
            closing = [self._handles.pop(uri) for uri in stale]
        for handle in closing:
            handle.close()

    def close(self) -> None:
        self._close_unused(set())

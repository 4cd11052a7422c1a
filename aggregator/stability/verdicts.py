"""Stability verdicts and their bounded history in the aggregator's SQLite database."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field, replace

from aggregator import strict_json
from aggregator.db import Database

__all__ = ["OUTCOMES", "Verdict", "VerdictStore"]

# stable / unstable: the policy's answer; error: the policy (or its loading)
# failed, and `error` says why. An error is never reported as stable.
OUTCOMES = ("stable", "unstable", "error")

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS stability_verdicts (
        id                   INTEGER PRIMARY KEY AUTOINCREMENT,
        cluster_id           TEXT NOT NULL,
        checked_at           REAL NOT NULL,
        duration_s           REAL NOT NULL,
        policy_uri           TEXT NOT NULL,
        outcome              TEXT NOT NULL CHECK (outcome IN ('stable', 'unstable', 'error')),
        stability_check_data TEXT,
        error                TEXT NOT NULL DEFAULT '',
        trigger              TEXT NOT NULL DEFAULT '',
        nodes                INTEGER NOT NULL DEFAULT 0
    )""",
    "CREATE INDEX IF NOT EXISTS stability_verdicts_cluster ON stability_verdicts (cluster_id, id)",
)


@dataclass(frozen=True)
class Verdict:
    cluster_id: str
    checked_at: float  # unix seconds when the check started
    duration_s: float
    policy_uri: str
    outcome: str  # one of OUTCOMES
    stability_check_data: dict | None = None
    error: str = ""
    trigger: str = ""  # "schedule", "event", "request", ...
    nodes: int = 0
    id: int | None = field(default=None, compare=False)

    @property
    def is_stable(self) -> bool | None:
        return None if self.outcome == "error" else self.outcome == "stable"

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "cluster_id": self.cluster_id,
            "outcome": self.outcome,
            "is_stable": self.is_stable,
            "stability_check_data": self.stability_check_data,
            "error": self.error or None,
            "checked_at": self.checked_at,
            "duration_s": round(self.duration_s, 6),
            "policy_uri": self.policy_uri,
            "trigger": self.trigger,
            "nodes": self.nodes,
        }


class VerdictStore:
    """Appends verdicts; keeps the newest `history_limit` per cluster."""

    def __init__(self, db: Database, *, history_limit: int = 1000) -> None:
        if history_limit < 1:
            raise ValueError("history_limit must be at least 1")
        self._db = db
        self._limit = history_limit
        db.ensure_schema(_SCHEMA)

    def record(self, verdict: Verdict) -> Verdict:
        data = None if verdict.stability_check_data is None else strict_json.dumps(verdict.stability_check_data)
        with self._db.transaction() as conn:
            cursor = conn.execute(
                "INSERT INTO stability_verdicts (cluster_id, checked_at, duration_s, policy_uri, outcome, "
                "stability_check_data, error, trigger, nodes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    verdict.cluster_id,
                    verdict.checked_at,
                    verdict.duration_s,
                    verdict.policy_uri,
                    verdict.outcome,
                    data,
                    verdict.error,
                    verdict.trigger,
                    verdict.nodes,
                ),
            )
            new_id = cursor.lastrowid
            if new_id is None:  # pragma: no cover - sqlite3 sets it after every INSERT
                raise sqlite3.DatabaseError("stability_verdicts: the INSERT gave no row id")
            conn.execute(
                "DELETE FROM stability_verdicts WHERE cluster_id = ? AND id <= ?",
                (verdict.cluster_id, new_id - self._limit),
            )
        return replace(verdict, id=new_id)

    def latest(self, cluster_id: str) -> Verdict | None:
        found = self.history(cluster_id, limit=1)
        return found[0] if found else None

    def latest_known(self, cluster_id: str) -> Verdict | None:
        """The newest verdict that is an answer (stable or unstable), not an error."""
        rows = self._db.query(
            "SELECT * FROM stability_verdicts WHERE cluster_id = ? AND outcome != 'error' ORDER BY id DESC LIMIT 1",
            (cluster_id,),
        )
        return _verdict(rows[0]) if rows else None

    def history(self, cluster_id: str, *, limit: int = 100, before_id: int | None = None) -> list[Verdict]:
        """Newest first."""
        sql = "SELECT * FROM stability_verdicts WHERE cluster_id = ?"
        params: list = [cluster_id]
        if before_id is not None:
            sql += " AND id < ?"
            params.append(before_id)
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(max(0, limit))
        return [_verdict(r) for r in self._db.query(sql, params)]


def _verdict(row) -> Verdict:
    return Verdict(
        id=row["id"],
        cluster_id=row["cluster_id"],
        checked_at=row["checked_at"],
        duration_s=row["duration_s"],
        policy_uri=row["policy_uri"],
        outcome=row["outcome"],
        stability_check_data=None if row["stability_check_data"] is None else json.loads(row["stability_check_data"]),
        error=row["error"],
        trigger=row["trigger"],
        nodes=row["nodes"],
    )

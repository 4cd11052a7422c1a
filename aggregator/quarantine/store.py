"""The quarantine's state and its history of actions, in the aggregator's SQLite database.

`quarantine_nodes`: one row per node the quarantine has something to say
about now (quarantined, would be, held, over budget, refused, failed). It
survives a restart, so a restarted aggregator knows which taints are its own
and which nodes it cordoned.

`quarantine_actions`: every decision that changed something, or would have
in dry-run: quarantine, release, retaint, hold, over budget, refusal,
failure; each with the mode, the reason, the GPUs, the outcome and the
stability verdict it followed (if any). Bounded to the newest `history_limit`.
Beside the stability verdict history, it is the record of what the
aggregator did to the cluster and why.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

from aggregator.db import Database
from aggregator.quarantine.plan import Blocked

__all__ = ["QuarantineAction", "QuarantineRecord", "QuarantineStore"]

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS quarantine_nodes (
        node_id      TEXT PRIMARY KEY,
        node_name    TEXT NOT NULL DEFAULT '',
        state        TEXT NOT NULL,
        reason       TEXT NOT NULL DEFAULT '',
        detail       TEXT NOT NULL DEFAULT '',
        gpus         TEXT NOT NULL DEFAULT '[]',
        since        REAL NOT NULL,
        mode         TEXT NOT NULL DEFAULT '',
        tainted      INTEGER NOT NULL DEFAULT 0,
        cordoned     INTEGER NOT NULL DEFAULT 0,
        block_action TEXT,
        block_reason TEXT,
        block_until  REAL,
        block_state  TEXT
    )""",
    """CREATE TABLE IF NOT EXISTS quarantine_actions (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        at         REAL NOT NULL,
        node_id    TEXT NOT NULL,
        node_name  TEXT NOT NULL DEFAULT '',
        action     TEXT NOT NULL,
        outcome    TEXT NOT NULL,
        mode       TEXT NOT NULL,
        reason     TEXT NOT NULL DEFAULT '',
        detail     TEXT NOT NULL DEFAULT '',
        gpus       TEXT NOT NULL DEFAULT '[]',
        verdict_id INTEGER
    )""",
    "CREATE INDEX IF NOT EXISTS quarantine_actions_node ON quarantine_actions (node_id, at)",
)


@dataclass(frozen=True)
class QuarantineRecord:
    node_id: str
    state: str  # quarantined, would_quarantine, held, over_budget, refused, failed
    since: float
    node_name: str = ""
    reason: str = ""
    detail: str = ""
    gpus: tuple[int, ...] = ()
    mode: str = ""
    tainted: bool = False  # our taint is on the Node (as far as we know)
    cordoned: bool = False  # we cordoned it (an operator's cordon is never lifted by us)
    blocked: Blocked | None = None

    def to_json(self) -> dict:
        """What `/nodes_status`, `GET /quarantine` and the policy's `nodes_data` show."""
        document: dict[str, Any] = {
            "state": self.state,
            "reason": self.reason,
            "detail": self.detail,
            "gpus": list(self.gpus),
            "since": self.since,
            "mode": self.mode,
            "tainted": self.tainted,
            "cordoned": self.cordoned,
        }
        if self.blocked is not None:
            document["retry_after"] = self.blocked.until
        return document


@dataclass(frozen=True)
class QuarantineAction:
    at: float
    node_id: str
    action: str  # quarantine, release, retaint, hold, over_budget, refused, failed
    outcome: str  # applied, dry_run, refused, failed, reported
    mode: str
    node_name: str = ""
    reason: str = ""
    detail: str = ""
    gpus: tuple[int, ...] = ()
    verdict_id: int | None = None
    id: int | None = field(default=None, compare=False)

    def to_json(self) -> dict:
        return {
            "id": self.id, "at": self.at, "node_id": self.node_id, "node_name": self.node_name,
            "action": self.action, "outcome": self.outcome, "mode": self.mode, "reason": self.reason,
            "detail": self.detail, "gpus": list(self.gpus), "verdict_id": self.verdict_id,
        }


class QuarantineStore:
    def __init__(self, db: Database, *, history_limit: int = 10_000) -> None:
        if history_limit < 1:
            raise ValueError("history_limit must be at least 1")
        self._db = db
        self._limit = history_limit
        db.ensure_schema(_SCHEMA)

    # ------------------------------------------------------------ state

    def current(self) -> dict[str, QuarantineRecord]:
        return {row["node_id"]: _record(row) for row in self._db.query("SELECT * FROM quarantine_nodes")}

    def put(self, record: QuarantineRecord) -> None:
        block = record.blocked
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT INTO quarantine_nodes (node_id, node_name, state, reason, detail, gpus, since, mode, tainted, "
                "cordoned, block_action, block_reason, block_until, block_state) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(node_id) DO UPDATE SET node_name = excluded.node_name, state = excluded.state, "
                "reason = excluded.reason, detail = excluded.detail, gpus = excluded.gpus, since = excluded.since, "
                "mode = excluded.mode, tainted = excluded.tainted, cordoned = excluded.cordoned, "
                "block_action = excluded.block_action, block_reason = excluded.block_reason, "
                "block_until = excluded.block_until, block_state = excluded.block_state",
                (
                    record.node_id, record.node_name, record.state, record.reason, record.detail,
                    json.dumps(list(record.gpus)), record.since, record.mode, int(record.tainted), int(record.cordoned),
                    block.action if block else None, block.reason if block else None,
                    block.until if block else None, block.state if block else None,
                ),
            )

    def delete(self, node_id: str) -> None:
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM quarantine_nodes WHERE node_id = ?", (node_id,))

    # ------------------------------------------------------------ history

    def record_action(self, action: QuarantineAction) -> QuarantineAction:
        with self._db.transaction() as conn:
            cursor = conn.execute(
                "INSERT INTO quarantine_actions (at, node_id, node_name, action, outcome, mode, reason, detail, gpus, "
                "verdict_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    action.at, action.node_id, action.node_name, action.action, action.outcome, action.mode,
                    action.reason, action.detail[:4096], json.dumps(list(action.gpus)), action.verdict_id,
                ),
            )
            new_id = cursor.lastrowid or 0
            conn.execute("DELETE FROM quarantine_actions WHERE id <= ?", (new_id - self._limit,))
        return replace(action, id=new_id)

    def quarantines_since(self, since: float) -> dict[str, int]:
        """Node id -> quarantines applied since `since` (the cycles that count against a flapping node)."""
        rows = self._db.query(
            "SELECT node_id, COUNT(*) AS n FROM quarantine_actions WHERE action = 'quarantine' AND outcome = 'applied' "
            "AND at >= ? GROUP BY node_id",
            (since,),
        )
        return {row["node_id"]: row["n"] for row in rows}

    def history(self, *, limit: int = 100, node_id: str | None = None, before_id: int | None = None) -> list[QuarantineAction]:
        """Newest first."""
        sql = "SELECT * FROM quarantine_actions WHERE 1 = 1"
        params: list[Any] = []
        if node_id is not None:
            sql += " AND node_id = ?"
            params.append(node_id)
        if before_id is not None:
            sql += " AND id < ?"
            params.append(before_id)
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(max(0, limit))
        return [_action(row) for row in self._db.query(sql, params)]


def _record(row) -> QuarantineRecord:
    blocked = None
    if row["block_action"]:
        blocked = Blocked(row["block_action"], row["block_reason"] or "", row["block_until"] or 0.0, row["block_state"] or "")
    return QuarantineRecord(
        node_id=row["node_id"], state=row["state"], since=row["since"], node_name=row["node_name"],
        reason=row["reason"], detail=row["detail"], gpus=tuple(json.loads(row["gpus"])), mode=row["mode"],
        tainted=bool(row["tainted"]), cordoned=bool(row["cordoned"]), blocked=blocked,
    )


def _action(row) -> QuarantineAction:
    return QuarantineAction(
        id=row["id"], at=row["at"], node_id=row["node_id"], node_name=row["node_name"], action=row["action"],
        outcome=row["outcome"], mode=row["mode"], reason=row["reason"], detail=row["detail"],
        gpus=tuple(json.loads(row["gpus"])), verdict_id=row["verdict_id"],
    )

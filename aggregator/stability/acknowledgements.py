"""Operator acknowledgements of GPU problems: recorded, and sent to the nodes' agents.

An operator acknowledges through the stability policy's `acknowledge`
management action (`POST /mgmt`, contracts.md §5). After the policy answered,
`acknowledgements_from` turns that into one `Acknowledgement` per node (pure):

- from the policy's answer when it lists what it acknowledged, as the default
  policy does: `{"acknowledged": [{"node_id", "gpu", "xid", "up_to"}, ...]}`;
- else from the request: `mgmt_data.node_id` (absent: every node), `gpu`
  (absent: every GPU), up to now.

`AcknowledgementBook` keeps them in SQLite (the quarantine judges with them
after a restart too), hands them to its listeners (the ingest sends each to
the node's open stream), and answers which acknowledgements a node has, for
the quarantine and for an agent that (re)connects.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from aggregator.db import Database
from proto.telemetry.v1.readings import Acknowledgement

__all__ = ["AcknowledgementBook", "acknowledgements_from"]

log = logging.getLogger(__name__)

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS gpu_acknowledgements (
        id        INTEGER PRIMARY KEY AUTOINCREMENT,
        node_id   TEXT NOT NULL,
        gpu_index INTEGER,
        up_to     REAL NOT NULL,
        xids      TEXT NOT NULL DEFAULT '[]',
        reason    TEXT NOT NULL DEFAULT '',
        at        REAL NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS gpu_acknowledgements_node ON gpu_acknowledgements (node_id, up_to)",
)
_MAX_ENTRIES = 10_000


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _gpu(value: Any) -> int | bool | None:
    """A GPU index, None (every GPU), or False (not a GPU index)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 1023:
        return False
    return value


def acknowledgements_from(
    result: Any, data: Mapping[str, Any], node_ids: Iterable[str], now: float, reason: str = "acknowledged"
) -> dict[str, list[Acknowledgement]]:
    """Node id -> its acknowledgements, from the policy's answer or else the request (pure; see the module doc).
    Entries that are not what they should be are skipped (and logged), never half-applied."""
    known = set(node_ids)
    found: dict[str, list[Acknowledgement]] = {}
    listed = result.get("acknowledged") if isinstance(result, Mapping) else None
    if isinstance(listed, list):
        for i, entry in enumerate(listed[:_MAX_ENTRIES]):
            node_id = entry.get("node_id") if isinstance(entry, Mapping) else None
            up_to = _number(entry.get("up_to")) if isinstance(entry, Mapping) else None
            gpu = _gpu(entry.get("gpu")) if isinstance(entry, Mapping) else False
            xid = entry.get("xid") if isinstance(entry, Mapping) else None
            if not isinstance(node_id, str) or node_id not in known or up_to is None or gpu is False:
                log.warning("acknowledgement: the policy's acknowledged[%d] is not {node_id, gpu, xid, up_to} "
                            "of a known node: %r", i, entry)
                continue
            xids = (xid,) if isinstance(xid, int) and not isinstance(xid, bool) and xid >= 0 else ()
            found.setdefault(node_id, []).append(Acknowledgement(up_to=up_to, gpu_index=gpu, xids=xids, reason=reason))
        return found
    node_id = data.get("node_id")
    gpu = _gpu(data.get("gpu"))
    if gpu is False:
        log.warning("acknowledgement: mgmt_data.gpu %r is not a GPU index: nothing acknowledged", data.get("gpu"))
        return {}
    targets = known if node_id is None else ({node_id} & known if isinstance(node_id, str) else set())
    return {n: [Acknowledgement(up_to=now, gpu_index=gpu, reason=reason)] for n in sorted(targets)}


class AcknowledgementBook:
    def __init__(self, db: Database, *, clock: Callable[[], float], keep_s: float = 7 * 86400) -> None:
        self._db = db
        self._clock = clock
        self._keep_s = keep_s
        self._lock = threading.Lock()
        self._listeners: list[Callable[[str, Acknowledgement], None]] = []
        db.ensure_schema(_SCHEMA)

    def on_acknowledged(self, listener: Callable[[str, Acknowledgement], None]) -> None:
        with self._lock:
            self._listeners.append(listener)

    def record(self, acks: Mapping[str, list[Acknowledgement]]) -> int:
        """Store and announce; returns how many were recorded."""
        now = self._clock()
        rows = [(node_id, a.gpu_index, a.up_to, json.dumps(list(a.xids)), a.reason[:1024], now)
                for node_id, items in acks.items() for a in items]
        if not rows:
            return 0
        with self._db.transaction() as conn:
            conn.executemany(
                "INSERT INTO gpu_acknowledgements (node_id, gpu_index, up_to, xids, reason, at) VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
            conn.execute("DELETE FROM gpu_acknowledgements WHERE at < ?", (now - self._keep_s,))
        with self._lock:
            listeners = list(self._listeners)
        for node_id, items in acks.items():
            for ack in items:
                for listener in listeners:
                    try:
                        listener(node_id, ack)
                    except Exception:
                        log.exception("an acknowledgement listener failed")
        return len(rows)

    def for_node(self, node_id: str) -> list[Acknowledgement]:
        rows = self._db.query(
            "SELECT gpu_index, up_to, xids, reason FROM gpu_acknowledgements WHERE node_id = ? ORDER BY id", (node_id,)
        )
        return [_ack(row) for row in rows]

    def by_node(self) -> dict[str, list[Acknowledgement]]:
        found: dict[str, list[Acknowledgement]] = {}
        for row in self._db.query("SELECT node_id, gpu_index, up_to, xids, reason FROM gpu_acknowledgements ORDER BY id"):
            found.setdefault(row["node_id"], []).append(_ack(row))
        return found


def _ack(row) -> Acknowledgement:
    return Acknowledgement(up_to=row["up_to"], gpu_index=row["gpu_index"], xids=tuple(json.loads(row["xids"])),
                           reason=row["reason"])

"""Stored cluster documents (the onboarding document, kept as JSON in SQLite).

One row per cluster id. Every write replaces the whole document inside one
transaction, so a reader sees the old document or the new one, never half.
Documents are written as strict JSON (`aggregator/strict_json.py`): one that
could not be read back (NaN, a lone surrogate, too deep) is refused with
`StrictJsonError` before anything is written.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from aggregator import strict_json
from aggregator.db import Database

__all__ = ["ClusterStore", "Document", "UnknownCluster"]

# a cluster document as JSON gives it
Document = dict[str, Any]

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS cluster_documents (
        cluster_id TEXT PRIMARY KEY,
        document   TEXT NOT NULL,
        updated_at REAL NOT NULL
    )""",
)


class UnknownCluster(KeyError):
    """No document is stored for that cluster id."""


def _stored_document(text: str, cluster_id: str) -> Document:
    document = json.loads(text)
    if not isinstance(document, dict):  # only put() writes here, and it writes objects
        raise ValueError(f"cluster {cluster_id!r}: the stored document is not a JSON object")
    return document


class ClusterStore:
    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock
        db.ensure_schema(_SCHEMA)

    def get(self, cluster_id: str) -> Document:
        rows = self._db.query(
            "SELECT document FROM cluster_documents WHERE cluster_id = ?", (cluster_id,)
        )
        if not rows:
            raise UnknownCluster(cluster_id)
        return _stored_document(rows[0]["document"], cluster_id)

    def ids(self) -> list[str]:
        return [r["cluster_id"] for r in self._db.query("SELECT cluster_id FROM cluster_documents ORDER BY cluster_id")]

    def put(self, cluster_id: str, document: Document) -> None:
        text = strict_json.dumps(document)
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT INTO cluster_documents (cluster_id, document, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT(cluster_id) DO UPDATE SET document = excluded.document, updated_at = excluded.updated_at",
                (cluster_id, text, self._clock()),
            )

    def update(self, cluster_id: str, change: Callable[[Document], Document]) -> Document:
        """Apply `change` to the stored document atomically; it may raise to abort."""
        with self._db.transaction() as conn:
            row = conn.execute(
                "SELECT document FROM cluster_documents WHERE cluster_id = ?", (cluster_id,)
            ).fetchone()
            if row is None:
                raise UnknownCluster(cluster_id)
            new_document = change(_stored_document(row["document"], cluster_id))
            conn.execute(
                "UPDATE cluster_documents SET document = ?, updated_at = ? WHERE cluster_id = ?",
                (strict_json.dumps(new_document), self._clock(), cluster_id),
            )
        return new_document

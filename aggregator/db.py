"""The aggregator's one SQLite database (WAL), shared by the modules that store.

Each module owns its tables and declares them with `ensure_schema`; writes go
through `transaction()` so a change is applied whole or not at all. WAL with
synchronous=NORMAL survives a killed process (SIGKILL) without losing a
committed transaction; only a power cut can lose the last few.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["Database"]


class Database:
    def __init__(self, path: str | Path, *, synchronous: str = "NORMAL") -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(
            self.path, check_same_thread=False, isolation_level=None, timeout=30.0
        )
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute(f"PRAGMA synchronous={synchronous}")
        self._conn.execute("PRAGMA foreign_keys=ON")
        self._ping_conn: sqlite3.Connection | None = None
        self._ping_lock = threading.Lock()

    def ensure_schema(self, statements: Sequence[str]) -> None:
        with self.transaction() as conn:
            for statement in statements:
                conn.execute(statement)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            else:
                self._conn.execute("COMMIT")

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def ping(self) -> bool:
        """Whether the file answers a read, on a connection of its own.

        For health checks: a WAL reader never waits for a writer, so this does
        not queue behind the store's transactions (which hold `_lock`).
        """
        with self._ping_lock:
            if self._ping_conn is None:
                self._ping_conn = sqlite3.connect(self.path, check_same_thread=False, timeout=1.0)
            return self._ping_conn.execute("SELECT count(*) FROM sqlite_master").fetchone() is not None

    def close(self) -> None:
        with self._ping_lock:
            if self._ping_conn is not None:
                self._ping_conn.close()
                self._ping_conn = None
        with self._lock:
            self._conn.close()

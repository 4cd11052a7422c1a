"""SQLite tables behind the node registry: nodes and their health events.

Inventories and the latest sample are stored in their protobuf wire form
(compact, versioned with the proto, cheap to write); the figures the registry
works from are plain columns. One `write()` is one transaction, so a node's
row and the acknowledged sequence number it carries are on disk together or
not at all: an agent is only told "acked" after `write()` returned.
"""

from __future__ import annotations

from aggregator.db import Database
from aggregator.telemetry.model import NodeRecord, PendingWrite, RollingFigures, SampleFigures, StoredEvent
from proto.telemetry.v1 import convert
from proto.telemetry.v1 import telemetry_pb2 as pb
from proto.telemetry.v1.readings import HealthEvent

__all__ = ["SCHEMA", "NodeStore"]

SCHEMA = (
    # inventories change rarely and are large: their own table, so the
    # per-sample update of a node's state does not rewrite them
    """CREATE TABLE IF NOT EXISTS telemetry_node_inventory (
        node_id TEXT PRIMARY KEY,
        inventory BLOB NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS telemetry_node_state (
        node_id TEXT PRIMARY KEY,
        status TEXT NOT NULL,
        first_seen REAL NOT NULL,
        last_seen REAL NOT NULL,
        agent_version TEXT NOT NULL,
        cluster_id TEXT NOT NULL,
        interval_s REAL NOT NULL,
        agent_instance TEXT NOT NULL,
        acked_seq INTEGER NOT NULL,
        latest_sample BLOB,
        sample_ts REAL, sample_cpu REAL, sample_gpu REAL, sample_mem REAL, sample_problems TEXT,
        cpu_1m REAL, cpu_5m REAL, cpu_15m REAL,
        gpu_1m REAL, gpu_5m REAL, gpu_15m REAL,
        mem_1m REAL, mem_5m REAL, mem_15m REAL,
        samples_received INTEGER NOT NULL,
        dropped_samples INTEGER NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS telemetry_health_events (
        node_id TEXT NOT NULL,
        agent_instance TEXT NOT NULL,
        seq INTEGER NOT NULL,
        kind TEXT NOT NULL,
        timestamp REAL NOT NULL,
        gpu_index INTEGER,
        gpu_uuid TEXT NOT NULL,
        xid INTEGER,
        message TEXT NOT NULL,
        nvml_error TEXT NOT NULL,
        PRIMARY KEY (node_id, agent_instance, seq)
    )""",
    """CREATE INDEX IF NOT EXISTS telemetry_health_events_by_time
        ON telemetry_health_events (node_id, timestamp)""",
)

_STATE_COLUMNS = (
    "status, first_seen, last_seen, agent_version, cluster_id, interval_s, agent_instance, "
    "acked_seq, latest_sample, sample_ts, sample_cpu, sample_gpu, sample_mem, sample_problems, "
    "cpu_1m, cpu_5m, cpu_15m, gpu_1m, gpu_5m, gpu_15m, mem_1m, mem_5m, mem_15m, "
    "samples_received, dropped_samples"
)
_STATE_NAMES = [c.strip() for c in _STATE_COLUMNS.split(",")]
_UPSERT_STATE = (
    f"INSERT INTO telemetry_node_state (node_id, {_STATE_COLUMNS}) "
    f"VALUES ({', '.join('?' * (len(_STATE_NAMES) + 1))}) "
    "ON CONFLICT(node_id) DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in _STATE_NAMES)
)
_UPSERT_INVENTORY = (
    "INSERT INTO telemetry_node_inventory (node_id, inventory) VALUES (?, ?) "
    "ON CONFLICT(node_id) DO UPDATE SET inventory = excluded.inventory"
)
_INSERT_EVENT = (
    "INSERT OR IGNORE INTO telemetry_health_events "
    "(node_id, agent_instance, seq, kind, timestamp, gpu_index, gpu_uuid, xid, message, nvml_error) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _state_row(rec: NodeRecord) -> tuple:
    f = rec.figures
    r = rec.rolling
    return (
        rec.status,
        rec.first_seen,
        rec.last_seen,
        rec.agent_version,
        rec.cluster_id,
        rec.interval_s,
        rec.agent_instance,
        rec.seq,
        rec.latest_sample,
        f.timestamp if f else None,
        f.cpu_percent if f else None,
        f.gpu_utilization_pct if f else None,
        f.memory_used_pct if f else None,
        "\n".join(f.gpu_problems) if f else None,
        *r.cpu_percent,
        *r.gpu_utilization_pct,
        *r.memory_used_pct,
        rec.samples_received,
        rec.dropped_samples,
    )


def _event(row) -> HealthEvent:
    return HealthEvent(
        kind=row["kind"],
        timestamp=row["timestamp"],
        gpu_index=row["gpu_index"],
        gpu_uuid=row["gpu_uuid"],
        xid=row["xid"],
        message=row["message"],
        nvml_error=row["nvml_error"],
    )


class NodeStore:
    def __init__(self, db: Database, *, events_per_node_loaded: int = 200) -> None:
        self._db = db
        self._events_per_node_loaded = events_per_node_loaded
        db.ensure_schema(SCHEMA)

    def write(self, pending: PendingWrite) -> None:
        """Everything in `pending`, in one transaction."""
        with self._db.transaction() as conn:
            changed = [rec for rec in pending.nodes if rec.node_id in pending.inventory_changed]
            if changed:
                conn.executemany(
                    _UPSERT_INVENTORY,
                    [(rec.node_id, convert.inventory_to_pb(rec.inventory).SerializeToString()) for rec in changed],
                )
            if pending.nodes:
                conn.executemany(_UPSERT_STATE, [(rec.node_id, *_state_row(rec)) for rec in pending.nodes])
            if pending.events:
                conn.executemany(
                    _INSERT_EVENT,
                    [
                        (
                            s.node_id,
                            s.agent_instance,
                            s.seq,
                            s.event.kind,
                            s.event.timestamp,
                            s.event.gpu_index,
                            s.event.gpu_uuid,
                            s.event.xid,
                            s.event.message,
                            s.event.nvml_error,
                        )
                        for s in pending.events
                    ],
                )

    def load(self) -> tuple[list[NodeRecord], list[StoredEvent]]:
        """Every node, and each node's most recent events (oldest first)."""
        records = [
            self._record(row)
            for row in self._db.query(
                "SELECT s.*, i.inventory FROM telemetry_node_state AS s"
                " JOIN telemetry_node_inventory AS i USING (node_id)"
            )
        ]
        rows = self._db.query(
            "SELECT * FROM ("
            " SELECT *, ROW_NUMBER() OVER (PARTITION BY node_id ORDER BY timestamp DESC, seq DESC) AS rn"
            " FROM telemetry_health_events"
            ") WHERE rn <= ? ORDER BY timestamp, seq",
            (self._events_per_node_loaded,),
        )
        events = [
            StoredEvent(row["node_id"], row["agent_instance"], row["seq"], _event(row))
            for row in rows
        ]
        return records, events

    def delete_node(self, node_id: str) -> bool:
        """Forget one node: its state, inventory and health events, in one transaction.

        Returns whether anything was stored for it.
        """
        with self._db.transaction() as conn:
            deleted = 0
            for table in ("telemetry_node_state", "telemetry_node_inventory", "telemetry_health_events"):
                deleted += conn.execute(f"DELETE FROM {table} WHERE node_id = ?", (node_id,)).rowcount
            return deleted > 0

    def prune_events(self, keep_per_node: int) -> int:
        """Delete all but each node's `keep_per_node` most recent events; returns how many went."""
        with self._db.transaction() as conn:
            cursor = conn.execute(
                "DELETE FROM telemetry_health_events WHERE rowid IN ("
                " SELECT rowid FROM ("
                "  SELECT rowid, ROW_NUMBER() OVER"
                "   (PARTITION BY node_id ORDER BY timestamp DESC, seq DESC) AS rn"
                "  FROM telemetry_health_events"
                " ) WHERE rn > ?)",
                (keep_per_node,),
            )
            return cursor.rowcount

    def health_events(self, node_id: str) -> list[HealthEvent]:
        """All stored events of one node, oldest first."""
        rows = self._db.query(
            "SELECT * FROM telemetry_health_events WHERE node_id = ? ORDER BY timestamp, seq",
            (node_id,),
        )
        return [_event(row) for row in rows]

    @staticmethod
    def _record(row) -> NodeRecord:
        figures = None
        if row["sample_ts"] is not None:
            figures = SampleFigures(
                timestamp=row["sample_ts"],
                cpu_percent=row["sample_cpu"],
                gpu_utilization_pct=row["sample_gpu"],
                memory_used_pct=row["sample_mem"],
                gpu_problems=tuple(p for p in (row["sample_problems"] or "").split("\n") if p),
            )
        return NodeRecord(
            node_id=row["node_id"],
            inventory=convert.inventory_from_pb(pb.NodeInventory.FromString(row["inventory"])),
            status=row["status"],
            first_seen=row["first_seen"],
            last_seen=row["last_seen"],
            agent_version=row["agent_version"],
            cluster_id=row["cluster_id"],
            interval_s=row["interval_s"],
            agent_instance=row["agent_instance"],
            seq=row["acked_seq"],
            latest_sample=row["latest_sample"],
            figures=figures,
            rolling=RollingFigures(
                cpu_percent=(row["cpu_1m"], row["cpu_5m"], row["cpu_15m"]),
                gpu_utilization_pct=(row["gpu_1m"], row["gpu_5m"], row["gpu_15m"]),
                memory_used_pct=(row["mem_1m"], row["mem_5m"], row["mem_15m"]),
            ),
            samples_received=row["samples_received"],
            dropped_samples=row["dropped_samples"],
        )

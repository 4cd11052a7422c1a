"""TelemetryIngest.Stream: one long-lived stream per agent, and the committer.

Protocol (see telemetry.proto): the agent sends a Hello first, then samples,
health events and inventory updates, each with a per-agent-instance sequence
number. Each valid message is applied to the registry at once (queries see
it), and acknowledged only after the committer has written it to SQLite: the
committer takes everything that changed every `commit_interval_s` and writes
it in one transaction, then tells each agent the highest sequence number now
on disk. So ingest costs one small in-memory update per message, and "acked"
always means "survives a SIGKILL".

A duplicate (same node, agent instance, seq <= what was received) is not
applied again but is acknowledged (once it is on disk), so re-sending after a
reconnect is safe. A message that fails validation (`wire_checks`: types,
ranges, sizes, the node id's character set, seq increasing on the stream)
gets a Refusal naming the field, and the stream ends with INVALID_ARGUMENT;
the agent drops that one message and reconnects. Nothing of a refused
message reaches the registry.

One node id, one live stream. A hello for a node id that has a live stream
ends the old stream from the server side (ABORTED, naming the new peer), so
its agent sees the end and reconnects. If that agent comes back while the
newcomer still streams, two agents claim the id (a copied NODE_ID, say): the
returning one is refused with ALREADY_EXISTS for as long as the other lives,
and the conflict is reported (a warning naming both peers, the
`node_id_conflicts` count, a `node_id_conflict` event on the node): the two
are never merged into one node, nor left hanging.

Row isolation: when a commit fails on a row (a value SQLite refuses, not the
database itself), each node's rows are tried in a transaction of their own.
A node whose rows cannot be written is set aside: counted
(`rows_set_aside`), logged once, shown as such (`NodeState.unwritable`, a
problem that makes it unhealthy), and from then on tried alone with each
commit, its events kept, until it writes again; its acknowledgements wait,
every other node's keep advancing. A failing database (locked, full, I/O)
puts the whole batch back, as before.

Besides acks, the aggregator sends an agent what it must know:
`send_to_node(node_id, msg)` from any thread (an operator's acknowledgement
of GPU problems, `Acknowledgement`), and at each hello whatever
`hello_messages(node_id)` returns (the node's acknowledgements, so an agent
that restarted or was away learns them too).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import grpc

from aggregator.auth import bearer_token
from aggregator.rpc.agent_auth import (
    AgentAuthUnavailable,
    AgentForbidden,
    AgentIdentity,
    AgentUnauthenticated,
    KubernetesAgentAuth,
)
from aggregator.telemetry import wire_checks
from aggregator.telemetry.model import PendingWrite
from aggregator.telemetry.registry import NodeRegistry, UnknownNode
from aggregator.telemetry.store import NodeStore
from proto.telemetry.v1 import convert
from proto.telemetry.v1 import telemetry_pb2 as pb
from proto.telemetry.v1.readings import NodeInventory

__all__ = ["INGEST_SERVICE_NAME", "IngestService", "Rejected", "decode_agent_message"]

log = logging.getLogger(__name__)

INGEST_SERVICE_NAME = "aios.telemetry.v1.TelemetryIngest"
# how long a superseded agent instance coming back counts as a second claimant of its node id
CONFLICT_WINDOW_S = 300.0
DEFAULT_MAX_NODES = 10_000  # Kubernetes supports clusters of up to 5,000 nodes


@dataclass(frozen=True)
class Rejected:
    """An incoming message that could not be accepted as a message at all."""

    seq: int
    reason: str


def decode_agent_message(max_bytes: int) -> Callable[[bytes], Any]:
    """The request deserializer: sees the raw size, so it can refuse oversized messages itself.

    gRPC's own `max_receive_message_length` (set higher, as a hard cap)
    would answer RESOURCE_EXHAUSTED; the protocol wants INVALID_ARGUMENT and
    the offending seq, so the agent can drop that message.
    """

    def decode(data: bytes) -> Any:
        try:
            msg = pb.AgentMessage.FromString(data)
        except Exception as e:  # noqa: BLE001 - protobuf raises DecodeError and friends
            return Rejected(0, f"malformed message ({len(data)} bytes): {e}")
        if len(data) > max_bytes:
            return Rejected(msg.seq, f"message of {len(data)} bytes is over the {max_bytes}-byte limit")
        return msg

    return decode


class _Refused(Exception):
    def __init__(self, seq: int, reason: str, code: grpc.StatusCode = grpc.StatusCode.INVALID_ARGUMENT) -> None:
        super().__init__(reason)
        self.seq = seq
        self.reason = reason
        self.code = code


@dataclass
class _Superseded:
    """The agent instance whose stream a newer hello for its node id ended."""

    agent_instance: str
    peer: str
    at: float  # monotonic


class _Session:
    """One agent's open stream: what it said in its hello, and its outgoing queue."""

    def __init__(self, context: grpc.aio.ServicerContext) -> None:
        self.context = context
        self.peer = context.peer()
        self.node_id = ""
        self.agent_instance = ""
        self.gpu_indices: frozenset[int] = frozenset()
        self.acked = 0
        self.last_seq = 0
        self._outbox: asyncio.Queue = asyncio.Queue()
        self.ended = asyncio.Event()  # set: the server ends this stream with `end_status`
        self.end_status: tuple[grpc.StatusCode, str] = (grpc.StatusCode.ABORTED, "")

    def end(self, code: grpc.StatusCode, details: str) -> None:
        """End the stream from the server side: its agent sees `code` and reconnects."""
        self.end_status = (code, details)
        self.ended.set()

    def ack(self, seq: int) -> None:
        if seq > self.acked:
            self.acked = seq
            self._outbox.put_nowait(pb.AggregatorMessage(ack=pb.Ack(acked_seq=seq)))

    def send(self, msg: pb.AggregatorMessage) -> None:
        self._outbox.put_nowait(msg)

    async def write_loop(self) -> None:
        while True:
            msg = await self._outbox.get()
            if msg is None:
                return
            await self.context.write(msg)

    def stop(self) -> None:
        self._outbox.put_nowait(None)


class IngestService:
    def __init__(
        self,
        registry: NodeRegistry,
        store: NodeStore,
        *,
        max_message_bytes: int = 256 * 1024,
        commit_interval_s: float = 0.1,
        agent_interval_s: float | None = None,
        max_nodes: int = DEFAULT_MAX_NODES,
        clock: Callable[[], float] = time.monotonic,
        agent_auth: KubernetesAgentAuth | None = None,
    ) -> None:
        """`agent_auth`: agents prove their node with a ServiceAccount token (None: the gRPC
        interceptor's shared token is enough, and any holder may speak for any node)."""
        self.registry = registry
        self.agent_auth = agent_auth
        self.store = store
        self.max_message_bytes = max_message_bytes
        self.commit_interval_s = commit_interval_s
        self.agent_interval_s = agent_interval_s
        self.max_nodes = max_nodes
        self._clock = clock
        self._sessions: dict[str, _Session] = {}
        self._superseded: dict[str, _Superseded] = {}
        self._conflicts: dict[str, tuple[str, str]] = {}  # node id -> (live instance, refused instance)
        self._unwritable: dict[str, str] = {}  # node id -> the error its row last failed with
        self._commit_lock = asyncio.Lock()
        self.refusals = 0
        self.node_id_conflicts = 0  # conflicts found (two live agents, one node id)
        self.rows_set_aside = 0  # node rows a commit could not write and set aside
        self._loop: asyncio.AbstractEventLoop | None = None
        # node id -> messages every new stream of that node gets after its hello
        self.hello_messages: Callable[[str], list[pb.AggregatorMessage]] | None = None

    def stats(self) -> dict[str, int]:
        return {"refusals": self.refusals, "node_id_conflicts": self.node_id_conflicts,
                "rows_set_aside": self.rows_set_aside, "open_streams": len(self._sessions)}

    def send_to_node(self, node_id: str, msg: pb.AggregatorMessage) -> None:
        """Send `msg` on the node's open stream, if it has one (any thread; a node that is not
        connected gets what `hello_messages` gives it when it comes back)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return

        def send() -> None:
            session = self._sessions.get(node_id)
            if session is not None:
                session.send(msg)

        loop.call_soon_threadsafe(send)

    # ------------------------------------------------------------ gRPC wiring

    def generic_handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            INGEST_SERVICE_NAME,
            {
                "Stream": grpc.stream_stream_rpc_method_handler(
                    self.stream,
                    request_deserializer=decode_agent_message(self.max_message_bytes),
                    response_serializer=pb.AggregatorMessage.SerializeToString,
                )
            },
        )

    async def _authenticate(self, context: grpc.aio.ServicerContext) -> AgentIdentity | None:
        """The agent's Kubernetes identity (None without `agent_auth`); aborts the call when refused."""
        if self.agent_auth is None:
            return None
        header = dict(context.invocation_metadata() or ()).get("authorization")
        try:
            return await asyncio.to_thread(self.agent_auth.authenticate, bearer_token(header))
        except AgentUnauthenticated as e:
            code, reason = grpc.StatusCode.UNAUTHENTICATED, str(e)
        except AgentForbidden as e:
            code, reason = grpc.StatusCode.PERMISSION_DENIED, str(e)
        except AgentAuthUnavailable as e:
            code, reason = grpc.StatusCode.UNAVAILABLE, f"cannot verify the agent's token now: {e}; retry later"
        log.warning("refused a stream from %s: %s", context.peer(), reason)
        await context.abort(code, reason)
        return None  # not reached: abort raises

    async def _authorize(self, identity: AgentIdentity, node_id: str) -> tuple[grpc.StatusCode, str] | None:
        """None when the token's node is `node_id`, else the status to end the stream with."""
        assert self.agent_auth is not None
        try:
            await asyncio.to_thread(self.agent_auth.authorize, identity, node_id)
        except AgentForbidden as e:
            return grpc.StatusCode.PERMISSION_DENIED, str(e)
        except AgentAuthUnavailable as e:
            return grpc.StatusCode.UNAVAILABLE, f"cannot verify the agent's node now: {e}; retry later"
        return None

    async def stream(self, requests, context: grpc.aio.ServicerContext) -> None:
        self._loop = asyncio.get_running_loop()
        identity = await self._authenticate(context)
        session = _Session(context)
        writer = asyncio.ensure_future(session.write_loop())
        reader = asyncio.ensure_future(self._read(session, requests, identity))
        ended = asyncio.ensure_future(session.ended.wait())
        refusal: _Refused | None = None
        denied: tuple[grpc.StatusCode, str] | None = None
        removed = superseded = False
        try:
            done, _ = await asyncio.wait({reader, ended}, return_when=asyncio.FIRST_COMPLETED)
            if reader in done:
                refusal, removed, denied = reader.result()
            else:  # the server ends this stream: a newer hello took the node id, or the node was removed
                superseded = True
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
            if refusal is not None:
                self.refusals += 1
                log.warning(
                    "refused message seq=%d from node %s (%s): %s",
                    refusal.seq,
                    session.node_id or "?",
                    session.peer,
                    refusal.reason,
                )
                session.send(pb.AggregatorMessage(refusal=pb.Refusal(seq=refusal.seq, reason=refusal.reason)))
            elif session.node_id and not superseded:
                # the agent half-closed: commit now so its last messages are acked before the end
                await self.commit_once()
            session.stop()
            await writer  # acks and the refusal go out before the status
        finally:
            ended.cancel()
            if not reader.done():
                reader.cancel()
            if self._sessions.get(session.node_id) is session:
                del self._sessions[session.node_id]
                self._conflicts.pop(session.node_id, None)
            if not writer.done():
                writer.cancel()
        if superseded:
            await context.abort(*session.end_status)
        if refusal is not None:
            await context.abort(refusal.code, refusal.reason)
        if denied is not None:
            await context.abort(*denied)
        if removed:
            # not INVALID_ARGUMENT: the agent keeps its message and re-sends it after a new hello
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"node {session.node_id} was removed from this aggregator; reconnect with a hello",
            )

    async def _read(
        self, session: _Session, requests, identity: AgentIdentity | None
    ) -> tuple[_Refused | None, bool, tuple[grpc.StatusCode, str] | None]:
        """Apply messages until the agent half-closes; (the refusal, whether the node was removed, a denial)."""
        async for msg in requests:
            if (identity is not None and not session.node_id and not isinstance(msg, Rejected)
                    and msg.WhichOneof("body") == "hello"):
                denied = await self._authorize(identity, msg.hello.node_id)
                if denied is not None:
                    log.warning("refused the hello of node %r from %s: %s", msg.hello.node_id[:80], session.peer, denied[1])
                    return None, False, denied
            try:
                self._handle(session, msg)
            except _Refused as e:
                return e, False, None
            except UnknownNode:
                return None, True, None  # the node was removed while its agent streamed
        return None, False, None

    # ------------------------------------------------------------ messages

    def _handle(self, session: _Session, msg: Any) -> None:
        if isinstance(msg, Rejected):
            raise _Refused(msg.seq, msg.reason)
        body = msg.WhichOneof("body")
        if body == "hello":
            self._hello(session, msg.hello)
            return
        if not session.node_id:
            raise _Refused(msg.seq, f"{body or 'empty message'} before hello: the first message must be a hello")
        if body is None:
            raise _Refused(msg.seq, "message has no body")
        reason = wire_checks.check_seq(msg.seq, session.last_seq) or wire_checks.check_dropped(msg.dropped_samples)
        if reason:
            raise _Refused(msg.seq, reason)
        session.last_seq = msg.seq
        registry = self.registry
        node_id = session.node_id
        if registry.is_duplicate(node_id, session.agent_instance, msg.seq):
            committed = registry.committed_seq(node_id, session.agent_instance)
            if msg.seq <= committed:
                session.ack(committed)
            # else: it is in the next commit, which acks it
            return
        if body == "sample":
            reason = wire_checks.check_sample(msg.sample, session.gpu_indices)
            if reason:
                raise _Refused(msg.seq, reason)
            registry.record_sample(
                node_id,
                msg.seq,
                wire_checks.sample_figures(msg.sample, session.gpu_indices),
                msg.sample.SerializeToString(),
                msg.dropped_samples,
            )
        elif body == "health":
            reason = wire_checks.check_health(msg.health, session.gpu_indices)
            if reason:
                raise _Refused(msg.seq, reason)
            registry.record_health(node_id, msg.seq, convert.health_from_pb(msg.health))
            registry.note_dropped(node_id, msg.dropped_samples)
        elif body == "inventory":
            reason = wire_checks.check_inventory(msg.inventory, node_id)
            if reason:
                raise _Refused(msg.seq, reason)
            inventory = convert.inventory_from_pb(msg.inventory)
            if not inventory.node_id:
                inventory = _with_node_id(inventory, node_id)
            registry.record_inventory(node_id, msg.seq, inventory)
            registry.note_dropped(node_id, msg.dropped_samples)
            session.gpu_indices = frozenset(g.index for g in inventory.gpus)

    def _hello(self, session: _Session, hello: pb.Hello) -> None:
        if session.node_id:
            raise _Refused(0, "second hello on one stream")
        reason = wire_checks.check_hello(hello)
        if reason:
            raise _Refused(0, reason)
        inventory = convert.inventory_from_pb(hello.inventory)
        if not inventory.node_id:
            inventory = _with_node_id(inventory, hello.node_id)
        node_id = hello.node_id
        if not self.registry.knows(node_id) and self.registry.node_count() >= self.max_nodes:
            raise _Refused(0, f"this aggregator holds {self.max_nodes} nodes, its limit (--max-nodes); "
                              f"node {node_id} is not taken", grpc.StatusCode.RESOURCE_EXHAUSTED)
        self._take_node_id(session, node_id, hello.agent_instance)
        session.node_id = node_id
        session.agent_instance = hello.agent_instance
        session.gpu_indices = frozenset(g.index for g in inventory.gpus)
        self._sessions[node_id] = session
        self.registry.hello(
            hello.node_id,
            cluster_id=hello.cluster_id,
            agent_version=hello.agent_version,
            agent_instance=hello.agent_instance,
            inventory=inventory,
            # an agent told to use another interval will: judge staleness by that
            interval_s=self.agent_interval_s or hello.interval_s,
        )
        # tell the agent where it stands at once: what is already on disk
        committed = self.registry.committed_seq(hello.node_id, hello.agent_instance)
        if committed:
            session.ack(committed)
        if self.agent_interval_s and abs(hello.interval_s - self.agent_interval_s) > 1e-9:
            session.send(
                pb.AggregatorMessage(instruction=pb.Instruction(interval_s=self.agent_interval_s))
            )
        if self.hello_messages is not None:
            try:
                for extra in self.hello_messages(hello.node_id):
                    session.send(extra)
            except Exception:  # what the agent is told after its hello must not end its stream
                log.exception("messages for node %s after its hello failed", hello.node_id)
        log.info(
            "node %s connected from %s (agent %s, instance %s, %d GPUs)",
            hello.node_id,
            session.peer,
            hello.agent_version,
            hello.agent_instance,
            len(inventory.gpus),
        )

    def _take_node_id(self, session: _Session, node_id: str, instance: str) -> None:
        """End the live stream of `node_id`, or refuse `session` when it is the second of two live claimants."""
        previous = self._sessions.get(node_id)
        if previous is None or previous is session:
            return
        now = self._clock()
        gone = self._superseded.get(node_id)
        if (previous.agent_instance != instance and gone is not None and gone.agent_instance == instance
                and now - gone.at < CONFLICT_WINDOW_S):
            gone.at = now  # refused for as long as the other one streams
            if self._conflicts.get(node_id) != (previous.agent_instance, instance):
                self._conflicts[node_id] = (previous.agent_instance, instance)
                self.node_id_conflicts += 1
                message = (f"two live agents claim node id {node_id}: instance {previous.agent_instance} at "
                           f"{previous.peer} (streaming) and instance {instance} at {session.peer} (refused); "
                           "each node needs its own NODE_ID")
                log.warning("%s", message)
                self.registry.note_event(node_id, "node_id_conflict", message)
            raise _Refused(0, f"node id {node_id} is streamed by another live agent (instance "
                              f"{previous.agent_instance} at {previous.peer}); two agents claim it",
                           grpc.StatusCode.ALREADY_EXISTS)
        if previous.agent_instance != instance:
            self._superseded[node_id] = _Superseded(previous.agent_instance, previous.peer, now)
            log.info("node %s: a new agent instance %s at %s replaces instance %s at %s",
                     node_id, instance, session.peer, previous.agent_instance, previous.peer)
        else:
            log.info("node %s reconnected from %s; ending its previous stream from %s",
                     node_id, session.peer, previous.peer)
        previous.end(grpc.StatusCode.ABORTED,
                     f"a newer stream for node {node_id} (from {session.peer}) replaced this one")

    # ------------------------------------------------------------ committing

    async def commit_once(self) -> int:
        """Write what changed and acknowledge it; returns the number of nodes written.

        Shielded: a caller cancelled mid-commit (a stream whose client went
        away) must not leave a batch written but never marked committed.
        """
        return await asyncio.shield(asyncio.ensure_future(self._commit()))

    async def _commit(self) -> int:
        async with self._commit_lock:
            pending = self.registry.take_pending()
            if not pending:
                return 0
            written = await asyncio.to_thread(self._write, pending)
            for part in written:
                self._acknowledge(part)
            return sum(len(part.nodes) for part in written)

    def _write(self, pending: PendingWrite) -> list[PendingWrite]:
        """Write `pending`; returns the parts that are on disk (the rest is pending again or set aside).

        Nodes already set aside are tried on their own, so they cost the
        others nothing. If the batch of the others fails on a row (not on
        the database), each of its nodes is tried in a transaction of its own.
        """
        set_aside = set(self._unwritable)
        batch, alone = _partition(pending, set_aside)
        written: list[PendingWrite] = []
        if batch:
            try:
                self.store.write(batch)
            except Exception as e:  # noqa: BLE001 - sorted out below: the database, or one row
                if _database_failed(e):
                    log.error("writing %d node(s) failed (%s: %s); will retry", len(batch.nodes), type(e).__name__, e)
                    self.registry.requeue(batch)
                else:
                    alone = [*_split_by_node(batch), *alone]
            else:
                written.append(batch)
        for part in alone:
            try:
                self.store.write(part)
            except Exception as e:  # noqa: BLE001 - one node's rows: set aside, the others go on
                if _database_failed(e):
                    self.registry.requeue(part)
                else:
                    self._set_aside(part, e)
            else:
                written.append(part)
        return written

    def _set_aside(self, part: PendingWrite, error: Exception) -> None:
        node_id = part.nodes[0].node_id if part.nodes else part.events[0].node_id
        reason = f"{type(error).__name__}: {error}"
        first = self.registry.mark_unwritable(node_id, reason)
        if first or self._unwritable.get(node_id) != reason:
            self.rows_set_aside += 1
            log.error("node %s: its row cannot be stored (%s); set aside and retried alone, "
                      "the other nodes go on", node_id, reason)
        self._unwritable[node_id] = reason
        self.registry.requeue(part)  # kept (events included) and tried again, alone, with the next commit

    def _acknowledge(self, written: PendingWrite) -> None:
        for node_id in self.registry.mark_written(rec.node_id for rec in written.nodes):
            self._unwritable.pop(node_id, None)
            log.info("node %s: its row is stored again", node_id)
        for node_id, (instance, seq) in self.registry.mark_committed(written).items():
            session = self._sessions.get(node_id)
            if session is not None and session.agent_instance == instance:
                session.ack(seq)


    async def remove_node(self, node_id: str) -> bool:
        """Remove a node from the registry and the store together; False if it was not known.

        Holds the commit lock, so no batch taken before the removal is written
        after it (which would store the node again). The node's open stream, if
        any, is ended; its agent would come back with a hello and join anew.
        """
        async with self._commit_lock:
            state = await asyncio.to_thread(self.registry.remove, node_id, delete_stored=self.store.delete_node)
        session = self._sessions.pop(node_id, None)
        if session is not None:
            session.end(grpc.StatusCode.FAILED_PRECONDITION,
                        f"node {node_id} was removed from this aggregator; reconnect with a hello")
        self._superseded.pop(node_id, None)
        self._unwritable.pop(node_id, None)
        return state is not None

    async def run_committer(self) -> None:
        while True:
            await asyncio.sleep(self.commit_interval_s)
            await self.commit_once()

    async def run_status_ticker(self, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            self.registry.refresh_status()

    async def run_event_pruner(self, every_s: float = 600.0, keep_per_node: int = 10_000) -> None:
        """Keep the health event table bounded: each node's most recent events stay."""
        while True:
            await asyncio.sleep(every_s)
            try:
                removed = await asyncio.to_thread(self.store.prune_events, keep_per_node)
            except Exception:
                log.exception("pruning old health events failed")
                continue
            if removed:
                log.info("pruned %d old health event(s)", removed)


def _with_node_id(inventory: NodeInventory, node_id: str) -> NodeInventory:
    return replace(inventory, node_id=node_id)


def _database_failed(error: Exception) -> bool:
    """Whether a failed write says the database is failing (locked, full, I/O), not one row's values."""
    return isinstance(error, (sqlite3.OperationalError, OSError)) or type(error) is sqlite3.DatabaseError


def _partition(pending: PendingWrite, set_aside: set[str]) -> tuple[PendingWrite, list[PendingWrite]]:
    """(everything of the nodes not set aside, one part per node set aside)."""
    if not set_aside:
        return pending, []
    parts = _split_by_node(pending)
    alone = [p for p in parts if _node_of(p) in set_aside]
    rest = [p for p in parts if _node_of(p) not in set_aside]
    batch = PendingWrite(
        nodes=tuple(rec for p in rest for rec in p.nodes),
        events=tuple(e for p in rest for e in p.events),
        inventory_changed=frozenset(i for p in rest for i in p.inventory_changed),
    )
    return batch, alone


def _node_of(part: PendingWrite) -> str:
    return part.nodes[0].node_id if part.nodes else part.events[0].node_id


def _split_by_node(pending: PendingWrite) -> list[PendingWrite]:
    """One PendingWrite per node: its record, its events, its inventory flag."""
    node_ids = [rec.node_id for rec in pending.nodes]
    node_ids += sorted({e.node_id for e in pending.events} - set(node_ids))
    records = {rec.node_id: rec for rec in pending.nodes}
    events: dict[str, list] = {}
    for stored in pending.events:
        events.setdefault(stored.node_id, []).append(stored)
    return [
        PendingWrite(
            nodes=(records[node_id],) if node_id in records else (),
            events=tuple(events.get(node_id, ())),
            inventory_changed=pending.inventory_changed & {node_id},
        )
        for node_id in node_ids
    ]

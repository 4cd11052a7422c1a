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
reconnect is safe. A message that fails validation gets a Refusal naming the
field, and the stream ends with INVALID_ARGUMENT; the agent drops that one
message and reconnects. Nothing of a refused message reaches the registry.

Besides acks, the aggregator sends an agent what it must know:
`send_to_node(node_id, msg)` from any thread (an operator's acknowledgement
of GPU problems, `Acknowledgement`), and at each hello whatever
`hello_messages(node_id)` returns (the node's acknowledgements, so an agent
that restarted or was away learns them too).
"""

from __future__ import annotations

import asyncio
import logging
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
from aggregator.telemetry.registry import NodeRegistry, UnknownNode
from aggregator.telemetry.store import NodeStore
from proto.telemetry.v1 import convert
from proto.telemetry.v1 import telemetry_pb2 as pb
from proto.telemetry.v1.readings import NodeInventory

__all__ = ["INGEST_SERVICE_NAME", "IngestService", "Rejected", "decode_agent_message"]

log = logging.getLogger(__name__)

INGEST_SERVICE_NAME = "aios.telemetry.v1.TelemetryIngest"


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
    def __init__(self, seq: int, reason: str) -> None:
        super().__init__(reason)
        self.seq = seq
        self.reason = reason


class _Session:
    """One agent's open stream: what it said in its hello, and its outgoing queue."""

    def __init__(self, context: grpc.aio.ServicerContext) -> None:
        self.context = context
        self.task = asyncio.current_task()
        self.node_id = ""
        self.agent_instance = ""
        self.gpu_indices: frozenset[int] = frozenset()
        self.acked = 0
        self._outbox: asyncio.Queue = asyncio.Queue()

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
        self._sessions: dict[str, _Session] = {}
        self._commit_lock = asyncio.Lock()
        self.refusals = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        # node id -> messages every new stream of that node gets after its hello
        self.hello_messages: Callable[[str], list[pb.AggregatorMessage]] | None = None

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
        refusal: _Refused | None = None
        denied: tuple[grpc.StatusCode, str] | None = None
        removed = False
        try:
            async for msg in requests:
                if (identity is not None and not session.node_id and not isinstance(msg, Rejected)
                        and msg.WhichOneof("body") == "hello"):
                    denied = await self._authorize(identity, msg.hello.node_id)
                    if denied is not None:
                        log.warning("refused the hello of node %r from %s: %s", msg.hello.node_id, context.peer(), denied[1])
                        break
                try:
                    self._handle(session, msg)
                except _Refused as e:
                    refusal = e
                    break
                except UnknownNode:
                    removed = True  # the node was removed while its agent streamed
                    break
            if refusal is not None:
                self.refusals += 1
                log.warning(
                    "refused message seq=%d from node %s (%s): %s",
                    refusal.seq,
                    session.node_id or "?",
                    context.peer(),
                    refusal.reason,
                )
                session.send(pb.AggregatorMessage(refusal=pb.Refusal(seq=refusal.seq, reason=refusal.reason)))
            elif session.node_id:
                # the agent half-closed: commit now so its last messages are acked before the end
                await self.commit_once()
            session.stop()
            await writer  # acks and the refusal go out before the status
        finally:
            if self._sessions.get(session.node_id) is session:
                del self._sessions[session.node_id]
            if not writer.done():
                writer.cancel()
        if refusal is not None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, refusal.reason)
        if denied is not None:
            await context.abort(*denied)
        if removed:
            # not INVALID_ARGUMENT: the agent keeps its message and re-sends it after a new hello
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"node {session.node_id} was removed from this aggregator; reconnect with a hello",
            )

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
        if msg.seq <= 0:
            raise _Refused(msg.seq, f"seq: {msg.seq} (every message after the hello needs seq >= 1)")
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
        session.node_id = hello.node_id
        session.agent_instance = hello.agent_instance
        session.gpu_indices = frozenset(g.index for g in inventory.gpus)
        previous = self._sessions.get(hello.node_id)
        if previous is not None and previous is not session and previous.task is not None:
            log.info("node %s reconnected; closing its previous stream", hello.node_id)
            previous.task.cancel()
        self._sessions[hello.node_id] = session
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
            session.context.peer(),
            hello.agent_version,
            hello.agent_instance,
            len(inventory.gpus),
        )

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
            try:
                await asyncio.to_thread(self.store.write, pending)
            except Exception:
                log.exception("writing %d node(s) failed; will retry", len(pending.nodes))
                self.registry.requeue(pending)
                return 0
            for node_id, (instance, seq) in self.registry.mark_committed(pending).items():
                session = self._sessions.get(node_id)
                if session is not None and session.agent_instance == instance:
                    session.ack(seq)
            return len(pending.nodes)

    async def remove_node(self, node_id: str) -> bool:
        """Remove a node from the registry and the store together; False if it was not known.

        Holds the commit lock, so no batch taken before the removal is written
        after it (which would store the node again). The node's open stream, if
        any, is ended; its agent would come back with a hello and join anew.
        """
        async with self._commit_lock:
            state = await asyncio.to_thread(self.registry.remove, node_id, delete_stored=self.store.delete_node)
        session = self._sessions.pop(node_id, None)
        if session is not None and session.task is not None:
            session.task.cancel()
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

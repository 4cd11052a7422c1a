"""The agent's one long-lived gRPC stream to the aggregator.

Callers (the sampling thread) hand over samples, health events and inventory
updates with `send_*`; each gets the next sequence number and waits in a
bounded buffer until the aggregator acknowledges it (an ack means "stored").
A background thread runs an asyncio loop that keeps one stream open: hello
first, then everything unacknowledged, in order, then new messages as they
come. When the stream breaks it reconnects with capped exponential backoff
and full jitter, and re-sends what is still unacknowledged; the aggregator
ignores (but acknowledges) what it had already, so re-sending is safe.

Buffer rule: at most `buffer_limit` messages and `buffer_bytes` bytes
(serialized; `AIOS_STREAM_BUFFER_BYTES`, 16 MiB) wait. When a new sample would
exceed either, the oldest *samples* go until it fits; health events and
inventory updates are never dropped (they are rare; the limits can be
exceeded by them). The number of samples dropped rides on the next message
sent (`dropped_samples`). The byte bound is what keeps a full buffer inside
the agent's memory limit: with pod attribution one sample of 8 GPUs x 64
processes is ~26 KB, so 1,000 of them would be ~26 MB.

A Refusal from the aggregator names one message it will never accept: that
message is dropped (and logged); the stream ends and is reopened.

An Acknowledgement (an operator acknowledged GPU problems of this node) is
checked and handed to `on_acknowledgement` (the GPU health tracker, which
clears the Node conditions those problems caused).
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import grpc

from agent.backoff import Backoff
from agent.stream.credentials import AgentCredentials, TokenFileError
from proto.common.settings import number_setting
from proto.telemetry.v1 import convert
from proto.telemetry.v1 import telemetry_pb2 as pb
from proto.telemetry.v1 import telemetry_pb2_grpc as pb_grpc
from proto.telemetry.v1.readings import Acknowledgement, HealthEvent, NodeInventory, NodeSample

__all__ = [
    "BUFFER_BYTES_ENV",
    "CHANNEL_OPTIONS",
    "DEFAULT_BUFFER_BYTES",
    "StreamConfig",
    "StreamStats",
    "TelemetryStream",
    "acknowledgement_problem",
    "buffer_bytes_from_env",
]

log = logging.getLogger(__name__)

# Ping every 30 s so a dead aggregator or a silently dropped connection (NAT,
# load balancer) is noticed within ~40 s even between samples.
CHANNEL_OPTIONS = (
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
)


BUFFER_BYTES_ENV = "AIOS_STREAM_BUFFER_BYTES"
DEFAULT_BUFFER_BYTES = 16 * 1024 * 1024
_MIN_BUFFER_BYTES = 64 * 1024  # room for a few samples at least
_MAX_BUFFER_BYTES = 1024 * 1024 * 1024


def buffer_bytes_from_env(env: Mapping[str, str]) -> int:
    """$AIOS_STREAM_BUFFER_BYTES: a whole number of bytes (64 KiB to 1 GiB), default 16 MiB."""
    return int(number_setting(env, BUFFER_BYTES_ENV, DEFAULT_BUFFER_BYTES, low=_MIN_BUFFER_BYTES,
                              high=_MAX_BUFFER_BYTES, whole=True, unit="bytes"))


@dataclass(frozen=True)
class StreamConfig:
    address: str  # host:port of the aggregator
    node_id: str
    cluster_id: str = ""
    agent_version: str = ""
    token: str | None = None  # a fixed token; `credentials` (read at each connect) wins when given
    credentials: AgentCredentials | None = None
    tls_ca: Path | None = None  # None: plaintext
    buffer_limit: int = 1000  # messages waiting for an ack (~2.7 h of samples at 10 s)
    buffer_bytes: int = DEFAULT_BUFFER_BYTES  # their serialized bytes, in all
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    interval_s: float = 10.0  # told to the aggregator in the hello (for staleness)


@dataclass(frozen=True)
class StreamStats:
    connected: bool
    last_seq: int  # the last sequence number handed out
    acked_seq: int
    buffered: int
    dropped_samples: int  # total since start
    refused: int
    connects: int
    buffered_bytes: int = 0  # serialized bytes of the buffered messages


@dataclass(frozen=True)
class _Buffered:
    """A message waiting for its ack, kept serialized: a full buffer (1,000
    samples of 8 GPUs, the aggregator away ~2.8 h) costs 3.2 MiB as bytes,
    16.0 MiB as message objects (benchmarks/stream_buffer_memory.py); parsing
    one back to (re)send it costs microseconds."""

    body: str  # which AgentMessage body it is (for logs)
    dropped_samples: int
    data: bytes


class TelemetryStream:
    def __init__(
        self,
        config: StreamConfig,
        inventory: NodeInventory,
        *,
        on_instruction: Callable[[pb.Instruction], None] | None = None,
        agent_instance: str | None = None,
        on_acknowledgement: Callable[[Acknowledgement], None] | None = None,
    ) -> None:
        self.config = config
        self.agent_instance = agent_instance or uuid.uuid4().hex
        self._on_instruction = on_instruction
        self._on_acknowledgement = on_acknowledgement
        self._lock = threading.Lock()
        self._inventory = inventory
        self._interval_s = config.interval_s
        # full jitter: reconnecting is cheap, and a fleet that lost the
        # aggregator together should spread its reconnects as widely as possible
        self._backoff = Backoff(config.backoff_initial_s, config.backoff_max_s, jitter="full")
        self._seq = 0
        self._buffer: OrderedDict[int, _Buffered] = OrderedDict()
        self._sample_seqs: deque[int] = deque()  # buffered samples, oldest first
        self._buffered_bytes = 0
        self._dropped_unreported = 0
        self._dropped_total = 0
        self._acked = 0
        self._refused = 0
        self._connects = 0
        self._connected = False
        self._acked_cond = threading.Condition(self._lock)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.Event | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()

    # ------------------------------------------------------------ public (any thread)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._thread_main, name="telemetry-stream", daemon=True)
        self._thread.start()
        self._started.wait()

    def send_sample(self, sample: NodeSample) -> int:
        """Queue a sample (its health events first, as their own messages); returns the sample's seq."""
        for event in sample.health_events:
            self.send_health(event)
        msg = pb.AgentMessage(sample=convert.sample_to_pb(sample))
        return self._enqueue(msg, is_sample=True)

    def send_health(self, event: HealthEvent) -> int:
        return self._enqueue(pb.AgentMessage(health=convert.health_to_pb(event)), is_sample=False)

    def send_inventory(self, inventory: NodeInventory) -> int:
        with self._lock:
            self._inventory = inventory  # the next hello carries it too
        return self._enqueue(pb.AgentMessage(inventory=convert.inventory_to_pb(inventory)), is_sample=False)

    def set_interval(self, interval_s: float) -> None:
        with self._lock:
            self._interval_s = interval_s

    def stats(self) -> StreamStats:
        with self._lock:
            return StreamStats(
                connected=self._connected,
                last_seq=self._seq,
                acked_seq=self._acked,
                buffered=len(self._buffer),
                dropped_samples=self._dropped_total,
                refused=self._refused,
                connects=self._connects,
                buffered_bytes=self._buffered_bytes,
            )

    def wait_acked(self, seq: int, timeout_s: float) -> bool:
        """Block until everything up to `seq` is acknowledged (or dropped/refused)."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while not (self._acked >= seq or not any(s <= seq for s in self._buffer)):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._acked_cond.wait(remaining)
            return True

    def stop(self, flush_timeout_s: float = 0.0) -> None:
        """Stop; first wait up to `flush_timeout_s` for the buffer to be acknowledged."""
        if flush_timeout_s > 0:
            self.wait_acked(self.stats().last_seq, flush_timeout_s)
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout=10)

    # ------------------------------------------------------------ buffer

    def _enqueue(self, msg: pb.AgentMessage, *, is_sample: bool) -> int:
        with self._lock:
            self._seq += 1
            msg.seq = self._seq
            if is_sample:
                size = msg.ByteSize()  # before its dropped count is set: a few bytes short at most
                while self._over_limits(size) and self._drop_oldest_sample():
                    pass
                self._sample_seqs.append(msg.seq)
            msg.dropped_samples = self._dropped_unreported
            self._dropped_unreported = 0
            data = msg.SerializeToString()
            self._buffer[msg.seq] = _Buffered(msg.WhichOneof("body"), msg.dropped_samples, data)
            self._buffered_bytes += len(data)
            seq = msg.seq
        self._wake()
        return seq

    def _over_limits(self, adding_bytes: int) -> bool:
        return (len(self._buffer) >= self.config.buffer_limit
                or self._buffered_bytes + adding_bytes > self.config.buffer_bytes)

    def _drop_oldest_sample(self) -> bool:
        while self._sample_seqs:
            seq = self._sample_seqs.popleft()
            entry = self._buffer.pop(seq, None)
            if entry is not None:
                self._buffered_bytes -= len(entry.data)
                # its own report of earlier drops must not be lost with it
                self._dropped_unreported += entry.dropped_samples + 1
                self._dropped_total += 1
                return True
        return False

    def _acknowledge(self, acked_seq: int) -> None:
        with self._lock:
            if acked_seq <= self._acked:
                return
            self._acked = acked_seq
            while self._buffer:
                seq = next(iter(self._buffer))
                if seq > acked_seq:
                    break
                self._buffered_bytes -= len(self._buffer.pop(seq).data)
            while self._sample_seqs and self._sample_seqs[0] <= acked_seq:
                self._sample_seqs.popleft()
            self._acked_cond.notify_all()

    def _refuse(self, seq: int, reason: str) -> None:
        with self._lock:
            self._refused += 1
            dropped = self._buffer.pop(seq, None)
            if dropped is not None:
                self._buffered_bytes -= len(dropped.data)
            self._acked_cond.notify_all()
        if dropped is not None:
            log.error("aggregator refused message seq=%d (%s): %s; dropped it", seq, dropped.body, reason)
        else:
            log.error("aggregator refused seq=%d: %s", seq, reason)

    def _unsent_after(self, seq: int) -> list[pb.AgentMessage]:
        with self._lock:
            return [pb.AgentMessage.FromString(entry.data) for s, entry in self._buffer.items() if s > seq]

    def _hello(self) -> pb.AgentMessage:
        with self._lock:
            inventory = self._inventory
            interval = self._interval_s
        return pb.AgentMessage(
            seq=0,
            hello=pb.Hello(
                node_id=self.config.node_id,
                cluster_id=self.config.cluster_id,
                agent_version=self.config.agent_version,
                agent_instance=self.agent_instance,
                inventory=convert.inventory_to_pb(inventory),
                interval_s=interval,
            ),
        )

    # ------------------------------------------------------------ the stream (its own thread)

    def _wake(self) -> None:
        loop, wakeup = self._loop, self._wakeup
        if loop is not None and wakeup is not None:
            try:
                loop.call_soon_threadsafe(wakeup.set)
            except RuntimeError:  # loop already closed: we are stopping
                pass

    def _thread_main(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        wakeup = self._wakeup = asyncio.Event()
        stop = self._stop = asyncio.Event()
        self._started.set()
        self._backoff.reset()
        while not stop.is_set():
            acked_before = self.stats().acked_seq
            started = time.monotonic()
            waiting = ""
            try:
                await self._connect_once(stop, wakeup)
            except grpc.aio.AioRpcError as e:
                refused = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)
                level = logging.ERROR if e.code() in refused else logging.WARNING
                log.log(level, "stream to %s ended: %s: %s", self.config.address, e.code().name, e.details())
            except TokenFileError as e:
                waiting = str(e)  # nothing to connect with yet: said below, with when it tries again
            except asyncio.InvalidStateError:  # grpc.aio: a write after the call had already ended
                log.warning("stream to %s ended before a message could be written", self.config.address)
            except Exception:
                log.exception("stream to %s failed", self.config.address)
            finally:
                with self._lock:
                    self._connected = False
            if stop.is_set():
                break
            # a connection that worked resets the backoff
            if self.stats().acked_seq > acked_before or time.monotonic() - started > 60:
                self._backoff.reset()
            delay = self._backoff.next_delay()
            if waiting:
                log.error("not connecting to %s: %s; retrying in %.1f s", self.config.address, waiting, delay)
            try:
                await asyncio.wait_for(stop.wait(), timeout=delay)
            except asyncio.TimeoutError:
                pass

    def _channel(self) -> grpc.aio.Channel:
        if self.config.tls_ca is not None:
            creds = grpc.ssl_channel_credentials(root_certificates=Path(self.config.tls_ca).read_bytes())
            return grpc.aio.secure_channel(self.config.address, creds, options=CHANNEL_OPTIONS)
        return grpc.aio.insecure_channel(self.config.address, options=CHANNEL_OPTIONS)

    def _token(self) -> str | None:
        """Read at each connect: the kubelet rotates the projected token in place."""
        if self.config.credentials is not None:
            return self.config.credentials.current()
        return self.config.token

    async def _connect_once(self, stop: asyncio.Event, wakeup: asyncio.Event) -> None:
        token = self._token()
        metadata = (("authorization", f"Bearer {token}"),) if token else ()
        async with self._channel() as channel:
            call = pb_grpc.TelemetryIngestStub(channel).Stream(metadata=metadata)
            await call.write(self._hello())
            with self._lock:
                self._connected = True
                self._connects += 1
            reader = asyncio.ensure_future(self._read(call))
            writer = asyncio.ensure_future(self._write(call, wakeup))
            stopper = asyncio.ensure_future(stop.wait())
            try:
                done, _ = await asyncio.wait({reader, writer, stopper}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (reader, writer, stopper):
                    task.cancel()
                await asyncio.gather(reader, writer, stopper, return_exceptions=True)
                call.cancel()
            for finished in done:
                error = None if finished is stopper else finished.exception()
                if error is not None:
                    raise error

    async def _read(self, call) -> None:
        async for reply in call:
            body = reply.WhichOneof("body")
            if body == "ack":
                self._acknowledge(reply.ack.acked_seq)
            elif body == "refusal":
                self._refuse(reply.refusal.seq, reply.refusal.reason)
            elif body == "instruction":
                if reply.instruction.HasField("interval_s"):
                    self.set_interval(reply.instruction.interval_s)
                if self._on_instruction is not None:
                    try:
                        self._on_instruction(reply.instruction)
                    except Exception:
                        log.exception("handling an instruction failed")
            elif body == "acknowledgement":
                self._acknowledgement(reply.acknowledgement)
        # (a non-OK status raises AioRpcError out of the loop above)
        log.info("aggregator closed the stream")

    def _acknowledgement(self, msg: pb.Acknowledgement) -> None:
        problem = acknowledgement_problem(msg)
        if problem:
            log.warning("ignored an acknowledgement from the aggregator: %s", problem)
            return
        if self._on_acknowledgement is None:
            return
        try:
            self._on_acknowledgement(convert.acknowledgement_from_pb(msg))
        except Exception:
            log.exception("handling an acknowledgement failed")

    async def _write(self, call, wakeup: asyncio.Event) -> None:
        sent = 0
        while True:
            wakeup.clear()
            for msg in self._unsent_after(sent):
                await call.write(msg)
                sent = msg.seq
            await wakeup.wait()


_MAX_ACK_XIDS = 256
_MAX_ACK_REASON = 1024


def acknowledgement_problem(msg: pb.Acknowledgement) -> str | None:
    """What is wrong with an Acknowledgement from the aggregator, or None (pure)."""
    if not math.isfinite(msg.up_to) or msg.up_to <= 0:
        return f"acknowledgement.up_to: {msg.up_to} is not a positive finite time"
    if msg.HasField("gpu_index") and msg.gpu_index > 1023:
        return f"acknowledgement.gpu_index: {msg.gpu_index} is not a GPU index"
    if len(msg.xids) > _MAX_ACK_XIDS:
        return f"acknowledgement.xids: {len(msg.xids)} codes, at most {_MAX_ACK_XIDS}"
    if len(msg.reason) > _MAX_ACK_REASON:
        return f"acknowledgement.reason: {len(msg.reason)} characters, at most {_MAX_ACK_REASON}"
    return None

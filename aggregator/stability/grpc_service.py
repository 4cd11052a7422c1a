"""`aios.stability.v1.StabilityService` on the aggregator's `grpc.aio` server.

Authentication is the server's (its interceptor); this module only answers.
Register with `add_stability_service(server, checker)`.
"""

from __future__ import annotations

import asyncio
import logging

import grpc

from aggregator import strict_json
from aggregator.stability.checker import StabilityChecker
from aggregator.stability.verdicts import Verdict
from proto.stability.v1 import stability_pb2 as pb
from proto.stability.v1 import stability_pb2_grpc as pb_grpc

__all__ = ["StabilityServicer", "add_stability_service", "verdict_to_proto"]

log = logging.getLogger(__name__)


def verdict_to_proto(verdict: Verdict) -> pb.Verdict:
    message = pb.Verdict(
        id=verdict.id or 0,
        cluster_id=verdict.cluster_id,
        outcome=verdict.outcome,
        stability_check_data_json=(
            strict_json.dumps(verdict.stability_check_data, sort_keys=False) if verdict.stability_check_data is not None else ""
        ),
        error=verdict.error,
        checked_at=verdict.checked_at,
        duration_s=verdict.duration_s,
        policy_uri=verdict.policy_uri,
        trigger=verdict.trigger,
        nodes=verdict.nodes,
    )
    if verdict.is_stable is not None:
        message.is_stable = verdict.is_stable
    return message


class StabilityServicer(pb_grpc.StabilityServiceServicer):
    def __init__(self, checker: StabilityChecker, *, watch_queue_size: int = 256) -> None:
        self._checker = checker
        self._queue_size = watch_queue_size

    async def GetLatestVerdict(self, request, context):
        verdict: Verdict | None
        if request.check_now:
            verdict = await asyncio.to_thread(self._checker.check_shared, "grpc")
        else:
            verdict = await asyncio.to_thread(self._checker.latest)
        if verdict is None:
            return pb.GetLatestVerdictResponse()
        return pb.GetLatestVerdictResponse(verdict=verdict_to_proto(verdict))

    async def ListVerdicts(self, request, context):
        limit = request.limit or 100
        if limit > 10000:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "limit: at most 10000")
        before = request.before_id or None
        if before is not None and before > 2**63 - 1:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"before_id: at most {2**63 - 1}")
        verdicts = await asyncio.to_thread(self._checker.history, limit, before)
        return pb.ListVerdictsResponse(verdicts=[verdict_to_proto(v) for v in verdicts])

    async def WatchVerdicts(self, request, context):
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Verdict] = asyncio.Queue(maxsize=self._queue_size)

        def put(verdict: Verdict) -> None:
            if queue.full():  # a slow watcher loses the oldest, never blocks the checker
                queue.get_nowait()
            queue.put_nowait(verdict)

        def on_verdict(verdict: Verdict) -> None:  # on the checker's thread
            try:
                loop.call_soon_threadsafe(put, verdict)
            except RuntimeError:
                pass  # the loop is gone: the stream is over

        unsubscribe = self._checker.on_verdict(on_verdict)
        try:
            last_outcome = None
            latest = await asyncio.to_thread(self._checker.latest)
            if latest is not None:
                last_outcome = latest.outcome
                yield verdict_to_proto(latest)
            while True:
                verdict = await queue.get()
                if latest is not None and verdict.id is not None and latest.id is not None and verdict.id <= latest.id:
                    continue  # already sent as the starting point
                if request.every_verdict or verdict.outcome != last_outcome:
                    last_outcome = verdict.outcome
                    yield verdict_to_proto(verdict)
        finally:
            unsubscribe()


def add_stability_service(server: grpc.aio.Server, checker: StabilityChecker) -> StabilityServicer:
    servicer = StabilityServicer(checker)
    pb_grpc.add_StabilityServiceServicer_to_server(servicer, server)
    return servicer

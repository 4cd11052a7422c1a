"""`GET /healthz` of the running agent (the DaemonSet's liveness and readiness probes).

What makes the agent unhealthy is a stuck sampler, and only that: the
sampling job has not finished within `STUCK_AFTER_INTERVALS` intervals (at
least `MIN_LIMIT_S`), plus the longest a sample may wait on hung NVML calls
(`agent.gpu.bounded.longest_wait_s`: a sample that waited for a hung GPU is
slow, not stuck). An unreachable aggregator or API server is
reported in the body but answers 200: the agent keeps sampling and buffering,
and a restart would only throw the buffer away. So is a GPU whose NVML call
hangs (`agent.gpu.bounded`): the sampler reports it and goes on, and a
restart would only bring the agent back into the same hang.

`health_document` is pure (everything passed in); `healthz_app` is the WSGI
route the metrics server mounts at `/healthz`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "MIN_LIMIT_S",
    "STUCK_AFTER_INTERVALS",
    "SamplerView",
    "health_document",
    "healthz_app",
]

STUCK_AFTER_INTERVALS = 3
# One sample can take a second or more on a loaded node (many GPUs, a slow
# driver call): below this floor a short test interval would flap.
MIN_LIMIT_S = 5.0


@dataclass(frozen=True)
class SamplerView:
    """What the daemon says about its sampling job (clock: monotonic seconds)."""

    interval_s: float
    started_at: float | None  # None: not started
    last_run_at: float | None  # None: no run finished yet
    samples: int
    sample_failures: int
    call_bound_s: float = 0.0  # the longest one sample may wait on hung GPUs (bounded.longest_wait_s)


def health_document(
    now: float,
    node_id: str,
    sampler: SamplerView,
    *,
    stream: Any | None = None,
    annotator: Any | None = None,
    annotator_enabled: bool = False,
    conditions: Any | None = None,
    unresponsive_gpus: Any = (),
) -> tuple[bool, dict]:
    """Pure: (healthy, the JSON body) for `/healthz`.

    `stream` is the stream client's `StreamStats` (None: no stream);
    `annotator` the annotator's `AnnotatorStatus` (None with
    `annotator_enabled=False`: no cluster configured); `conditions` the Node
    condition writer's `ConditionWriterStatus` (None: not writing);
    `unresponsive_gpus` the GPU indexes whose NVML call hangs (reported, healthy).
    """
    limit_s = max(STUCK_AFTER_INTERVALS * sampler.interval_s, MIN_LIMIT_S) + sampler.call_bound_s
    reference = sampler.last_run_at if sampler.last_run_at is not None else sampler.started_at
    age = None if reference is None else max(0.0, now - reference)
    healthy = age is not None and age <= limit_s
    body: dict[str, Any] = {
        "status": "ok" if healthy else ("not started" if age is None else "sampler stuck"),
        "node_id": node_id,
        "interval_s": sampler.interval_s,
        "last_sample_age_s": None if sampler.last_run_at is None else round(now - sampler.last_run_at, 3),
        "stuck_after_s": limit_s,
        "samples": sampler.samples,
        "sample_failures": sampler.sample_failures,
    }
    if stream is not None:
        body["stream"] = {
            "connected": bool(stream.connected),
            "buffered": stream.buffered,
            "acked_seq": stream.acked_seq,
            "dropped_samples": stream.dropped_samples,
        }
    body["annotator"] = _annotator_state(annotator, annotator_enabled)
    body["conditions"] = _annotator_state(conditions, conditions is not None)
    if unresponsive_gpus:
        body["unresponsive_gpus"] = sorted(unresponsive_gpus)
    return healthy, body


def _annotator_state(status: Any | None, enabled: bool) -> dict:
    if not enabled:
        return {"state": "off"}
    if status is None:
        return {"state": "starting"}
    if status.in_sync:
        state = "in sync"
    elif status.consecutive_failures:
        state = "retrying"
    else:
        state = "syncing"
    document = {"state": state, "patches": status.patches, "consecutive_failures": status.consecutive_failures}
    if status.last_error:
        document["last_error"] = status.last_error
    return document


def healthz_app(check: Callable[[], tuple[bool, dict]]):
    """A WSGI app answering 200 or 503 with `check()`'s JSON body."""

    def app(environ, start_response):
        try:
            healthy, body = check()
        except Exception as exc:  # noqa: BLE001 - a broken check is an unhealthy answer, not a 500 trace
            healthy, body = False, {"status": "health check failed", "error": f"{type(exc).__name__}: {exc}"}
        payload = json.dumps(body, sort_keys=True).encode()
        start_response(
            "200 OK" if healthy else "503 Service Unavailable",
            [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))],
        )
        return [payload]

    return app

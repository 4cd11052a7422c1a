"""Telling the outside world that the cluster's stability changed.

Sinks: a webhook (`AIOS_STABILITY_WEBHOOK_URL`, JSON POST) and a Kubernetes
Event. A `NotificationDispatcher` delivers each transition to every sink on
its own thread, retrying each sink with capped, jittered exponential backoff, so a slow
or dead receiver never holds up a stability check.
"""

from __future__ import annotations

import json
import logging
import queue
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Protocol

from aggregator.stability.checker import Transition
from proto.common.backoff import backoff_delay

__all__ = [
    "KubernetesEventSink",
    "NotificationDispatcher",
    "NotificationSink",
    "NotifyError",
    "WebhookSink",
    "dispatcher_from_env",
    "transition_payload",
]

log = logging.getLogger(__name__)


class NotifyError(Exception):
    """A sink could not deliver (after which the dispatcher retries)."""


def transition_payload(transition: Transition) -> dict:
    """The JSON body a webhook receives (pure)."""
    verdict = transition.verdict
    return {
        "event": "cluster_stability_changed",
        "cluster_id": verdict.cluster_id,
        "is_stable": verdict.is_stable,
        "previous_is_stable": transition.previous.is_stable if transition.previous else None,
        "checked_at": verdict.checked_at,
        "policy_uri": verdict.policy_uri,
        "verdict_id": verdict.id,
        "stability_check_data": verdict.stability_check_data,
    }


class NotificationSink(Protocol):
    name: str

    def send(self, transition: Transition) -> None: ...


class WebhookSink:
    name = "webhook"

    def __init__(self, url: str, *, timeout_s: float = 5.0, headers: Mapping[str, str] | None = None) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"AIOS_STABILITY_WEBHOOK_URL={url!r}: expected an http:// or https:// URL")
        self.url = url
        self.timeout_s = timeout_s
        self.headers = dict(headers or {})

    def send(self, transition: Transition) -> None:
        body = json.dumps(transition_payload(transition)).encode()
        request = urllib.request.Request(
            self.url, data=body, method="POST", headers={"Content-Type": "application/json", **self.headers}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                response.read()
        except urllib.error.HTTPError as e:
            raise NotifyError(f"webhook {self.url} answered {e.code}") from e
        except (urllib.error.URLError, OSError) as e:
            raise NotifyError(f"webhook {self.url} unreachable: {getattr(e, 'reason', e)}") from e


class KubernetesEventSink:
    """Creates a core/v1 Event about `involved_object` (e.g. the aggregator's Deployment)."""

    name = "kubernetes-event"

    def __init__(
        self,
        core_v1,  # kubernetes.client.CoreV1Api
        *,
        namespace: str,
        involved_object: Mapping[str, str],
        component: str = "aios-aggregator",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._api = core_v1
        self.namespace = namespace
        self.involved_object = dict(involved_object)
        self.component = component
        self._clock = clock

    def event_body(self, transition: Transition) -> dict:
        verdict = transition.verdict
        now = datetime.fromtimestamp(self._clock(), tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        reasons = (verdict.stability_check_data or {}).get("reasons") or []
        detail = "; ".join(
            f"{r.get('node_id')}" + (f" GPU {r['gpu']}" if r.get("gpu") is not None else "") + f": {r.get('reason')}"
            for r in reasons[:10]
            if isinstance(r, Mapping)
        )
        state = "stable" if verdict.is_stable else "unstable"
        message = f"cluster {verdict.cluster_id} is {state} (policy {verdict.policy_uri})" + (f": {detail}" if detail else "")
        return {
            "apiVersion": "v1",
            "kind": "Event",
            # named after the verdict: a retry after a lost answer cannot create a second Event
            "metadata": {"name": f"{verdict.cluster_id}-stability-{verdict.id}", "namespace": self.namespace},
            "involvedObject": {"namespace": self.namespace, **self.involved_object},
            "reason": "ClusterStable" if verdict.is_stable else "ClusterUnstable",
            "message": message[:1024],
            "type": "Normal" if verdict.is_stable else "Warning",
            "source": {"component": self.component},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }

    def send(self, transition: Transition) -> None:
        try:
            self._api.create_namespaced_event(self.namespace, self.event_body(transition))
        except Exception as e:  # ApiException, urllib3 errors: all retried alike
            status = getattr(e, "status", None)
            if status == 409:
                return  # an earlier attempt got through

            raise NotifyError(f"creating an Event in {self.namespace} failed" + (f" ({status})" if status else f": {e}")) from e


class NotificationDispatcher:
    """Delivers transitions to every sink from one background thread, in order."""

    def __init__(
        self,
        sinks: Sequence[NotificationSink],
        *,
        attempts: int = 5,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        sleep: Callable[[float], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.sinks = list(sinks)
        self.attempts = max(1, attempts)
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._rng = rng or random.Random()  # jitter: every aggregator's webhook retries would land together
        self._queue: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._sleep = sleep or self._stop.wait
        self.delivered = 0
        self.failed = 0
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the delivery thread (once); transitions submitted before wait for it."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="stability-notify", daemon=True)
            self._thread.start()

    def submit(self, transition: Transition) -> None:
        """Queue a transition (returns at once; safe to pass to `checker.on_transition`)."""
        self._queue.put(transition)

    def _run(self) -> None:
        while True:
            transition = self._queue.get()
            try:
                if transition is None:
                    return
                for sink in self.sinks:
                    self._deliver(sink, transition)
            finally:
                self._queue.task_done()

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Wait until everything submitted so far was delivered or given up; False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._queue.all_tasks_done.wait(left)
        return True

    def _deliver(self, sink: NotificationSink, transition: Transition) -> None:
        for attempt in range(1, self.attempts + 1):
            try:
                sink.send(transition)
                self.delivered += 1
                return
            except Exception as e:  # noqa: BLE001 - any sink failure is retried, then counted as failed
                log.warning("%s notification attempt %d/%d failed: %s", sink.name, attempt, self.attempts, e)
            if attempt < self.attempts and not self._stop.is_set():
                self._sleep(backoff_delay(attempt - 1, self.backoff_s, self.max_backoff_s, jitter="equal", rand=self._rng.random))
        self.failed += 1
        log.error("%s notification for verdict %s given up", sink.name, transition.verdict.id)

    def close(self, timeout_s: float = 5.0) -> None:
        """Deliver what is queued (no more waiting between retries) and stop the thread."""
        self._stop.set()
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout_s)


def dispatcher_from_env(
    env: Mapping[str, str], *, cluster_id: str, core_v1=None, namespace: str = "controllers"
) -> NotificationDispatcher | None:
    """The sinks the environment asks for: the webhook when `AIOS_STABILITY_WEBHOOK_URL` is set,
    Kubernetes Events when a client is given (Deployment `<cluster_id>-controller`)."""
    sinks: list[NotificationSink] = []
    url = env.get("AIOS_STABILITY_WEBHOOK_URL", "").strip()
    if url:
        sinks.append(WebhookSink(url))
    if core_v1 is not None:
        sinks.append(
            KubernetesEventSink(
                core_v1,
                namespace=namespace,
                involved_object={"apiVersion": "apps/v1", "kind": "Deployment", "name": f"{cluster_id}-controller"},
            )
        )
    return NotificationDispatcher(sinks) if sinks else None

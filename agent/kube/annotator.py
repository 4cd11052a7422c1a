"""Keep the Node's `gpu.aios/info` annotation and `gpu.aios/*` labels true.

Two halves:

- Pure functions: `desired_metadata(inventory)` says what the Node should
  carry; `metadata_patch(desired, current)` says the smallest JSON merge patch
  (RFC 7386) that gets it there, touching only the keys we own (a null removes
  one). No read-modify-write of the whole Node, so nobody else's annotations
  or labels can be clobbered.
- `NodeAnnotator`: the API work, in its own thread. The sampling loop calls
  `observe(inventory)`, which only records the desired state and wakes the
  worker (it never touches the network, so it never blocks). The worker
  reads the Node at start and every `resync_interval_s` (someone may have
  edited or deleted our keys), compares with what we last wrote in between,
  patches only when something differs, and on failure logs one clear
  sentence and retries with capped exponential backoff and jitter.

Threading: `start()` runs `run_forever()` in a daemon thread; `stop()` ends
it. `sync_once()` does one synchronous read+patch (for `annotate --once`).
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from agent.backoff import Backoff  # re-exported: callers pass one in
from agent.kube.annotation import ANNOTATION_KEY, gpu_annotation_value
from agent.kube.client import (
    KubeApiError,
    KubeConfigError,
    NodeApi,
    NodeIdentity,
    api_error,
    load_api_client,
    node_id_from,
)
from agent.kube.step_loop import StepLoop
from proto.telemetry.v1.readings import NodeInventory

__all__ = [
    "LABEL_PREFIX",
    "OWNED_ANNOTATIONS",
    "OWNED_LABELS",
    "PATCH_CONTENT_TYPE",
    "AnnotatorStatus",
    "Backoff",
    "GpusUnknown",
    "NodeAnnotator",
    "NodeGpuMetadata",
    "desired_metadata",
    "label_value",
    "metadata_patch",
    "open_node_annotator",
    "owned_metadata",
]

log = logging.getLogger(__name__)

LABEL_PREFIX = "gpu.aios/"
LABEL_COUNT = LABEL_PREFIX + "count"  # number of GPUs, "0" on a node without any
LABEL_PRODUCT = LABEL_PREFIX + "product"  # NVML name made label-safe, when all GPUs share it
LABEL_MEMORY = LABEL_PREFIX + "memory-mb"  # the smallest GPU's total memory, MB
LABEL_ARCHITECTURE = LABEL_PREFIX + "architecture"  # "ampere", "hopper", ... when all GPUs share it
LABEL_MIG = LABEL_PREFIX + "mig-enabled"  # "true"/"false" when all GPUs agree
OWNED_LABELS = (LABEL_COUNT, LABEL_PRODUCT, LABEL_MEMORY, LABEL_ARCHITECTURE, LABEL_MIG)
OWNED_ANNOTATIONS = (ANNOTATION_KEY,)
# Merge patch: maps merge key by key and null deletes a key, on every API server.
PATCH_CONTENT_TYPE = "application/merge-patch+json"
# NodeReader's nvml_status when the GPU collector raised (agent/sampling/node_reader.py).
GPU_COLLECTOR_FAILED = "gpu collector failed"

_LABEL_VALUE_MAX = 63
_NOT_LABEL_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


class GpusUnknown(Exception):
    """The inventory could not say which GPUs the node has (the GPU collector failed)."""


@dataclass(frozen=True)
class NodeGpuMetadata:
    """The owned keys of a Node: present keys with their values, nothing else."""

    annotations: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)


def label_value(text: str) -> str | None:
    """`text` as a valid label value (<= 63 chars of [A-Za-z0-9._-], alphanumeric
    at both ends), or None when nothing usable is left."""
    value = _NOT_LABEL_CHARS.sub("-", text.strip())
    value = value.strip("-._")[:_LABEL_VALUE_MAX].rstrip("-._")
    return value or None


def _common(values: list[str]) -> str | None:
    distinct = set(values)
    if len(distinct) == 1:
        (value,) = distinct
        return value or None
    return None


def desired_metadata(inventory: NodeInventory) -> NodeGpuMetadata:
    """Pure: the annotation and labels this node's GPUs call for.

    Label values change only with the hardware (no timestamps, no readings),
    so a steady node is never patched.
    """
    gpus = inventory.gpus
    labels: dict[str, str] = {LABEL_COUNT: str(len(gpus))}
    if gpus:
        product = _common([label_value(g.name) or "" for g in gpus])
        if product:
            labels[LABEL_PRODUCT] = product
        labels[LABEL_MEMORY] = str(min(int(g.memory_mb) for g in gpus))
        architecture = _common([label_value(g.architecture) or "" for g in gpus])
        if architecture:
            labels[LABEL_ARCHITECTURE] = architecture
        mig = _common(["" if g.mig_enabled is None else str(g.mig_enabled).lower() for g in gpus])
        if mig:
            labels[LABEL_MIG] = mig
    return NodeGpuMetadata(annotations={ANNOTATION_KEY: gpu_annotation_value(gpus)}, labels=labels)


def owned_metadata(annotations: Mapping[str, str] | None, labels: Mapping[str, str] | None) -> NodeGpuMetadata:
    """Pure: only our keys out of a live Node's annotations and labels."""
    annotations = annotations or {}
    labels = labels or {}
    return NodeGpuMetadata(
        annotations={k: annotations[k] for k in OWNED_ANNOTATIONS if k in annotations},
        labels={k: labels[k] for k in OWNED_LABELS if k in labels},
    )


def metadata_patch(desired: NodeGpuMetadata, current: NodeGpuMetadata | None) -> dict | None:
    """Pure: the merge patch taking `current` to `desired`, or None when equal.

    `current=None` means unknown (dry run): every owned key is written, and
    every owned label we do not want is nulled.
    """
    sections: dict[str, dict[str, str | None]] = {}
    for section, owned in (("annotations", OWNED_ANNOTATIONS), ("labels", OWNED_LABELS)):
        want: Mapping[str, str] = getattr(desired, section)
        have: Mapping[str, str] | None = None if current is None else getattr(current, section)
        changes: dict[str, str | None] = {}
        for key in owned:
            if key in want:
                if have is None or have.get(key) != want[key]:
                    changes[key] = want[key]
            elif have is None or key in have:
                changes[key] = None
        if changes:
            sections[section] = changes
    return {"metadata": sections} if sections else None


def _apply(current: NodeGpuMetadata, patch: dict) -> NodeGpuMetadata:
    """What the owned keys look like after `patch` was accepted."""
    result = {}
    for section in ("annotations", "labels"):
        values = dict(getattr(current, section))
        for key, value in patch["metadata"].get(section, {}).items():
            if value is None:
                values.pop(key, None)
            else:
                values[key] = value
        result[section] = values
    return NodeGpuMetadata(**result)


@dataclass(frozen=True)
class AnnotatorStatus:
    in_sync: bool  # the Node carries what the last observed inventory calls for
    reads: int  # GETs of the Node sent
    patches: int  # PATCHes sent (and accepted)
    consecutive_failures: int
    last_error: str  # "" after a success
    last_success_at: float | None  # clock() of the last successful sync
    identity: NodeIdentity | None  # from the last read of the Node


class NodeAnnotator:
    """Keeps one Node's owned metadata equal to `desired_metadata(last observed inventory)`."""

    def __init__(
        self,
        core_v1_api: Any,
        node_name: str,
        clock: Callable[[], float] = time.monotonic,
        *,
        resync_interval_s: float = 300.0,
        request_timeout_s: float = 10.0,
        backoff: Backoff | None = None,
        env: Mapping[str, str] | None = None,
    ):
        if resync_interval_s <= 0:
            raise ValueError(f"resync_interval_s must be > 0, got {resync_interval_s}")
        self._api = core_v1_api
        self.node_name = node_name
        self._clock = clock
        self._resync_interval_s = resync_interval_s
        self._request_timeout_s = request_timeout_s
        # equal jitter: a floor of half the step, so a Node this agent cannot
        # patch (RBAC, a webhook) is not retried at once, fleet-wide
        self._backoff = backoff or Backoff(jitter="equal")
        self._env = env

        self._lock = threading.Lock()  # guards _desired and _resync_requested
        self._desired: NodeGpuMetadata | None = None
        self._resync_requested = False
        self._loop = StepLoop("node-annotator", self._step, self._backoff, request_timeout_s + 1, log)

        # Worker-only state (one thread runs _step at a time).
        self._current: NodeGpuMetadata | None = None  # our keys as last read or written; None = unknown
        self._next_resync_at = 0.0
        self._retry_at = 0.0
        self._status = AnnotatorStatus(False, 0, 0, 0, "", None, None)

    @property
    def api(self) -> Any:
        """The Node API it talks through (`agent.kube.client.NodeApi` or a `CoreV1Api`; the agent reads
        the Node's identity with it too)."""
        return self._api

    # -------------------------------------------------------- sampling side

    def observe(self, inventory: NodeInventory) -> None:
        """Record what the Node should carry; never blocks on the network.

        An inventory whose GPU collector crashed says nothing about the GPUs:
        it is skipped, so one bad reading never wipes the annotation to `[]`.
        (A node without NVML reports its reason in `nvml_status` and no GPUs:
        that is a real "no GPU here" and is written.)
        """
        if _gpus_unknown(inventory):
            log.debug("node annotator: GPUs unknown this time (%s); keeping the last state", inventory.nvml_status)
            return
        desired = desired_metadata(inventory)
        with self._lock:
            if desired == self._desired:
                return
            self._desired = desired
        self._loop.wake()

    def resync(self) -> None:
        """Compare with the live Node at the next opportunity."""
        with self._lock:
            self._resync_requested = True
        self._loop.wake()

    def status(self) -> AnnotatorStatus:
        return self._status

    # -------------------------------------------------------- worker side

    def start(self) -> None:
        self._loop.start()

    def stop(self, timeout_s: float | None = None) -> None:
        """Stop the worker; an API call in flight ends within `request_timeout_s`."""
        self._loop.stop(timeout_s)

    def run_forever(self) -> None:
        self._loop.run_forever()

    def _step(self) -> float:
        """Do what is due now; return how long to sleep before the next step."""
        now = self._clock()
        with self._lock:
            desired = self._desired
            if self._resync_requested:
                self._resync_requested = False
                self._next_resync_at = now
        if desired is None:
            return self._resync_interval_s  # nothing observed yet; observe() wakes us
        if now < self._retry_at:
            return self._retry_at - now
        try:
            self._sync(desired, now)
        except KubeApiError as exc:
            delay = self._backoff.next_delay()
            self._retry_at = now + delay
            self._current = None  # after a failure we no longer know what the Node has
            self._status = replace(
                self._status,
                in_sync=False,
                consecutive_failures=self._status.consecutive_failures + 1,
                last_error=str(exc),
            )
            log.warning("node annotator: %s; retrying in %.1f s", exc, delay)
            return delay
        if self._status.consecutive_failures:
            log.info("node annotator: node %r in sync again after %d failure(s)", self.node_name,
                     self._status.consecutive_failures)
        self._backoff.reset()
        self._retry_at = 0.0
        self._status = replace(
            self._status, in_sync=True, consecutive_failures=0, last_error="", last_success_at=now
        )
        return max(0.0, self._next_resync_at - self._clock())

    # -------------------------------------------------------- API calls

    def sync_once(self, inventory: NodeInventory | None = None) -> dict | None:
        """One synchronous read of the Node and, if needed, one patch.

        Returns the patch sent (None: nothing to change). Raises `KubeApiError`,
        or `GpusUnknown` when `inventory` comes from a failed GPU collector.
        """
        if inventory is not None:
            if _gpus_unknown(inventory):
                raise GpusUnknown(f"the node's GPUs could not be read: {inventory.nvml_status}")
            self.observe(inventory)
        with self._lock:
            desired = self._desired
        if desired is None:
            raise ValueError("sync_once needs an inventory: nothing observed yet")
        self._current = None  # read the live Node first
        return self._sync(desired, self._clock())

    def _sync(self, desired: NodeGpuMetadata, now: float) -> dict | None:
        if self._current is None or now >= self._next_resync_at:
            self._current = self._read()
            self._next_resync_at = now + self._resync_interval_s
        patch = metadata_patch(desired, self._current)
        if patch is not None:
            self._patch(patch)
            # Between resyncs we trust what we wrote (not the answer): a webhook that
            # rewrites our keys then costs one patch per resync, never a patch loop.
            self._current = _apply(self._current, patch)
            log.info("node annotator: patched node %r: %s", self.node_name, _summary(patch))
        return patch

    def _read(self) -> NodeGpuMetadata:
        try:
            node = self._api.read_node(self.node_name, _request_timeout=self._request_timeout_s)
        except Exception as exc:
            raise api_error(exc, verb="get", node_name=self.node_name, timeout_s=self._request_timeout_s) from exc
        metadata = node.metadata
        self._status = replace(
            self._status,
            reads=self._status.reads + 1,
            identity=node_id_from(metadata.labels, self.node_name, self._env),
        )
        return owned_metadata(metadata.annotations, metadata.labels)

    def _patch(self, patch: dict) -> None:
        try:
            self._api.patch_node(
                self.node_name, patch, _content_type=PATCH_CONTENT_TYPE, _request_timeout=self._request_timeout_s
            )
        except Exception as exc:
            raise api_error(exc, verb="patch", node_name=self.node_name, timeout_s=self._request_timeout_s) from exc
        self._status = replace(self._status, patches=self._status.patches + 1)


def _gpus_unknown(inventory: NodeInventory) -> bool:
    return not inventory.gpus and inventory.nvml_status.startswith(GPU_COLLECTOR_FAILED)


def _summary(patch: dict) -> str:
    parts = []
    for _section, changes in patch["metadata"].items():
        for key, value in changes.items():
            shown = "(removed)" if value is None else (value if len(value) <= 60 else value[:57] + "...")
            parts.append(f"{key}={shown}")
    return ", ".join(parts)


def open_node_annotator(
    node_name: str,
    *,
    kubeconfig: str | None = None,
    env: Mapping[str, str] | None = None,
    resync_interval_s: float | None = None,
) -> NodeAnnotator | None:
    """The daemon's annotator, or None (logged) where no API server is configured,
    so the agent also runs outside Kubernetes. Not started: call `.start()`.

    Wiring into the daemon: `daemon.inventory_observers.append(annotator.observe)`.
    `resync_interval_s` defaults to env `AIOS_ANNOTATE_RESYNC_S`, else 300.
    """
    env = os.environ if env is None else env
    try:
        api_client = load_api_client(kubeconfig, env=env)
    except KubeConfigError as exc:
        log.warning("node annotator off: %s", exc)
        return None
    if resync_interval_s is None:
        raw = env.get("AIOS_ANNOTATE_RESYNC_S", "")
        try:
            resync_interval_s = float(raw) if raw else 300.0
        except ValueError as exc:
            raise ValueError(f"AIOS_ANNOTATE_RESYNC_S={raw!r}: not a number of seconds") from exc
    return NodeAnnotator(NodeApi(api_client), node_name, resync_interval_s=resync_interval_s, env=env)

"""The small interfaces every collector implements, and the isolation wrapper.

A collector that fails is logged, counted and skipped; it never takes the
sample down (the node_exporter pattern). "No GPU here" is not a failure.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from proto.telemetry.v1.readings import (
    CollectorStatus,
    GpuInventory,
    GpuSample,
    HealthEvent,
    HostInventory,
    HostSample,
)

__all__ = ["GpuCollector", "GpuReport", "HostCollector", "run_isolated"]

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class GpuReport:
    """What the GPU collector knows about the node's GPUs as a whole."""

    gpus: tuple[GpuInventory, ...]
    driver_version: str = ""
    cuda_driver_version: str = ""
    nvml_status: str = "ok"  # "ok", or why NVML is unavailable (a CPU node)


class GpuCollector(Protocol):
    name: str

    def inventory(self) -> GpuReport: ...

    def sample(self) -> tuple[tuple[GpuSample, ...], tuple[HealthEvent, ...]]:
        """One reading of every GPU, and the health events seen since the last call."""
        ...

    def start(self) -> None:
        """Open what the readings need and start what runs in the background (an event thread)."""
        ...

    def set_event_listener(self, listener: Callable[[HealthEvent], None] | None) -> None:
        """Asynchronous events (XIDs) go to `listener` as they arrive instead of with the next
        `sample()`; None: back to the samples."""
        ...

    def close(self) -> None: ...


class HostCollector(Protocol):
    name: str

    def inventory(self) -> HostInventory: ...

    def sample(self) -> HostSample: ...


def run_isolated(
    name: str, fn: Callable[[], T], clock: Callable[[], float] = time.perf_counter
) -> tuple[T | None, CollectorStatus]:
    """Run one collector call; a failure becomes a status, never an exception."""
    start = clock()
    try:
        result = fn()
    except Exception as exc:
        duration = clock() - start
        log.warning("collector %s failed: %s", name, exc, exc_info=log.isEnabledFor(logging.DEBUG))
        return None, CollectorStatus(name, False, duration, f"{type(exc).__name__}: {exc}")
    return result, CollectorStatus(name, True, clock() - start)

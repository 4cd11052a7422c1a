"""One reading of the whole node: GPU and host collectors composed.

Each collector call runs isolated (`run_isolated`): a collector that raises is
logged, timed and reported as a failed `CollectorStatus` plus a
`collector_error` health event, and the others still report.

Health events the GPU collector finds between samples (XIDs) can go to a
listener the moment they arrive (`set_health_listener`); those are not
repeated in the next `sample()`.

With an attributor (`agent.attribution`), each sample also says who is on
the GPUs (`NodeSample.attribution`), from the GPU samples just read; it runs
isolated too (collector "attribution"), so a failure there costs only the
attribution.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

from agent.sampling.collector import GpuCollector, HostCollector, run_isolated
from proto.telemetry.v1.readings import Attribution, CollectorStatus, GpuSample, HealthEvent, NodeInventory, NodeSample

__all__ = ["NodeReader", "open_node_reader"]

log = logging.getLogger(__name__)


class Attributor(Protocol):
    name: str

    def attribute(self, gpus: tuple[GpuSample, ...]) -> Attribution: ...

    def close(self) -> None: ...


class NodeReader:
    def __init__(
        self,
        node_id: str,
        node_name: str,
        gpu: GpuCollector,
        host: HostCollector,
        clock: Callable[[], float] = time.time,
        attributor: Attributor | None = None,
    ):
        self.node_id = node_id
        self.node_name = node_name
        self._gpu = gpu
        self._host = host
        self._clock = clock
        self._attributor = attributor

    def inventory(self) -> NodeInventory:
        report, gpu_status = run_isolated(self._gpu.name, self._gpu.inventory)
        host, _ = run_isolated(self._host.name, self._host.inventory)
        if report is None:
            return NodeInventory(
                node_id=self.node_id,
                node_name=self.node_name,
                host=host,
                nvml_status=f"gpu collector failed: {gpu_status.error}",
            )
        return NodeInventory(
            node_id=self.node_id,
            node_name=self.node_name,
            host=host,
            gpus=report.gpus,
            driver_version=report.driver_version,
            cuda_driver_version=report.cuda_driver_version,
            nvml_status=report.nvml_status,
        )

    def sample(self) -> NodeSample:
        timestamp = self._clock()
        gpu_result, gpu_status = run_isolated(self._gpu.name, self._gpu.sample)
        host, host_status = run_isolated(self._host.name, self._host.sample)
        gpus, events = gpu_result if gpu_result is not None else ((), ())
        statuses: tuple[CollectorStatus, ...] = (gpu_status, host_status)
        attribution = None
        attributor = self._attributor
        if attributor is not None and gpus:  # a CPU node has nobody to attribute
            attribution, attribution_status = run_isolated(attributor.name, lambda: attributor.attribute(tuple(gpus)))
            statuses += (attribution_status,)
        failures = tuple(_collector_error(s, timestamp) for s in statuses if not s.success)
        return NodeSample(
            timestamp=timestamp,
            host=host,
            gpus=tuple(gpus),
            collectors=statuses,
            health_events=tuple(events) + failures,
            attribution=attribution,
        )

    def set_health_listener(self, listener: Callable[[HealthEvent], None] | None) -> None:
        """Deliver the GPU collector's asynchronous health events (XIDs) to `listener`
        as they arrive, from the collector's event thread (None: with the samples)."""
        self._gpu.set_event_listener(listener)

    def close(self) -> None:
        for collector in (self._gpu, self._host, self._attributor):
            if collector is None:
                continue
            close = getattr(collector, "close", None)
            if close is None:
                continue
            try:
                close()
            except Exception as exc:  # noqa: BLE001 - closing one must not leak the other
                log.warning("closing collector %s failed: %s", collector.name, exc)

    def __enter__(self) -> NodeReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _collector_error(status: CollectorStatus, timestamp: float) -> HealthEvent:
    return HealthEvent(
        kind="collector_error",
        timestamp=timestamp,
        message=f"collector {status.name} failed: {status.error}",
    )


def open_node_reader(
    *,
    node_id: str,
    node_name: str,
    host_root: str = "/",
    nvml_library: str | None = None,
    environ: dict[str, str] | None = None,
) -> NodeReader:
    """The production reader: NVML (or a CPU node when NVML is unavailable), psutil,
    and who is on the GPUs unless $AIOS_ATTRIBUTION is "off" (the kubelet's
    socket: $AIOS_POD_RESOURCES_SOCKET, default /var/lib/kubelet/pod-resources/kubelet.sock,
    read every $AIOS_POD_RESOURCES_REFRESH_S, default 30)."""
    import os

    from agent.gpu.collector import open_gpu_collector, usage_from_env  # the gpu branch's module
    from agent.host.collector import PsutilHostCollector

    env = os.environ if environ is None else environ
    usage = usage_from_env(env)
    gpu = open_gpu_collector(library_path=nvml_library, usage=usage)
    attributor = None
    if usage:
        from agent.attribution.attributor import GpuAttributor, refresh_from_env
        from agent.attribution.pod_resources import DEFAULT_SOCKET, SOCKET_ENV, PodResourcesClient

        socket_path = env.get(SOCKET_ENV) or DEFAULT_SOCKET
        refresh_s = refresh_from_env(env)
        attributor = GpuAttributor(PodResourcesClient(socket_path), host_root=host_root, refresh_s=refresh_s)
    return NodeReader(node_id, node_name, gpu, PsutilHostCollector(root=host_root), attributor=attributor)

"""NodeReader composes the GPU and host collectors, each isolated from the other's failures."""

from __future__ import annotations

import pytest

from agent.host.collector import PsutilHostCollector
from agent.sampling.collector import GpuReport
from agent.sampling.node_reader import NodeReader
from proto.telemetry.v1.readings import MIB, GpuInventory, GpuSample, HealthEvent
from tests.support.hostfs import Counters, write_host_tree

GPU = GpuInventory(index=0, uuid="GPU-1", name="NVIDIA H100 80GB HBM3", memory_bytes=81559 * MIB)


class InTestGpus:
    """A GpuCollector for composing tests: one GPU and one XID event, or failing."""

    name = "gpu"

    def __init__(self, fail: bool = False):
        self.fail = fail
        self.closed = False

    def inventory(self) -> GpuReport:
        if self.fail:
            raise RuntimeError("NVML_ERROR_UNKNOWN")
        return GpuReport(gpus=(GPU,), driver_version="550.54.15", cuda_driver_version="12.4")

    def sample(self):
        if self.fail:
            raise RuntimeError("NVML_ERROR_UNKNOWN")
        return (GpuSample(index=0, uuid="GPU-1", temperature_c=41.0),), (
            HealthEvent(kind="xid", timestamp=5.0, gpu_index=0, gpu_uuid="GPU-1", xid=79),
        )

    def start(self) -> None:
        pass

    def set_event_listener(self, listener) -> None:
        self.listener = listener

    def close(self) -> None:
        self.closed = True
        if self.fail:
            raise RuntimeError("close failed too")


@pytest.fixture
def host(tmp_path):
    c = PsutilHostCollector(root=str(write_host_tree(tmp_path / "host", Counters())), clock=lambda: 0.0)
    yield c
    c.close()


def test_inventory_and_sample_compose_both_collectors(host):
    reader = NodeReader("node-a", "gpu-node-7", InTestGpus(), host, clock=lambda: 1234.5)

    inv = reader.inventory()
    assert (inv.node_id, inv.node_name, inv.gpus, inv.driver_version, inv.cuda_driver_version, inv.nvml_status) == (
        "node-a", "gpu-node-7", (GPU,), "550.54.15", "12.4", "ok",
    )
    assert inv.host.hostname == "gpu-node-7" and len(inv.host.disks) == 2

    s = reader.sample()
    assert s.timestamp == 1234.5
    assert [g.temperature_c for g in s.gpus] == [41.0]
    assert s.host.threads_total == 412
    assert [(c.name, c.success) for c in s.collectors] == [("gpu", True), ("host", True)]
    assert [(e.kind, e.xid) for e in s.health_events] == [("xid", 79)]


def test_failing_gpu_collector_is_reported_and_host_still_reports(host):
    reader = NodeReader("node-a", "n", InTestGpus(fail=True), host, clock=lambda: 99.0)

    inv = reader.inventory()
    assert inv.gpus == () and inv.nvml_status == "gpu collector failed: RuntimeError: NVML_ERROR_UNKNOWN"
    assert inv.host is not None

    s = reader.sample()
    assert s.gpus == () and s.host is not None and s.host.load1 == 1.5
    gpu_status, host_status = s.collectors
    assert (gpu_status.name, gpu_status.success, gpu_status.error) == ("gpu", False, "RuntimeError: NVML_ERROR_UNKNOWN")
    assert host_status.success
    assert s.health_events == (
        HealthEvent(kind="collector_error", timestamp=99.0, message="collector gpu failed: RuntimeError: NVML_ERROR_UNKNOWN"),
    )


def test_failing_host_collector_leaves_gpus_reporting(host, tmp_path):
    (tmp_path / "host/proc/stat").unlink()
    reader = NodeReader("node-a", "n", InTestGpus(), host, clock=lambda: 7.0)
    s = reader.sample()
    assert s.host is None and len(s.gpus) == 1
    assert [(c.name, c.success) for c in s.collectors] == [("gpu", True), ("host", False)]
    assert "FileNotFoundError" in s.collectors[1].error
    assert [e.kind for e in s.health_events] == ["xid", "collector_error"]
    assert reader.inventory().host is None


def test_close_closes_every_collector_even_when_one_fails(host):
    gpus = InTestGpus(fail=True)
    with NodeReader("node-a", "n", gpus, host) as reader:
        reader.sample()
    assert gpus.closed
    assert host._fds == {}


def test_the_health_listener_reaches_the_gpu_collector(host):
    gpus = InTestGpus()
    reader = NodeReader("node-a", "gpu-node-7", gpus, host)
    heard: list[HealthEvent] = []
    reader.set_health_listener(heard.append)
    assert gpus.listener == heard.append
    reader.set_health_listener(None)
    assert gpus.listener is None

"""The GPU usage reader's merging of NVML's lists, on a stand-in session (the real NVML path: test_gpu_attribution)."""

import dataclasses

from agent.gpu.nvml_backend import MigHandle, NvmlNotSupported
from agent.gpu.usage import GpuUsageReader
from proto.telemetry.v1.readings import GpuProcess, MigSample

NA = 0xFFFFFFFF


class Session:
    def __init__(self):
        self.compute = [(10, 100, NA, NA), (11, None, NA, NA)]
        self.graphics = [(11, 50, NA, NA), (12, 70, NA, NA)]
        self.per_process = {10: (10, 1_000_000, 30, 4, 0, 0)}  # (pid, timestamp, sm, mem, enc, dec)
        self.graphics_supported = True
        self.util_calls = 0

    def running_processes(self, handle, *, graphics=False):
        if graphics and not self.graphics_supported:
            raise NvmlNotSupported(3, "NVML_ERROR_NOT_SUPPORTED")
        return list(self.graphics if graphics else self.compute)

    def process_utilization(self, handle, since_us):
        self.util_calls += 1
        return dict(self.per_process), since_us + 1

    def mig_handles(self, handle):
        return (MigHandle(0, "MIG-a", "h0", 1), MigHandle(1, "MIG-b", "h1", 2))

    def memory(self, handle):
        return {"h0": (40, 8, 32, 0), "h1": (10, 4, 6, 0)}[handle]

    def utilization(self, handle):
        raise NvmlNotSupported(3, "NVML_ERROR_NOT_SUPPORTED")


def test_compute_and_graphics_lists_merge_by_pid():
    values = GpuUsageReader(Session(), "h").read(mig_enabled=False)
    assert values["compute_processes"] == 2
    assert values["processes"] == (
        GpuProcess(10, "compute", 100, 30.0, 4.0),
        GpuProcess(11, "compute+graphics", 50),  # NVML had no figure from the compute list
        GpuProcess(12, "graphics", 70),
    )


def test_processes_built_without_init_are_whole_gpu_processes():
    process = GpuUsageReader(Session(), "h").read(mig_enabled=False)["processes"][0]
    assert {f.name for f in dataclasses.fields(GpuProcess)} == set(vars(process))
    built = GpuProcess(10, "compute", 100, 30.0, 4.0)
    assert process == built and hash(process) == hash(built)


def test_unchanged_processes_are_the_same_objects():
    reader = GpuUsageReader(Session(), "h")
    first = reader.read(mig_enabled=False)["processes"]
    second = reader.read(mig_enabled=False)["processes"]
    assert all(a is b for a, b in zip(first, second))


def test_not_supported_lists_are_remembered_and_named():
    session = Session()
    session.graphics_supported = False
    reader = GpuUsageReader(session, "h")
    reader.read(mig_enabled=False)
    reader.read(mig_enabled=False)
    assert reader.unsupported == {"graphics_processes"}


def test_mig_devices_their_processes_and_no_per_process_utilization():
    session = Session()
    session.compute = [(20, 8, 1, 0), (21, 4, 2, 0)]
    session.graphics = []
    reader = GpuUsageReader(session, "h")
    values = reader.read(mig_enabled=True)
    assert values["processes"] == (
        GpuProcess(20, "compute", 8, mig_uuid="MIG-a"),
        GpuProcess(21, "compute", 4, mig_uuid="MIG-b"),
    )
    assert values["migs"] == (
        MigSample(0, "MIG-a", 40, 8, None, ("utilization_gpu_pct",)),
        MigSample(1, "MIG-b", 10, 4, None, ("utilization_gpu_pct",)),
    )
    assert session.util_calls == 0 and "process_utilization" in reader.unsupported

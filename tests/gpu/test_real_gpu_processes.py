"""Who is on a real GPU: a process with a CUDA context, as NVML and the agent see it.

Marked `gpu`: skipped where there is no NVIDIA driver. Needs only nvidia-ml-py,
psutil and pytest, and the driver's libcuda.so.1 (the child below creates a
context and allocates 256 MiB through it with ctypes, no CUDA toolkit).
Run with `-s` to see what NVML reported; AIOS_GPU_REPORT=path also writes it
(with a `-processes` suffix) as JSON.
"""

from __future__ import annotations

import ctypes
import dataclasses
import json
import os
import subprocess
import sys
import time

import pytest

from agent.attribution.attributor import GpuAttributor
from agent.gpu.collector import open_gpu_collector

pytestmark = pytest.mark.gpu

ALLOC_BYTES = 256 * 1024 * 1024
CHILD = r"""
import ctypes, sys, time
cuda = ctypes.CDLL("libcuda.so.1")
def ok(code, what):
    if code != 0:
        sys.stdout.write(f"error {what} {code}\n"); sys.stdout.flush(); sys.exit(1)
ok(cuda.cuInit(0), "cuInit")
dev = ctypes.c_int()
ok(cuda.cuDeviceGet(ctypes.byref(dev), 0), "cuDeviceGet")
ctx = ctypes.c_void_p()
ok(cuda.cuCtxCreate_v2(ctypes.byref(ctx), 0, dev), "cuCtxCreate")
ptr = ctypes.c_uint64()
ok(cuda.cuMemAlloc_v2(ctypes.byref(ptr), ctypes.c_size_t(ALLOC)), "cuMemAlloc")
sys.stdout.write("ready\n"); sys.stdout.flush()
time.sleep(60)
""".replace("ALLOC", str(ALLOC_BYTES))


def _jsonable(value):
    if dataclasses.is_dataclass(value):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


@pytest.fixture(scope="module")
def cuda_process():
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError as exc:
        pytest.skip(f"no libcuda.so.1 to create a context with: {exc}")
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True)
    line = child.stdout.readline().strip()
    if line != "ready":
        child.kill()
        pytest.fail(f"the CUDA child did not start: {line!r}")
    yield child
    child.kill()
    child.wait()


def test_a_cuda_process_is_listed_with_its_memory_and_owner(cuda_process):
    collector = open_gpu_collector(usage=True)
    attributor = GpuAttributor(None, host_root="/")
    try:
        deadline = time.monotonic() + 15
        while True:
            gpus, _ = collector.sample()
            on_gpu0 = gpus[0].processes if gpus else ()
            big = [p for p in on_gpu0 if (p.used_memory_bytes or 0) >= ALLOC_BYTES]
            if big or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        attribution = attributor.attribute(tuple(gpus))
    finally:
        collector.close()
    report = {
        "child_pid": cuda_process.pid,
        "gpu0_processes": _jsonable(on_gpu0),
        "gpu0_unsupported": list(gpus[0].unsupported) if gpus else [],
        "pid_seen_as_ours": any(p.pid == cuda_process.pid for p in on_gpu0),
        "owners": _jsonable(attribution.owners),
        "migs": _jsonable(gpus[0].migs) if gpus else [],
    }
    print(json.dumps(report, indent=1))
    if os.environ.get("AIOS_GPU_REPORT"):
        with open(os.environ["AIOS_GPU_REPORT"] + "-processes", "w") as f:
            json.dump(report, f, indent=1)
    assert big, f"no process with >= 256 MiB on GPU 0 within 15 s; NVML listed {report['gpu0_processes']}"
    process = big[0]
    assert process.kind in ("compute", "compute+graphics")
    assert process.sm_utilization_pct is None or 0 <= process.sm_utilization_pct <= 100
    if report["pid_seen_as_ours"]:
        # same PID namespace as NVML's: the owner came from this machine's /proc/<pid>/cgroup
        owner = next(o for o in attribution.owners if cuda_process.pid in o.pids)
        assert owner.scope in ("host", "container", "pod")

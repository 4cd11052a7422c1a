"""A fake NVML for tests: build the C library and write the config it reads.

The real `pynvml` loads `libnvidia-ml.so.1` from `LD_LIBRARY_PATH`; pointing
that at the directory `build_fake_nvml` returns makes it load the fake, which
answers from the file named by `AIOS_FAKE_NVML_CONFIG`. pynvml caches the
library for the life of a process, so run one scenario per subprocess, with
`FakeNvml.env` merged into its environment.

Config file format (one `key=value` per line, read by fake_nvml.c):
  init_error=DRIVER_NOT_LOADED      NVML error name nvmlInit returns (absent = success)
  driver_version=550.54.15
  cuda_driver_version=12040         as NVML reports it (1000*major + 10*minor)
  gpu_count=N
  gpu.I.<field>=value               see FakeGpu.config_lines for the fields
  gpu.I.mig.M.{uuid,name,memory_total,memory_used,gi,util_gpu}=...
                                    gi: GPU instance id (default M+1); util_gpu
                                    -1 (default) = not supported, as on real MIG
  gpu.I.proc.K.{pid,kind,used_memory,gi,sm,mem}=...
                                    a process on the GPU: kind c/g/cg (compute,
                                    graphics, both), used_memory bytes or "na",
                                    gi its GPU instance (MIG), sm/mem its
                                    utilization % (-1 = no sample); without any
                                    proc.K, `compute_processes` synthetic ones
  gpu.I.util_jitter=1               (benchmarks) each query moves per-process SM % by 0..2
  gpu.I.unsupported=temperature,ecc fields answering NVML_ERROR_NOT_SUPPORTED
  gpu.I.error=GPU_IS_LOST           every call on the device returns this error
  gpu.I.hang=nvmlDeviceGetTemperature  that call on the device blocks (a stuck driver) until removed
  gpu.I.recovery_action=2           nvmlDeviceGetFieldValues' NVML_FI_DEV_GET_GPU_RECOVERY_ACTION
                                    (declare `recovery_action` unsupported for an older driver)
  event.SEQ=I,XID                   an XID event on GPU I; SEQ increases
Memory values are bytes, power milliwatts, as in NVML.

After each rewrite the writer bumps a little-endian uint64 in `<config>.gen`;
the fake maps that file and re-reads the config when the counter moves (one
memory read per call; without the file it stat()s the config on every call).
"""

from __future__ import annotations

import glob
import os
import shutil
import struct
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass, fields, replace
from pathlib import Path

__all__ = [
    "CLOCK_EVENT_BITS",
    "FakeGpu",
    "FakeMig",
    "FakeNvml",
    "FakeNvmlBuildError",
    "FakeProcess",
    "build_fake_nvml",
    "find_nvml_header",
]

SOURCE = Path(__file__).with_name("fake_nvml.c")
MIB = 1024 * 1024

# NVML's clock-event reason bits (nvml.h, nvmlClocksEventReason*), for tests
# that set `clock_event_reasons`.
CLOCK_EVENT_BITS = {
    "gpu_idle": 0x1,
    "applications_clocks_setting": 0x2,
    "sw_power_cap": 0x4,
    "hw_slowdown": 0x8,
    "sync_boost": 0x10,
    "sw_thermal_slowdown": 0x20,
    "hw_thermal_slowdown": 0x40,
    "hw_power_brake_slowdown": 0x80,
    "display_clock_setting": 0x100,
}


class FakeNvmlBuildError(RuntimeError):
    """The fake library could not be built (no gcc, no nvml.h, compile error)."""


def find_nvml_header() -> Path:
    """nvml.h from the `nvidia-nvml-dev` package installed beside pynvml."""
    roots = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    roots.update(p for p in sys.path if p.endswith("site-packages"))
    for root in sorted(roots):
        for header in sorted(glob.glob(os.path.join(root, "nvidia", "*", "include", "nvml.h"))):
            return Path(header)
    raise FakeNvmlBuildError(
        "nvml.h not found under site-packages/nvidia/*/include; install nvidia-nvml-dev"
    )


def build_fake_nvml(out_dir: Path) -> Path:
    """Compile the fake into out_dir/libnvidia-ml.so.1 and return out_dir."""
    compiler = shutil.which(os.environ.get("CC", "gcc"))
    if compiler is None:
        raise FakeNvmlBuildError("no C compiler found (gcc) to build the fake libnvidia-ml.so.1")
    header = find_nvml_header()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / "libnvidia-ml.so.1"
    cmd = [
        compiler, "-O2", "-std=gnu11", "-Wall", "-Wextra", "-Werror",
        # every exported function must match a declaration in nvml.h
        "-Wmissing-prototypes", "-Wno-deprecated-declarations",
        "-shared", "-fPIC", "-Wl,-soname,libnvidia-ml.so.1", "-Wl,--no-undefined",
        "-I", str(header.parent), "-o", str(target), str(SOURCE), "-lpthread",
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise FakeNvmlBuildError(f"building {SOURCE.name} failed:\n{result.stderr}")
    return out_dir


@dataclass(frozen=True)
class FakeMig:
    uuid: str
    name: str  # NVML names MIG devices "<GPU name> MIG <profile>"
    memory_mb: int
    memory_used_mb: int = 0
    gpu_instance_id: int = 0  # 0: the fake answers index + 1
    util_gpu_pct: int | None = None  # None: not supported (as on real MIG devices)


@dataclass(frozen=True)
class FakeProcess:
    pid: int
    kind: str = "c"  # "c" compute, "g" graphics, "cg" both
    used_memory_mb: int | None = 1024  # None: NVML says "not available"
    gpu_instance_id: int | None = None  # the MIG GPU instance it runs in
    sm_pct: int | None = None  # per-process utilization; None: no sample
    mem_pct: int | None = None


@dataclass(frozen=True)
class FakeGpu:
    """What one fake GPU answers. None for mig_* means MIG is not supported."""

    name: str
    uuid: str
    memory_total_mb: int
    memory_used_mb: int = 0
    memory_reserved_mb: int = 0
    # bytes beyond the whole MiB above: real boards report totals like 7,516,205,123 B
    memory_total_extra_bytes: int = 0
    memory_used_extra_bytes: int = 0
    pci_bus_id: str = "00000000:00:00.0"
    compute_capability: tuple[int, int] = (8, 0)
    mig_current: bool | None = None
    mig_pending: bool | None = None
    mig_devices: tuple[FakeMig, ...] = ()
    power_limit_w: float = 300.0
    power_draw_w: float = 60.0
    temperature_c: int = 35
    util_gpu_pct: int = 0
    util_memory_pct: int = 0
    clock_sm_mhz: int = 210
    clock_mem_mhz: int = 1215
    clock_event_reasons: int = 0
    ecc_corrected_volatile: int = 0
    ecc_uncorrected_volatile: int = 0
    ecc_corrected_aggregate: int = 0
    ecc_uncorrected_aggregate: int = 0
    retired_pages_sbe: int = 0
    retired_pages_dbe: int = 0
    retired_pages_pending: bool = False
    remapped_rows_correctable: int = 0
    remapped_rows_uncorrectable: int = 0
    remapped_rows_pending: bool = False
    remapped_rows_failure: bool = False
    pcie_replay: int = 0
    nvlinks: tuple[bool, ...] = ()  # one entry per link that exists
    compute_processes: int = 0  # synthetic compute processes (pid 1000+i, 1 GiB) when `processes` is empty
    processes: tuple[FakeProcess, ...] = ()
    util_jitter: bool = False  # benchmarks: per-process utilization changes at every query
    unsupported: tuple[str, ...] = ()  # names from fake_nvml.c FIELD_NAMES
    error: str | None = None  # NVML error name every call on the device returns
    recovery_action: int = 0  # nvmlDeviceGpuRecoveryAction_t (0 none, 1 GPU reset, 2 node reboot, ...)
    hang: str | None = None  # an NVML function name: that call on this GPU blocks until cleared

    @property
    def memory_free_mb(self) -> int:
        return self.memory_total_mb - self.memory_used_mb - self.memory_reserved_mb

    @property
    def memory_bytes(self) -> tuple[int, int, int, int]:
        """(total, used, reserved, free) as NVML reports them, bytes."""
        total = self.memory_total_mb * MIB + self.memory_total_extra_bytes
        used = self.memory_used_mb * MIB + self.memory_used_extra_bytes
        reserved = self.memory_reserved_mb * MIB
        return total, used, reserved, total - used - reserved

    def config_lines(self, index: int) -> list[str]:
        unsupported = list(self.unsupported)
        if self.mig_current is None and "mig" not in unsupported:
            unsupported.append("mig")
        values = {
            "name": self.name,
            "uuid": self.uuid,
            "pci_bus_id": self.pci_bus_id,
            "memory_total": self.memory_bytes[0],
            "memory_used": self.memory_bytes[1],
            "memory_reserved": self.memory_bytes[2],
            "memory_free": self.memory_bytes[3],
            "cc_major": self.compute_capability[0],
            "cc_minor": self.compute_capability[1],
            "mig_current": int(bool(self.mig_current)),
            "mig_pending": int(bool(self.mig_pending)),
            "power_limit_mw": round(self.power_limit_w * 1000),
            "power_draw_mw": round(self.power_draw_w * 1000),
            "temperature": self.temperature_c,
            "util_gpu": self.util_gpu_pct,
            "util_memory": self.util_memory_pct,
            "clock_sm": self.clock_sm_mhz,
            "clock_mem": self.clock_mem_mhz,
            "clock_event_reasons": self.clock_event_reasons,
            "ecc_corrected_volatile": self.ecc_corrected_volatile,
            "ecc_uncorrected_volatile": self.ecc_uncorrected_volatile,
            "ecc_corrected_aggregate": self.ecc_corrected_aggregate,
            "ecc_uncorrected_aggregate": self.ecc_uncorrected_aggregate,
            "retired_sbe": self.retired_pages_sbe,
            "retired_dbe": self.retired_pages_dbe,
            "retired_pending": int(self.retired_pages_pending),
            "remap_corr": self.remapped_rows_correctable,
            "remap_unc": self.remapped_rows_uncorrectable,
            "remap_pending": int(self.remapped_rows_pending),
            "remap_failure": int(self.remapped_rows_failure),
            "pcie_replay": self.pcie_replay,
            "nvlink": ",".join("1" if up else "0" for up in self.nvlinks),
            "compute_processes": self.compute_processes,
            "util_jitter": int(self.util_jitter),
            "unsupported": ",".join(unsupported),
        }
        if self.error:
            values["error"] = self.error
        values["recovery_action"] = self.recovery_action
        if self.hang:
            values["hang"] = self.hang
        lines = [f"gpu.{index}.{key}={value}" for key, value in values.items()]
        for m, mig in enumerate(self.mig_devices):
            lines += [
                f"gpu.{index}.mig.{m}.uuid={mig.uuid}",
                f"gpu.{index}.mig.{m}.name={mig.name}",
                f"gpu.{index}.mig.{m}.memory_total={mig.memory_mb * MIB}",
                f"gpu.{index}.mig.{m}.memory_used={mig.memory_used_mb * MIB}",
                f"gpu.{index}.mig.{m}.util_gpu={-1 if mig.util_gpu_pct is None else mig.util_gpu_pct}",
            ]
            if mig.gpu_instance_id:
                lines.append(f"gpu.{index}.mig.{m}.gi={mig.gpu_instance_id}")
        for k, proc in enumerate(self.processes):
            key = f"gpu.{index}.proc.{k}"
            lines += [
                f"{key}.pid={proc.pid}",
                f"{key}.kind={proc.kind}",
                f"{key}.used_memory={'na' if proc.used_memory_mb is None else proc.used_memory_mb * MIB}",
                f"{key}.sm={-1 if proc.sm_pct is None else proc.sm_pct}",
                f"{key}.mem={-1 if proc.mem_pct is None else proc.mem_pct}",
            ]
            if proc.gpu_instance_id is not None:
                lines.append(f"{key}.gi={proc.gpu_instance_id}")
        return lines


_GPU_FIELDS = {f.name for f in fields(FakeGpu)}


class FakeNvml:
    """The state one test gives the fake library, written to its config file.

    Every change rewrites the whole file atomically; a process already running
    on the fake picks it up on its next NVML call.
    """

    def __init__(self, lib_dir: Path, config_path: Path):
        self.lib_dir = Path(lib_dir)
        self.config_path = Path(config_path)
        self.gpus: list[FakeGpu] = []
        self.driver_version = "550.54.15"
        self.cuda_driver_version = 12040
        self.init_error: str | None = None
        self._events: list[tuple[int, int]] = []
        self._generation = 0
        self._write()

    @property
    def generation_path(self) -> Path:
        return self.config_path.with_name(self.config_path.name + ".gen")

    @property
    def env(self) -> dict[str, str]:
        """Variables to merge into a subprocess environment."""
        inherited = os.environ.get("LD_LIBRARY_PATH", "")
        path = str(self.lib_dir) + (os.pathsep + inherited if inherited else "")
        return {"LD_LIBRARY_PATH": path, "AIOS_FAKE_NVML_CONFIG": str(self.config_path)}

    def configure(
        self,
        gpus: list[FakeGpu] | tuple[FakeGpu, ...] = (),
        driver_version: str = "550.54.15",
        cuda_driver_version: int | str = 12040,
        init_error: str | None = None,
    ) -> FakeNvml:
        """Replace the whole state. cuda_driver_version: 12040 or "12.4"."""
        self.gpus = list(gpus)
        self.driver_version = driver_version
        self.cuda_driver_version = _cuda_version_number(cuda_driver_version)
        self.init_error = init_error
        self._events = []
        self._write()
        return self

    def set(self, index: int, **changes) -> None:
        unknown = set(changes) - _GPU_FIELDS
        if unknown:
            raise TypeError(f"FakeGpu has no field(s) {sorted(unknown)}")
        self.gpus[index] = replace(self.gpus[index], **changes)
        self._write()

    def lose_gpu(self, index: int) -> None:
        self.set(index, error="GPU_IS_LOST")

    def restore_gpu(self, index: int) -> None:
        self.set(index, error=None)

    def hang_call(self, index: int, function: str) -> None:
        """Make `function` (an NVML C name, e.g. "nvmlDeviceGetTemperature") block on GPU `index`."""
        self.set(index, hang=function)

    def release_hang(self, index: int) -> None:
        self.set(index, hang=None)

    def inject_xid(self, index: int, xid: int) -> None:
        self._events.append((index, xid))
        self._write()

    def _write(self) -> None:
        lines = [f"driver_version={self.driver_version}", f"cuda_driver_version={self.cuda_driver_version}"]
        if self.init_error:
            lines.append(f"init_error={self.init_error}")
        lines.append(f"gpu_count={len(self.gpus)}")
        for index, gpu in enumerate(self.gpus):
            lines += gpu.config_lines(index)
        lines += [f"event.{seq}={gpu},{xid}" for seq, (gpu, xid) in enumerate(self._events, start=1)]
        text = "\n".join(lines) + "\n"
        self.config_path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.config_path.parent, prefix=".fake-nvml-")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, self.config_path)
        # Then tell running processes: the fake maps this counter (see fake_nvml.c).
        self._generation += 1
        fd = os.open(self.generation_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            os.pwrite(fd, struct.pack("<Q", self._generation), 0)
        finally:
            os.close(fd)


def _cuda_version_number(value: int | str) -> int:
    if isinstance(value, int):
        return value
    major, _, minor = value.partition(".")
    return int(major) * 1000 + int(minor or 0) * 10

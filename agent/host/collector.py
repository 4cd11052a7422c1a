"""The host collector: CPU, memory, disks, network and processes of the node.

When the agent runs in a pod, the host's /proc and /sys are mounted under a
root (e.g. /host/proc, /host/sys; `AIOS_HOST_ROOT=/host`). Everything is read
under that root: psutil for memory (with `psutil.PROCFS_PATH` pointed at
root/proc for the call), the rest straight from the files, parsed by the pure
functions in `host_parse`.

A sample never walks the process table: thread and runnable counts come from
/proc/loadavg and /proc/stat, so a sample costs the same with 100 or 1,000
processes and a process exiting mid-read changes nothing. The process count
needs a listing of /proc (names only); it is refreshed every 30 s, not every
sample (see `_count_processes`).

Rates (CPU %, page faults, disk and network throughput) are deltas between two
samples; the first sample reports them as None ("not yet known"), never 0.

What counts as hardware (decided here, documented in `host_parse`):
- a disk is an entry at the top of root/sys/block (partitions live below
  their disk) that has a `device` link, is not named like loop/ram/zram/dm/md/
  nbd/sr/fd, and has a non-zero size (an empty card reader is not a disk);
- a NIC is an entry of root/sys/class/net that has a `device` link, is not a
  bridge, and is not named like loopback, veth, bridges, tunnels, bonds or CNI
  devices (cni0, flannel, cali, vxlan, docker0, virbr, ...). Network totals
  add up those NICs only, so container traffic is not counted twice.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psutil

from agent.host.parse import (
    SECTOR_BYTES,
    CpuTimes,
    DiskCounters,
    NetCounters,
    cpu_busy_percent,
    is_virtual_nic_name,
    is_whole_disk_name,
    parse_cpu_list,
    parse_diskstats,
    parse_key_value_counters,
    parse_link_speed,
    parse_loadavg,
    parse_net_dev,
    parse_os_release,
    parse_proc_stat,
    per_second,
)
from proto.common.ewma import NO_AVERAGES, Averages, ewma_update, ewma_weights
from proto.telemetry.v1.readings import DiskInfo, HostInventory, HostSample, NicInfo, NicRate

__all__ = ["PsutilHostCollector"]
_MB = 1024 * 1024
_VMSTAT_KEYS = frozenset({"pgfault"})
_SWAP_KEYS = frozenset({"SwapTotal", "SwapFree"})

# psutil reads its proc root from a module global; one lock keeps two
# collectors with different roots from seeing each other's.
_psutil_lock = threading.Lock()


@contextmanager
def _psutil_procfs(path: str) -> Iterator[None]:
    with _psutil_lock:
        previous = psutil.PROCFS_PATH
        psutil.PROCFS_PATH = path
        try:
            yield
        finally:
            psutil.PROCFS_PATH = previous


@dataclass(frozen=True)
class _Devices:
    disks: tuple[DiskInfo, ...]
    nics: tuple[NicInfo, ...]
    disk_names: frozenset[str]
    nic_names: frozenset[str]
    found_at: float


@dataclass(frozen=True)
class _Counters:
    at: float
    cpu: CpuTimes
    page_faults: int
    disks: dict[str, DiskCounters]
    nics: dict[str, NetCounters]


class PsutilHostCollector:
    """Reads the host under `root`; keeps the previous sample's counters for rates."""

    name = "host"

    def __init__(
        self,
        root: str = "/",
        clock: Callable[[], float] = time.monotonic,
        *,
        device_refresh_s: float = 60.0,
        process_count_every_s: float = 30.0,
    ):
        self.root = root
        self._proc = os.path.join(root, "proc")
        self._sys = os.path.join(root, "sys")
        self._clock = clock
        self._device_refresh_s = device_refresh_s
        self._devices: _Devices | None = None
        self._previous: _Counters | None = None
        self._net_dev_rel: str | None = None
        self._fds: dict[str, int] = {}
        self._process_count_every_s = process_count_every_s
        self._process_count: tuple[float, int] | None = None  # (when, count)
        # network rates over 1/5/15 minutes (proto/common/ewma.py), None until known
        self._tx_avg: Averages = NO_AVERAGES
        self._rx_avg: Averages = NO_AVERAGES

    # ------------------------------------------------------------ inventory

    def inventory(self) -> HostInventory:
        devices = self._scan_devices()
        stat = parse_proc_stat(self._read_proc("stat"))
        with _psutil_procfs(self._proc):
            memory = psutil.virtual_memory()
        swap_total_kb, _ = _swap_kb(self._read_proc("meminfo"))
        return HostInventory(
            hostname=self._hostname(),
            kernel=(self._read_optional(self._proc, "sys/kernel/osrelease") or "").strip(),
            os=self._os_name(),
            cpu_logical=stat.logical_cpus,
            cpu_physical=self._physical_cores() or stat.logical_cpus,
            memory_total_bytes=memory.total,
            swap_total_bytes=swap_total_kb * 1024,
            disks=devices.disks,
            nics=devices.nics,
        )

    def _hostname(self) -> str:
        name = (self._read_optional(self._proc, "sys/kernel/hostname") or "").strip()
        return name or socket.gethostname()

    def _os_name(self) -> str:
        for rel in ("etc/os-release", "usr/lib/os-release"):
            text = self._read_optional(self.root, rel)
            if text is not None:
                return parse_os_release(text)
        return ""

    def _physical_cores(self) -> int | None:
        """Distinct cores from sysfs topology (each core lists its sibling threads)."""
        cpu_dir = os.path.join(self._sys, "devices/system/cpu")
        cores: set[frozenset[int]] = set()
        try:
            names = os.listdir(cpu_dir)
        except OSError:
            names = []
        for name in names:
            if not (name.startswith("cpu") and name[3:].isdigit()):
                continue
            for leaf in ("topology/core_cpus_list", "topology/thread_siblings_list"):
                text = self._read_optional(cpu_dir, f"{name}/{leaf}")
                if text is not None:
                    cores.add(parse_cpu_list(text))
                    break
        if cores:
            return len(cores)
        return self._physical_cores_from_cpuinfo()

    def _physical_cores_from_cpuinfo(self) -> int | None:
        text = self._read_optional(self._proc, "cpuinfo")
        if text is None:
            return None
        pairs = set()
        physical = None
        for line in text.splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "physical id":
                physical = value.strip()
            elif key == "core id":
                pairs.add((physical, value.strip()))
        return len(pairs) or None

    def _scan_devices(self) -> _Devices:
        disks, nics = self._scan_disks(), self._scan_nics()
        self._devices = _Devices(
            disks=disks,
            nics=nics,
            disk_names=frozenset(d.name for d in disks),
            nic_names=frozenset(n.name for n in nics),
            found_at=self._clock(),
        )
        return self._devices

    def _current_devices(self) -> _Devices:
        devices = self._devices
        if devices is None or self._clock() - devices.found_at >= self._device_refresh_s:
            devices = self._scan_devices()
        return devices

    def _scan_disks(self) -> tuple[DiskInfo, ...]:
        block = os.path.join(self._sys, "block")
        disks = []
        for name in sorted(_listdir(block)):
            base = os.path.join(block, name)
            if not is_whole_disk_name(name) or os.path.exists(os.path.join(base, "partition")):
                continue
            if not os.path.exists(os.path.join(base, "device")):
                continue  # no hardware behind it
            size_text = self._read_optional(base, "size")
            if size_text is None:
                continue
            size_bytes = int(size_text.strip()) * SECTOR_BYTES
            if size_bytes < _MB:
                continue  # no medium (a card reader, an empty drive)
            rotational = (self._read_optional(base, "queue/rotational") or "").strip() == "1"
            model = (self._read_optional(base, "device/model") or "").strip()
            disks.append(DiskInfo(name=name, size_bytes=size_bytes, rotational=rotational, model=model))
        return tuple(disks)

    def _scan_nics(self) -> tuple[NicInfo, ...]:
        net = os.path.join(self._sys, "class/net")
        nics = []
        for name in sorted(_listdir(net)):
            base = os.path.join(net, name)
            if is_virtual_nic_name(name):
                continue
            if not os.path.exists(os.path.join(base, "device")) or os.path.exists(os.path.join(base, "bridge")):
                continue
            speed = parse_link_speed(self._read_optional(base, "speed"))
            mac = (self._read_optional(base, "address") or "").strip()
            nics.append(NicInfo(name=name, speed_mbps=speed, mac=mac))
        return tuple(nics)

    # --------------------------------------------------------------- sample

    def sample(self) -> HostSample:
        devices = self._current_devices()
        now = self._clock()
        stat = parse_proc_stat(self._read_proc("stat"))
        load = parse_loadavg(self._read_proc("loadavg"))
        page_faults = parse_key_value_counters(self._read_proc("vmstat"), _VMSTAT_KEYS, "/proc/vmstat")["pgfault"]
        disks = {n: c for n, c in parse_diskstats(self._read_proc("diskstats")).items() if n in devices.disk_names}
        nics = {n: c for n, c in parse_net_dev(self._read_net_dev()).items() if n in devices.nic_names}
        with _psutil_procfs(self._proc):
            memory = psutil.virtual_memory()
        # psutil.swap_memory() also rereads /proc/vmstat for swap-in/out we do
        # not report: reading the two meminfo lines ourselves halves the cost.
        swap = _swap_kb(self._read_proc("meminfo"))
        fs = psutil.disk_usage(self.root)

        current = _Counters(now, stat.cpu, page_faults, disks, nics)
        previous, self._previous = self._previous, current
        dt = now - previous.at if previous is not None else 0.0
        known = previous if previous is not None and dt > 0 else None

        nic_rates = self._nic_rates(known, current, dt)
        tx_rate, rx_rate = _sum_rates(nic_rates)
        if known is None:
            tx_rate = rx_rate = None
        weights = ewma_weights(dt)
        tx_avgs = self._tx_avg = ewma_update(self._tx_avg, tx_rate, dt, weights)
        rx_avgs = self._rx_avg = ewma_update(self._rx_avg, rx_rate, dt, weights)
        disk_rates = _disk_rates(known, current, dt)

        return HostSample(
            cpu_percent=cpu_busy_percent(known.cpu, stat.cpu) if known else None,
            load1=load.load1,
            load5=load.load5,
            load15=load.load15,
            memory_total_bytes=memory.total,
            memory_used_bytes=memory.used,
            memory_available_bytes=memory.available,
            swap_total_bytes=swap[0] * 1024,
            swap_used_bytes=swap[1] * 1024,
            page_faults_per_s=per_second(known.page_faults, page_faults, dt) if known else None,
            disk_read_bytes_per_s=disk_rates.read_bytes,
            disk_write_bytes_per_s=disk_rates.write_bytes,
            disk_read_iops=disk_rates.reads,
            disk_write_iops=disk_rates.writes,
            disk_busy_pct=disk_rates.busy_pct,
            fs_total_bytes=fs.total,
            fs_used_bytes=fs.used,
            nics=nic_rates,
            tx_bytes_total=sum(c.tx_bytes for c in nics.values()),
            rx_bytes_total=sum(c.rx_bytes for c in nics.values()),
            tx_bytes_per_s=tx_rate,
            rx_bytes_per_s=rx_rate,
            tx_bytes_per_s_1m=tx_avgs[0],
            tx_bytes_per_s_5m=tx_avgs[1],
            tx_bytes_per_s_15m=tx_avgs[2],
            rx_bytes_per_s_1m=rx_avgs[0],
            rx_bytes_per_s_5m=rx_avgs[1],
            rx_bytes_per_s_15m=rx_avgs[2],
            processes_total=self._count_processes(now),
            processes_running=stat.procs_running,
            threads_total=load.total_entities,
        )

    @staticmethod
    def _nic_rates(previous: _Counters | None, current: _Counters, dt: float) -> tuple[NicRate, ...]:
        rates = []
        for name in sorted(current.nics):
            now = current.nics[name]
            before = previous.nics.get(name) if previous is not None else None
            rates.append(
                NicRate(
                    name=name,
                    tx_bytes_total=now.tx_bytes,
                    rx_bytes_total=now.rx_bytes,
                    tx_bytes_per_s=per_second(before.tx_bytes, now.tx_bytes, dt) if before else None,
                    rx_bytes_per_s=per_second(before.rx_bytes, now.rx_bytes, dt) if before else None,
                )
            )
        return tuple(rates)

    def _count_processes(self, now: float) -> int:
        """Processes = numeric names in /proc, listed at most every `process_count_every_s`.

        No kernel counter holds the number of processes (loadavg counts
        threads), and listing /proc costs ~0.7 us per process in the kernel
        (740 us at 1,000 processes on the reference VM), so the count is
        refreshed on a slower cadence than the sample. Names only: no
        per-process file is opened, so a process exiting cannot break it.
        """
        cached = self._process_count
        if cached is None or now - cached[0] >= self._process_count_every_s:
            cached = (now, sum(map(str.isdigit, os.listdir(self._proc))))
            self._process_count = cached
        return cached[1]

    # ------------------------------------------------------------- reading

    def _read_net_dev(self) -> str:
        # Under a mounted host /proc, proc/net is the reader's own network
        # namespace; pid 1's is the host's. Remember which one answered.
        if self._net_dev_rel is None:
            for rel in ("1/net/dev", "net/dev"):
                try:
                    text = self._read_proc(rel)
                except OSError:
                    continue
                self._net_dev_rel = rel
                return text
            self._net_dev_rel = "net/dev"
        return self._read_proc(self._net_dev_rel)

    def _read_proc(self, rel: str) -> str:
        """Read a /proc file through a descriptor kept open between samples.

        Opening costs more than reading on small kernel files; a pread at
        offset 0 regenerates their content each time.
        """
        fd = self._fds.get(rel)
        if fd is None:
            fd = os.open(os.path.join(self._proc, rel), os.O_RDONLY | os.O_CLOEXEC)
            self._fds[rel] = fd
        try:
            return _pread_all(fd)
        except OSError:
            self._fds.pop(rel, None)
            os.close(fd)
            raise

    def close(self) -> None:
        fds, self._fds = self._fds, {}
        for fd in fds.values():
            try:
                os.close(fd)
            except OSError:
                pass

    @staticmethod
    def _read_optional(base: str, rel: str) -> str | None:
        try:
            return _read(os.path.join(base, rel))
        except OSError:  # absent, or EINVAL (e.g. the speed of a link that is down)
            return None


@dataclass(frozen=True)
class _DiskRates:
    read_bytes: float | None = None
    write_bytes: float | None = None
    reads: float | None = None
    writes: float | None = None
    busy_pct: float | None = None


def _disk_rates(previous: _Counters | None, current: _Counters, dt: float) -> _DiskRates:
    if previous is None:
        return _DiskRates()
    common = [n for n in current.disks if n in previous.disks]
    totals = {"read_bytes": 0.0, "write_bytes": 0.0, "reads": 0.0, "writes": 0.0}
    busiest = 0.0
    for name in common:
        before, now = previous.disks[name], current.disks[name]
        rates = (
            per_second(before.read_sectors * SECTOR_BYTES, now.read_sectors * SECTOR_BYTES, dt),
            per_second(before.write_sectors * SECTOR_BYTES, now.write_sectors * SECTOR_BYTES, dt),
            per_second(before.reads, now.reads, dt),
            per_second(before.writes, now.writes, dt),
            per_second(before.io_ms, now.io_ms, dt),
        )
        known = [r for r in rates if r is not None]
        if len(known) != len(rates):
            return _DiskRates()  # a counter reset: this interval is unknown
        for key, rate in zip(totals, known):
            totals[key] += rate
        # io_ms per second of wall time, as a share of 1000 ms: the busiest disk
        # is what saturates first, so that is the node's figure.
        busiest = max(busiest, min(100.0, known[4] / 10.0))
    return _DiskRates(busy_pct=busiest, **totals)


def _sum_rates(rates: tuple[NicRate, ...]) -> tuple[float | None, float | None]:
    tx = [r.tx_bytes_per_s for r in rates if r.tx_bytes_per_s is not None]
    rx = [r.rx_bytes_per_s for r in rates if r.rx_bytes_per_s is not None]
    if len(tx) != len(rates) or len(rx) != len(rates):  # one NIC's rate unknown: the node's is too
        return None, None
    return float(sum(tx)), float(sum(rx))


def _swap_kb(meminfo: str) -> tuple[int, int]:
    """(total, used) swap in kB, as psutil computes them (used = total - free)."""
    kb = parse_key_value_counters(meminfo, _SWAP_KEYS, "/proc/meminfo")
    return kb["SwapTotal"], kb["SwapTotal"] - kb["SwapFree"]


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _pread_all(fd: int) -> str:
    chunks = []
    offset = 0
    while True:
        chunk = os.pread(fd, 65536, offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks).decode("ascii", "replace")


def _read(path: str) -> str:
    with open(path, encoding="ascii", errors="replace") as f:
        return f.read()

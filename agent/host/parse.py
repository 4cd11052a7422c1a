"""Pure parsers and rules for the host's /proc and /sys files.

Reading a file is the collector's job (`host.py`); turning its text into
numbers, and deciding which block devices and network interfaces count as
hardware, happens here so it can be tested on literal text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "SECTOR_BYTES",
    "CpuTimes",
    "DiskCounters",
    "HostParseError",
    "LoadAvg",
    "NetCounters",
    "ProcStat",
    "cpu_busy_percent",
    "is_virtual_nic_name",
    "is_whole_disk_name",
    "parse_cpu_list",
    "parse_diskstats",
    "parse_key_value_counters",
    "parse_link_speed",
    "parse_loadavg",
    "parse_net_dev",
    "parse_os_release",
    "parse_proc_stat",
    "per_second",
]

# /proc/diskstats counts 512-byte sectors whatever the device's real sector size.
SECTOR_BYTES = 512


class HostParseError(ValueError):
    """A /proc or /sys file did not have the shape the kernel documents."""


@dataclass(frozen=True)
class LoadAvg:
    load1: float
    load5: float
    load15: float
    runnable_entities: int
    total_entities: int  # kernel scheduling entities = threads on the host


@dataclass(frozen=True)
class CpuTimes:
    """Aggregate jiffies from the `cpu` line of /proc/stat."""

    busy: int
    total: int


@dataclass(frozen=True)
class ProcStat:
    cpu: CpuTimes
    logical_cpus: int  # the `cpuN` lines: CPUs online now
    procs_running: int | None
    procs_blocked: int | None


@dataclass(frozen=True)
class DiskCounters:
    reads: int
    read_sectors: int
    writes: int
    write_sectors: int
    io_ms: int  # time the device had I/O in flight


@dataclass(frozen=True)
class NetCounters:
    rx_bytes: int
    tx_bytes: int


def parse_loadavg(text: str) -> LoadAvg:
    """`0.49 0.24 0.10 1/94 7462` -> loads and runnable/total threads."""
    fields = text.split()
    try:
        runnable, total = fields[3].split("/")
        return LoadAvg(float(fields[0]), float(fields[1]), float(fields[2]), int(runnable), int(total))
    except (IndexError, ValueError) as e:
        raise HostParseError(f"/proc/loadavg: unexpected content {text.strip()!r}") from e


def parse_proc_stat(text: str) -> ProcStat:
    cpu: CpuTimes | None = None
    logical = 0
    running = blocked = None
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.startswith("cpu"):
            name, _, rest = line.partition(" ")
            if name == "cpu":
                cpu = _cpu_times(rest, lineno)
            elif name[3:].isdigit():
                logical += 1
        elif line.startswith("procs_running "):
            running = _int_field(line, "/proc/stat", lineno)
        elif line.startswith("procs_blocked "):
            blocked = _int_field(line, "/proc/stat", lineno)
    if cpu is None:
        raise HostParseError("/proc/stat: no aggregate 'cpu' line")
    return ProcStat(cpu, logical, running, blocked)


def _cpu_times(rest: str, lineno: int) -> CpuTimes:
    try:
        values = [int(v) for v in rest.split()]
    except ValueError as e:
        raise HostParseError(f"/proc/stat line {lineno}: non-numeric cpu times") from e
    if len(values) < 4:
        raise HostParseError(f"/proc/stat line {lineno}: {len(values)} cpu fields, need at least 4")
    # user nice system idle iowait irq softirq steal [guest guest_nice];
    # guest time is already inside user/nice, so it is left out of the total.
    core = values[:8]
    idle = core[3] + (core[4] if len(core) > 4 else 0)
    total = sum(core)
    return CpuTimes(busy=total - idle, total=total)


def _int_field(line: str, where: str, lineno: int) -> int:
    try:
        return int(line.split()[1])
    except (IndexError, ValueError) as e:
        raise HostParseError(f"{where} line {lineno}: expected '<key> <integer>', got {line!r}") from e


def parse_key_value_counters(text: str, keys: frozenset[str] | set[str], where: str) -> dict[str, int]:
    """Integer values of the wanted keys from `key value` lines (/proc/vmstat,
    /proc/meminfo with its `key: value kB` form); every wanted key must be there.

    A regex per key instead of a loop over ~200 lines: this runs every sample.
    """
    found: dict[str, int] = {}
    for key in keys:
        match = re.search(rf"^{re.escape(key)}:?[ \t]+(\S+)", text, re.MULTILINE)
        if match is None:
            raise HostParseError(f"{where}: missing {key}")
        try:
            found[key] = int(match.group(1))
        except ValueError as e:
            line = text.count("\n", 0, match.start()) + 1
            raise HostParseError(f"{where} line {line}: {key} is not an integer: {match.group(1)!r}") from e
    return found


def parse_diskstats(text: str) -> dict[str, DiskCounters]:
    """Per-device counters; field positions from the kernel's iostats documentation."""
    disks: dict[str, DiskCounters] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        f = line.split()
        if not f:
            continue
        if len(f) < 14:
            raise HostParseError(f"/proc/diskstats line {lineno}: {len(f)} fields, need at least 14")
        try:
            disks[f[2]] = DiskCounters(
                reads=int(f[3]), read_sectors=int(f[5]), writes=int(f[7]), write_sectors=int(f[9]), io_ms=int(f[12])
            )
        except ValueError as e:
            raise HostParseError(f"/proc/diskstats line {lineno}: non-numeric counter") from e
    return disks


def parse_net_dev(text: str) -> dict[str, NetCounters]:
    nics: dict[str, NetCounters] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        name, sep, rest = line.partition(":")
        if not sep or "|" in line:  # the two header lines
            continue
        f = rest.split()
        if len(f) < 16:
            raise HostParseError(f"/proc/net/dev line {lineno}: {len(f)} counters, need 16")
        try:
            nics[name.strip()] = NetCounters(rx_bytes=int(f[0]), tx_bytes=int(f[8]))
        except ValueError as e:
            raise HostParseError(f"/proc/net/dev line {lineno}: non-numeric counter") from e
    return nics


def parse_os_release(text: str) -> str:
    """PRETTY_NAME, else NAME VERSION, from an os-release file; "" when neither."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key and not key.startswith("#"):
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                value = value[1:-1]
            values[key] = value
    if values.get("PRETTY_NAME"):
        return values["PRETTY_NAME"]
    return " ".join(v for v in (values.get("NAME", ""), values.get("VERSION", "")) if v)


def parse_link_speed(text: str | None) -> int | None:
    """/sys/class/net/X/speed: Mbps; -1 (or unreadable, i.e. None) means the kernel does not know."""
    if text is None:
        return None
    try:
        speed = int(text.strip())
    except ValueError:
        return None
    return speed if speed > 0 else None


def parse_cpu_list(text: str) -> frozenset[int]:
    """A kernel CPU list such as `0-3,8,10-11`."""
    cpus: set[int] = set()
    for part in text.strip().split(","):
        if not part:
            continue
        first, _, last = part.partition("-")
        try:
            cpus.update(range(int(first), int(last or first) + 1))
        except ValueError as e:
            raise HostParseError(f"bad CPU list {text.strip()!r}") from e
    return frozenset(cpus)


# Block devices that are not physical disks, by kernel name. Partitions never
# appear at the top of /sys/block; the collector also requires a `device` link
# (hardware behind it), which loop, ram, zram, dm and md devices lack anyway.
_VIRTUAL_DISK = re.compile(r"^(loop|ram|zram|dm-|md|nbd|sr|fd|rbd|drbd)\d")


def is_whole_disk_name(name: str) -> bool:
    return not _VIRTUAL_DISK.match(name)


# Interfaces made by software (container networking, overlays, VPNs, bridges),
# by name. The collector also requires a `device` link and no `bridge` dir.
_VIRTUAL_NIC = re.compile(
    r"^(lo$|veth|docker|br-|virbr|cni|flannel|cali|vxlan|tunl|tun|tap|weave|kube-|cilium|lxc|"
    r"genev|gre|ip6|sit|wg|ifb|dummy|bond|team|nodelocaldns|tailscale|zt|vnet)"
)


def is_virtual_nic_name(name: str) -> bool:
    return bool(_VIRTUAL_NIC.match(name))


def cpu_busy_percent(previous: CpuTimes, current: CpuTimes) -> float | None:
    elapsed = current.total - previous.total
    if elapsed <= 0:
        return None
    busy = current.busy - previous.busy
    return min(100.0, max(0.0, 100.0 * busy / elapsed))


def per_second(previous: int, current: int, seconds: float) -> float | None:
    """Rate of a monotonic counter; None when time did not advance or it wrapped/reset."""
    if seconds <= 0 or current < previous:
        return None
    return (current - previous) / seconds


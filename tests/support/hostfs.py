"""A fixture host: the /proc and /sys files the host collector reads, written into a dir.

The node has 8 logical CPUs on 4 cores, 256 GiB of memory, 8 GiB of swap, two
NVMe disks with partitions beside loop devices, two physical NICs (25 and 100
Gb/s) beside lo, a veth and a bridge. `Counters` are the moving numbers; call
`write_counters` again with new ones to move time forward.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

MB_SECTORS = 2048  # 512-byte sectors per MB

NVME0_MB = 1_831_420
NVME1_MB = 3_662_840
LOOP_MB = 100

# kB values; psutil >= 6 reports used = total - available
MEMINFO_KB = {
    "MemTotal": 268_435_456,
    "MemFree": 67_108_864,
    "MemAvailable": 201_326_592,
    "Buffers": 1_048_576,
    "Cached": 33_554_432,
    "SwapCached": 0,
    "Active": 50_331_648,
    "Inactive": 25_165_824,
    "Shmem": 524_288,
    "Slab": 2_097_152,
    "SReclaimable": 1_048_576,
    "SUnreclaim": 1_048_576,
    "SwapTotal": 8_388_608,
    "SwapFree": 6_291_456,
}


@dataclass
class DiskCount:
    reads: int = 0
    read_sectors: int = 0
    writes: int = 0
    write_sectors: int = 0
    io_ms: int = 0

    def line(self, major: int, minor: int, name: str) -> str:
        # major minor name reads merged sectors ms writes merged sectors ms inflight io_ms weighted (+discard/flush)
        return (
            f"{major:4d} {minor:7d} {name} {self.reads} 0 {self.read_sectors} 10 {self.writes} 0 "
            f"{self.write_sectors} 20 0 {self.io_ms} 30 0 0 0 0 0 0"
        )


@dataclass
class Counters:
    cpu_user: int = 1000
    cpu_system: int = 500
    cpu_idle: int = 8000
    cpu_iowait: int = 500
    page_faults: int = 100_000
    disks: dict[str, DiskCount] = field(default_factory=dict)
    net: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (rx_bytes, tx_bytes)
    procs_running: int = 3
    threads: int = 412


def write_host_tree(root: Path, counters: Counters, *, processes: int = 5) -> Path:
    """Write the static files once, then the counters; returns root."""
    proc, sys = root / "proc", root / "sys"
    _write(
        root / "etc/os-release",
        'NAME="Ubuntu"\nVERSION="22.04.4 LTS (Jammy Jellyfish)"\nPRETTY_NAME="Ubuntu 22.04.4 LTS"\nID=ubuntu\n',
    )
    _write(proc / "sys/kernel/hostname", "gpu-node-7\n")
    _write(proc / "sys/kernel/osrelease", "6.1.0-18-amd64\n")
    _write(proc / "meminfo", "".join(f"{k + ':':<16}{v:>10} kB\n" for k, v in MEMINFO_KB.items()))
    for pid in range(1, processes + 1):
        (proc / str(pid * 100)).mkdir(parents=True, exist_ok=True)
    (proc / "self").mkdir(exist_ok=True)  # non-numeric entries are not processes
    (proc / "sys").mkdir(exist_ok=True)

    for cpu in range(8):  # threads cpuN and cpuN+4 share a core
        _write(sys / f"devices/system/cpu/cpu{cpu}/topology/core_cpus_list", f"{cpu % 4},{cpu % 4 + 4}\n")

    _disk(sys, "nvme0n1", NVME0_MB, model="SAMSUNG MZQL21T9HCJR-00A07", partitions=("nvme0n1p1", "nvme0n1p2"))
    _disk(sys, "nvme1n1", NVME1_MB, model="INTEL SSDPF2KX038TZ", partitions=("nvme1n1p1",))
    for loop in ("loop0", "loop1"):  # no device link, as the kernel makes them
        _write(sys / f"block/{loop}/size", f"{LOOP_MB * MB_SECTORS}\n")
        _write(sys / f"block/{loop}/queue/rotational", "0\n")

    _nic(sys, "ens1f0", speed="25000", mac="b8:ce:f6:00:00:01", device=True)
    _nic(sys, "ens2f0", speed="100000", mac="b8:ce:f6:00:00:02", device=True)
    _nic(sys, "lo", speed=None, mac="00:00:00:00:00:00", device=False)
    _nic(sys, "veth3f2a1b0", speed="10000", mac="7e:1a:00:00:00:03", device=False)
    _nic(sys, "br0", speed=None, mac="7e:1a:00:00:00:04", device=False)
    (sys / "class/net/br0/bridge").mkdir(exist_ok=True)

    write_counters(root, counters)
    return root


def write_counters(root: Path, c: Counters) -> None:
    proc = root / "proc"
    cpu = f"cpu  {c.cpu_user} 0 {c.cpu_system} {c.cpu_idle} {c.cpu_iowait} 0 0 0 0 0\n"
    per_cpu = "".join(f"cpu{i} 1 0 1 1 0 0 0 0 0 0\n" for i in range(8))
    _write(
        proc / "stat",
        cpu + per_cpu + "intr 0\nctxt 1234\nbtime 1700000000\nprocesses 99999\n"
        f"procs_running {c.procs_running}\nprocs_blocked 0\nsoftirq 0 0\n",
    )
    _write(proc / "loadavg", f"1.50 0.75 0.25 {c.procs_running}/{c.threads} 12345\n")
    _write(proc / "vmstat", f"nr_free_pages 100\npgpgin 5\npgfault {c.page_faults}\npgmajfault 12\npswpin 0\npswpout 0\n")
    majors = {"nvme0n1": (259, 0), "nvme0n1p1": (259, 1), "nvme0n1p2": (259, 2), "nvme1n1": (259, 3),
              "nvme1n1p1": (259, 4), "loop0": (7, 0), "loop1": (7, 1)}
    lines = [c.disks.get(name, DiskCount()).line(*majors[name], name) for name in majors]
    _write(proc / "diskstats", "\n".join(lines) + "\n")
    header = (
        "Inter-|   Receive                                                |  Transmit\n"
        " face |bytes    packets errs drop fifo frame compressed multicast"
        "|bytes    packets errs drop fifo colls carrier compressed\n"
    )
    rows = "".join(
        f"{name:>6}: {rx} 10 0 0 0 0 0 0 {tx} 20 0 0 0 0 0 0\n" for name, (rx, tx) in c.net.items()
    )
    _write(proc / "net/dev", header + rows)


def _disk(sys: Path, name: str, size_mb: int, *, model: str, partitions: tuple[str, ...]) -> None:
    base = sys / "block" / name
    _write(base / "size", f"{size_mb * MB_SECTORS}\n")
    _write(base / "queue/rotational", "0\n")
    _write(base / "device/model", f"{model}   \n")
    for part in partitions:
        _write(base / part / "partition", "1\n")
        _write(base / part / "size", f"{size_mb * MB_SECTORS // 2}\n")


def _nic(sys: Path, name: str, *, speed: str | None, mac: str, device: bool) -> None:
    base = sys / "class/net" / name
    base.mkdir(parents=True, exist_ok=True)
    _write(base / "address", mac + "\n")
    if speed is not None:
        _write(base / "speed", speed + "\n")
    if device:
        (base / "device").mkdir(exist_ok=True)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)

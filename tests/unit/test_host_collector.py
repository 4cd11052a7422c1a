"""The host collector on a fixture /proc and /sys tree, and on this machine."""

from __future__ import annotations

import math
import os
import shutil

import psutil
import pytest

from agent.host.collector import PsutilHostCollector
from proto.telemetry.v1.readings import MIB, DiskInfo, NicInfo
from tests.support.hostfs import NVME0_MB, NVME1_MB, Counters, DiskCount, write_counters, write_host_tree

MB = 1024 * 1024


class FakeClock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def _first_counters() -> Counters:
    return Counters(
        disks={
            "nvme0n1": DiskCount(reads=1000, read_sectors=80_000, writes=500, write_sectors=40_000, io_ms=1000),
            "nvme1n1": DiskCount(reads=2000, read_sectors=90_000, writes=700, write_sectors=50_000, io_ms=3000),
            "nvme0n1p1": DiskCount(reads=900, read_sectors=70_000, writes=400, write_sectors=30_000, io_ms=900),
            "loop0": DiskCount(reads=5, read_sectors=50, io_ms=1),
        },
        net={
            "lo": (9_000_000, 9_000_000),
            "ens1f0": (1_000_000, 2_000_000),
            "ens2f0": (3_000_000, 4_000_000),
            "veth3f2a1b0": (100, 200),
            "br0": (300, 400),
        },
    )


def _second_counters() -> Counters:
    """Two seconds after `_first_counters` (see the expected rates in the tests)."""
    return Counters(
        cpu_user=1300,
        cpu_system=600,
        cpu_idle=8500,
        cpu_iowait=600,
        page_faults=110_000,
        procs_running=5,
        threads=420,
        disks={
            # +400 reads, +4096 sectors, +200 writes, +8192 sectors, +500 ms busy
            "nvme0n1": DiskCount(reads=1400, read_sectors=84_096, writes=700, write_sectors=48_192, io_ms=1500),
            # +200 reads, +2048 sectors, no writes, +1800 ms busy
            "nvme1n1": DiskCount(reads=2200, read_sectors=92_048, writes=700, write_sectors=50_000, io_ms=4800),
            # partitions and loop devices move a lot and must not count
            "nvme0n1p1": DiskCount(reads=90_000, read_sectors=7_000_000, writes=40_000, write_sectors=3_000_000, io_ms=1900),
            "loop0": DiskCount(reads=50_000, read_sectors=5_000_000, io_ms=2000),
        },
        net={
            "lo": (99_000_000, 99_000_000),
            "ens1f0": (6_000_000, 3_000_000),  # rx +5 MB, tx +1 MB
            "ens2f0": (5_000_000, 8_000_000),  # rx +2 MB, tx +4 MB
            "veth3f2a1b0": (50_000_100, 50_000_200),
            "br0": (70_000_300, 70_000_400),
        },
    )


@pytest.fixture
def host_tree(tmp_path):
    return write_host_tree(tmp_path / "host", _first_counters())


@pytest.fixture
def collector(host_tree):
    clock = FakeClock()
    c = PsutilHostCollector(root=str(host_tree), clock=clock)
    c.fake_clock = clock
    yield c
    c.close()


def test_inventory_counts_whole_disks_and_physical_nics_only(collector):
    inv = collector.inventory()

    assert inv.hostname == "gpu-node-7"
    assert inv.kernel == "6.1.0-18-amd64"
    assert inv.os == "Ubuntu 22.04.4 LTS"
    assert (inv.cpu_logical, inv.cpu_physical) == (8, 4)
    assert inv.memory_total_mb == 262_144
    assert inv.swap_total_mb == 8192
    assert inv.disks == (
        DiskInfo(name="nvme0n1", size_bytes=NVME0_MB * MIB, rotational=False, model="SAMSUNG MZQL21T9HCJR-00A07"),
        DiskInfo(name="nvme1n1", size_bytes=NVME1_MB * MIB, rotational=False, model="INTEL SSDPF2KX038TZ"),
    )
    assert inv.disk_total_mb == 5_494_260
    assert inv.nics == (
        NicInfo(name="ens1f0", speed_mbps=25_000, mac="b8:ce:f6:00:00:01"),
        NicInfo(name="ens2f0", speed_mbps=100_000, mac="b8:ce:f6:00:00:02"),
    )


def test_nic_with_unknown_speed_and_down_link_report_none(host_tree, tmp_path):
    (host_tree / "sys/class/net/ens1f0/speed").write_text("-1\n")
    (host_tree / "sys/class/net/ens2f0/speed").unlink()  # reading it fails while the link is down
    c = PsutilHostCollector(root=str(host_tree), clock=FakeClock())
    assert [(n.name, n.speed_mbps) for n in c.inventory().nics] == [("ens1f0", None), ("ens2f0", None)]


def test_first_sample_has_levels_but_rates_not_yet_known(collector):
    s = collector.sample()

    assert (s.load1, s.load5, s.load15) == (1.5, 0.75, 0.25)
    assert (s.processes_running, s.threads_total, s.processes_total) == (3, 412, 5)
    assert (s.memory_total_mb, s.memory_available_mb) == (262_144, 196_608)
    assert s.memory_used_mb == 65_536  # psutil: total - available
    assert (s.swap_total_mb, s.swap_used_mb) == (8192, 2048)
    assert (s.tx_bytes_total, s.rx_bytes_total) == (6_000_000, 4_000_000)
    assert [(n.name, n.rx_bytes_total, n.tx_bytes_total) for n in s.nics] == [
        ("ens1f0", 1_000_000, 2_000_000),
        ("ens2f0", 3_000_000, 4_000_000),
    ]
    rates = [
        s.cpu_percent, s.page_faults_per_s, s.disk_read_bytes_per_s, s.disk_write_bytes_per_s,
        s.disk_read_iops, s.disk_write_iops, s.disk_busy_pct, s.tx_bytes_per_s, s.rx_bytes_per_s,
        s.tx_bytes_per_s_1m, s.tx_bytes_per_s_5m, s.tx_bytes_per_s_15m,
        s.rx_bytes_per_s_1m, s.rx_bytes_per_s_5m, s.rx_bytes_per_s_15m,
    ] + [n.tx_bytes_per_s for n in s.nics] + [n.rx_bytes_per_s for n in s.nics]
    assert rates == [None] * len(rates)


def test_rates_from_two_snapshots(collector, host_tree):
    collector.sample()
    write_counters(host_tree, _second_counters())
    collector.fake_clock.now += 2.0
    s = collector.sample()

    assert s.cpu_percent == 40.0  # busy +400 of +1000 jiffies
    assert s.page_faults_per_s == 5000.0
    assert s.disk_read_iops == 300.0
    assert s.disk_write_iops == 100.0
    assert s.disk_read_bytes_per_s == (4096 + 2048) * 512 / 2
    assert s.disk_write_bytes_per_s == 8192 * 512 / 2
    assert s.disk_busy_pct == 90.0  # nvme1n1: 1800 ms busy in 2 s; the busiest disk
    assert [(n.name, n.rx_bytes_per_s, n.tx_bytes_per_s) for n in s.nics] == [
        ("ens1f0", 2_500_000.0, 500_000.0),
        ("ens2f0", 1_000_000.0, 2_000_000.0),
    ]
    assert (s.rx_bytes_per_s, s.tx_bytes_per_s) == (3_500_000.0, 2_500_000.0)
    assert (s.rx_bytes_total, s.tx_bytes_total) == (11_000_000, 11_000_000)
    # the first known rate starts every average
    assert (s.rx_bytes_per_s_1m, s.rx_bytes_per_s_5m, s.rx_bytes_per_s_15m) == (3_500_000.0,) * 3
    assert (s.tx_bytes_per_s_1m, s.tx_bytes_per_s_5m, s.tx_bytes_per_s_15m) == (2_500_000.0,) * 3
    assert (s.processes_running, s.threads_total) == (5, 420)


def test_network_averages_decay_over_their_windows(collector, host_tree):
    collector.sample()
    second = _second_counters()
    write_counters(host_tree, second)
    collector.fake_clock.now += 2.0
    collector.sample()  # rx 3.5 MB/s starts the averages

    # 60 s with no traffic at all: rate 0
    collector.fake_clock.now += 60.0
    s = collector.sample()
    assert s.rx_bytes_per_s == 0.0
    assert s.rx_bytes_per_s_1m == pytest.approx(3_500_000.0 * math.exp(-1.0))
    assert s.rx_bytes_per_s_5m == pytest.approx(3_500_000.0 * math.exp(-60.0 / 300.0))
    assert s.rx_bytes_per_s_15m == pytest.approx(3_500_000.0 * math.exp(-60.0 / 900.0))
    assert s.tx_bytes_per_s_1m == pytest.approx(2_500_000.0 * math.exp(-1.0))


def test_counter_reset_gives_unknown_rate_not_negative(collector, host_tree):
    collector.sample()
    reset = _first_counters()
    reset.net["ens1f0"] = (10, 10)  # driver reloaded: counters start over
    reset.page_faults = 5
    write_counters(host_tree, reset)
    collector.fake_clock.now += 1.0
    s = collector.sample()
    assert s.page_faults_per_s is None
    assert [(n.name, n.rx_bytes_per_s) for n in s.nics] == [("ens1f0", None), ("ens2f0", 0.0)]
    assert s.rx_bytes_per_s is None


def test_process_count_is_refreshed_on_its_own_cadence(host_tree):
    clock = FakeClock()
    c = PsutilHostCollector(root=str(host_tree), clock=clock, process_count_every_s=30.0)
    assert c.sample().processes_total == 5
    (host_tree / "proc/4242").mkdir()
    clock.now += 10.0
    assert c.sample().processes_total == 5  # listed 10 s ago
    clock.now += 20.0
    assert c.sample().processes_total == 6
    c.close()


def test_malformed_proc_file_names_the_file(collector, host_tree):
    (host_tree / "proc/loadavg").write_text("garbage\n")
    with pytest.raises(ValueError, match="/proc/loadavg"):
        collector.sample()


def test_real_machine_sane_values():
    c = PsutilHostCollector()
    try:
        inv = c.inventory()
        first = c.sample()
        second = c.sample()
    finally:
        c.close()
    assert inv.cpu_logical == psutil.cpu_count(logical=True)
    assert inv.cpu_physical == psutil.cpu_count(logical=False)
    assert inv.memory_total_mb == psutil.virtual_memory().total // MB
    assert inv.hostname == os.uname().nodename
    assert inv.kernel == os.uname().release
    assert all(d.size_mb > 0 and not d.name.startswith(("loop", "zram", "ram")) for d in inv.disks)
    assert "lo" not in [n.name for n in inv.nics]
    assert first.cpu_percent is None and first.page_faults_per_s is None
    assert second.page_faults_per_s is not None and second.page_faults_per_s >= 0
    assert second.fs_total_mb == shutil.disk_usage("/").total // MB
    assert 0 < second.memory_used_mb < second.memory_total_mb
    assert second.threads_total >= second.processes_total >= 1
    assert 0 <= (second.disk_busy_pct or 0.0) <= 100


def test_memory_and_swap_are_kept_in_bytes_not_rounded_to_mib(host_tree):
    # a board with 1,234 kB beyond a whole MiB of memory and 3 kB of swap beyond one
    meminfo = (host_tree / "proc" / "meminfo").read_text()
    meminfo = meminfo.replace(f"{268_435_456:>10} kB", f"{268_435_456 + 1_234:>10} kB", 1)
    meminfo = meminfo.replace(f"{8_388_608:>10} kB", f"{8_388_608 + 3:>10} kB", 1)
    (host_tree / "proc" / "meminfo").write_text(meminfo)
    c = PsutilHostCollector(root=str(host_tree), clock=FakeClock())
    try:
        inv, s = c.inventory(), c.sample()
    finally:
        c.close()
    assert inv.memory_total_bytes == s.memory_total_bytes == (268_435_456 + 1_234) * 1024
    assert inv.swap_total_bytes == s.swap_total_bytes == (8_388_608 + 3) * 1024
    assert s.memory_available_bytes == 201_326_592 * 1024
    assert (inv.memory_total_mb, inv.swap_total_mb) == (262_145, 8192)  # MB where a format wants MB: rounded down

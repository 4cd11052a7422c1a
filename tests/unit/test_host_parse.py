"""The pure /proc and /sys parsers on literal text."""

import pytest

from agent.host.parse import (
    CpuTimes,
    HostParseError,
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


def test_loadavg_gives_loads_and_thread_count():
    load = parse_loadavg("0.49 0.24 0.10 1/94 7462\n")
    assert (load.load1, load.load5, load.load15, load.runnable_entities, load.total_entities) == (0.49, 0.24, 0.10, 1, 94)


def test_proc_stat_busy_excludes_idle_iowait_and_guest():
    stat = parse_proc_stat(
        "cpu  100 5 50 1000 20 3 2 1 40 0\ncpu0 1 0 0 0 0 0 0 0 0 0\ncpu1 1 0 0 0 0 0 0 0 0 0\n"
        "procs_running 4\nprocs_blocked 1\n"
    )
    assert stat.cpu == CpuTimes(busy=100 + 5 + 50 + 3 + 2 + 1, total=1181)
    assert (stat.logical_cpus, stat.procs_running, stat.procs_blocked) == (2, 4, 1)


def test_proc_stat_without_cpu_line_is_an_error():
    with pytest.raises(HostParseError, match="/proc/stat"):
        parse_proc_stat("procs_running 1\n")


def test_key_value_counters_name_a_missing_key_and_a_bad_line():
    assert parse_key_value_counters("pgpgin 1\npgfault 77\n", {"pgfault"}, "/proc/vmstat") == {"pgfault": 77}
    assert parse_key_value_counters("SwapTotal:  8 kB\nSwapFree: 2 kB\n", {"SwapTotal", "SwapFree"}, "m") == {
        "SwapTotal": 8,
        "SwapFree": 2,
    }
    with pytest.raises(HostParseError, match="/proc/vmstat: missing pgfault"):
        parse_key_value_counters("pgpgin 1\n", {"pgfault"}, "/proc/vmstat")
    with pytest.raises(HostParseError, match="/proc/vmstat line 2: pgfault"):
        parse_key_value_counters("pgpgin 1\npgfault x\n", {"pgfault"}, "/proc/vmstat")


def test_diskstats_fields_and_short_line():
    disks = parse_diskstats(" 259 0 nvme0n1 10 1 200 5 20 2 400 6 0 30 11 0 0 0 0\n")
    d = disks["nvme0n1"]
    assert (d.reads, d.read_sectors, d.writes, d.write_sectors, d.io_ms) == (10, 200, 20, 400, 30)
    with pytest.raises(HostParseError, match="/proc/diskstats line 2"):
        parse_diskstats(" 259 0 nvme0n1 10 1 200 5 20 2 400 6 0 30 11\n 259 1 x 1 2\n")


def test_net_dev_skips_headers():
    text = (
        "Inter-|   Receive |  Transmit\n face |bytes packets|bytes\n"
        "  eth0: 100 1 0 0 0 0 0 0 200 2 0 0 0 0 0 0\n"
    )
    nics = parse_net_dev(text)
    assert list(nics) == ["eth0"] and (nics["eth0"].rx_bytes, nics["eth0"].tx_bytes) == (100, 200)


def test_os_release_prefers_pretty_name_and_strips_quotes():
    assert parse_os_release('NAME="Debian GNU/Linux"\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n') == (
        "Debian GNU/Linux 12 (bookworm)"
    )
    assert parse_os_release("NAME='Flatcar'\nVERSION=3815.2.0\n") == "Flatcar 3815.2.0"
    assert parse_os_release("") == ""


@pytest.mark.parametrize("text,speed", [("25000\n", 25000), ("-1\n", None), ("0", None), ("", None), (None, None)])
def test_link_speed(text, speed):
    assert parse_link_speed(text) == speed


def test_cpu_list():
    assert parse_cpu_list("0-3,8,10-11\n") == frozenset({0, 1, 2, 3, 8, 10, 11})
    with pytest.raises(HostParseError, match="CPU list"):
        parse_cpu_list("a-b")


@pytest.mark.parametrize("name", ["nvme0n1", "sda", "vda", "xvda", "mmcblk0"])
def test_whole_disks(name):
    assert is_whole_disk_name(name)


@pytest.mark.parametrize("name", ["loop0", "ram0", "zram0", "dm-0", "md127", "nbd3", "sr0", "fd0"])
def test_virtual_block_devices(name):
    assert not is_whole_disk_name(name)


@pytest.mark.parametrize("name", ["eth0", "ens1f0", "enp65s0f1np1", "ib0", "eno1", "mlx5_0"])
def test_physical_nic_names(name):
    assert not is_virtual_nic_name(name)


@pytest.mark.parametrize(
    "name",
    ["lo", "veth3f2a1b0", "docker0", "br-1a2b", "virbr0", "cni0", "flannel.1", "cali1234abcd", "vxlan.calico",
     "tunl0", "tun0", "tap0", "weave", "kube-ipvs0", "cilium_host", "lxc12ab", "genev_sys_6081", "wg0", "bond0"],
)
def test_virtual_nic_names(name):
    assert is_virtual_nic_name(name)


def test_cpu_percent_and_rates_refuse_nonsense():
    assert cpu_busy_percent(CpuTimes(10, 100), CpuTimes(60, 200)) == 50.0
    assert cpu_busy_percent(CpuTimes(10, 100), CpuTimes(10, 100)) is None  # no time passed
    assert per_second(100, 300, 2.0) == 100.0
    assert per_second(300, 100, 2.0) is None  # counter reset
    assert per_second(100, 300, 0.0) is None

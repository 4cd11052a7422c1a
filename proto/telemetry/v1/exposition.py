"""Prometheus names for one node's readings (GPU and host), shared by both sides.

The agent serves these from its latest sample; the aggregator can serve the
same series for every node (`--per-node-metrics`) to a Prometheus that cannot
reach the nodes. Both must produce the same names, and `agent` and
`aggregator` never import each other, so the pure builder lives here beside
the readings it reads.

Conventions (https://prometheus.io/docs/practices/naming/): base units named
in the metric (`_bytes`, `_celsius`, `_watts`, `_hertz`, `_seconds`), shares
as `_ratio` in 0..1, counters end in `_total`, 0/1 gauges for states. A value
that was not read (None) produces no series rather than a made-up 0.

Labels: every series carries `node` (the node id); GPU series add `gpu` (NVML
index), `uuid`, `model` (NVML device name), and `namespace`, `pod`,
`container`: the container the kubelet assigned the whole GPU to, empty when
none or several hold it (a time-sliced GPU, a GPU split into MIG devices;
`aios_gpu_pod_info` lists every holder). Empty labels are the same series as
no label to Prometheus, so an unassigned GPU keeps the identity it had.

The per-process series `aios_gpu_process_memory_used_bytes` (labelled `pid`,
`mig_uuid` and the owner's `namespace`/`pod`/`container`) is capped: the
`max_process_series` processes using the most GPU memory on the node (default
MAX_PROCESS_SERIES), the count left out in `aios_node_gpu_processes_not_exposed`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app, start_http_server
from prometheus_client.core import Metric
from prometheus_client.exposition import ThreadingWSGIServer

from proto.telemetry.v1.attribution import NO_HOLDER, holders, owners_by_pid, sole_holder
from proto.telemetry.v1.readings import (
    THROTTLE_REASONS,
    Attribution,
    GpuSample,
    HostSample,
    MigDevice,
    NodeInventory,
    NodeSample,
)

__all__ = [
    "MAX_PROCESS_SERIES",
    "METRIC_PREFIX",
    "THROTTLE_REASONS",
    "MetricsServer",
    "XidKey",
    "gpu_labels",
    "merge_families",
    "node_metric_families",
    "serve_registry",
]

METRIC_PREFIX = "aios"
# Per-process series per node, at most (the processes using the most GPU memory):
# a pid is a new series each time a process starts, so the count must be bounded.
MAX_PROCESS_SERIES = 64

# Every known throttle reason (readings.THROTTLE_REASONS) is exposed as 0 or 1
# so that a reason clearing shows as a drop to 0 rather than a vanished series.


@dataclass(frozen=True, order=True)
class XidKey:
    """One GPU's count of one XID code (the agent accumulates these)."""

    gpu_index: int
    gpu_uuid: str
    xid: int


GPU_LABELS = ("node", "gpu", "uuid", "model", "namespace", "pod", "container")


def gpu_labels(node: str, gpu_index: int, uuid: str, model: str, holder=NO_HOLDER) -> list[str]:
    return [node, str(gpu_index), uuid, model, holder.namespace, holder.pod, holder.container]


class _Families:
    """Builds families lazily so that a name with no readings is left out.

    A label with an empty value is left out of its sample: to Prometheus the
    two are the same series, and a GPU no pod holds then costs a scrape no
    more than before the pod labels existed.
    """

    def __init__(self) -> None:
        self._by_name: dict[str, Metric] = {}

    def _add(self, kind: str, name: str, doc: str, labels: Iterable[str], values: list[str], value: float) -> None:
        family = self._by_name.get(name)
        if family is None:
            family = self._by_name[name] = Metric(f"{METRIC_PREFIX}_{name}", doc, kind)
        # a counter's samples end in `_total`, as prometheus_client's CounterMetricFamily names them
        sample_name = family.name + "_total" if kind == "counter" else family.name
        family.add_sample(sample_name, {k: v for k, v in zip(labels, values) if v}, float(value))

    def gauge(self, name: str, doc: str, labels: Iterable[str], values: list[str], value: float | None) -> None:
        if value is not None:
            self._add("gauge", name, doc, labels, values, value)

    def counter(self, name: str, doc: str, labels: Iterable[str], values: list[str], value: float | None) -> None:
        if value is not None:
            self._add("counter", name, doc, labels, values, value)

    def all(self) -> list[Metric]:
        return list(self._by_name.values())


def _bool(value: bool | None) -> float | None:
    return None if value is None else (1.0 if value else 0.0)


def _bytes(value: int | None) -> float | None:
    return None if value is None else float(value)


def _pct_to_ratio(value: float | None) -> float | None:
    return None if value is None else float(value) / 100.0


def _mhz_to_hertz(value: int | None) -> float | None:
    return None if value is None else float(value) * 1_000_000


def node_metric_families(
    inventory: NodeInventory | None,
    sample: NodeSample | None,
    *,
    node: str,
    xid_counts: Mapping[XidKey, int] | None = None,
    gpu_models: Mapping[str, str] | None = None,
    max_process_series: int = MAX_PROCESS_SERIES,
) -> list[Metric]:
    """Every GPU and host series for one node, from its inventory and latest sample.

    Pure: the same readings always give the same families. `xid_counts` are
    XID events accumulated over the agent's life (a sample holds only the
    events seen since the previous one). `gpu_models` ({uuid: NVML name})
    keeps a GPU's `model` label steady after it drops out of the inventory
    (a lost GPU), so its series do not change identity.
    """
    fam = _Families()
    models_by_uuid: dict[str, str] = dict(gpu_models or {})
    models_by_index: dict[int, str] = {}
    attribution = sample.attribution if sample is not None else None
    by_device = holders(attribution)
    if inventory is not None:
        _inventory_families(fam, inventory, node, by_device)
        for gpu in inventory.gpus:
            models_by_uuid[gpu.uuid] = gpu.name
            models_by_index[gpu.index] = gpu.name
    if sample is not None:
        if sample.host is not None:
            _host_families(fam, sample.host, node)
        for gpu_sample in sample.gpus:
            model = models_by_uuid.get(gpu_sample.uuid) or models_by_index.get(gpu_sample.index, "")
            holder = sole_holder(by_device.get(gpu_sample.uuid, ()))
            _gpu_families(fam, gpu_sample, gpu_labels(node, gpu_sample.index, gpu_sample.uuid, model, holder))
        if attribution is not None:
            _attribution_families(fam, sample, attribution, node, models_by_uuid, inventory, max_process_series)
    for key, count in sorted((xid_counts or {}).items()):
        model = models_by_uuid.get(key.gpu_uuid) or models_by_index.get(key.gpu_index, "")
        holder = sole_holder(by_device.get(key.gpu_uuid, ()))
        fam.counter(
            "gpu_xid_errors",
            "XID error events the driver reported for the GPU, by XID code, since the agent started.",
            (*GPU_LABELS, "xid"),
            [*gpu_labels(node, key.gpu_index, key.gpu_uuid, model, holder), str(key.xid)],
            count,
        )
    return fam.all()


def _inventory_families(fam: _Families, inventory: NodeInventory, node: str, by_device: Mapping) -> None:
    host = inventory.host
    fam.gauge(
        "node_info",
        "Facts about the node; the value is always 1.",
        ("node", "node_name", "hostname", "kernel", "os", "driver_version", "cuda_driver_version", "nvml_status"),
        [
            node,
            inventory.node_name,
            host.hostname if host else "",
            host.kernel if host else "",
            host.os if host else "",
            inventory.driver_version,
            inventory.cuda_driver_version,
            inventory.nvml_status,
        ],
        1,
    )
    fam.gauge(
        "node_nvml_up",
        "1 when NVML answered on the node, 0 when it could not start (see aios_node_info's nvml_status).",
        ("node",),
        [node],
        _bool(inventory.nvml_status == "ok"),
    )
    fam.gauge("node_gpus", "GPUs NVML reports on the node.", ("node",), [node], len(inventory.gpus))
    for gpu in inventory.gpus:
        cc = f"{gpu.compute_capability[0]}.{gpu.compute_capability[1]}" if gpu.compute_capability else ""
        fam.gauge(
            "gpu_info",
            "Facts about the GPU; the value is always 1.",
            (*GPU_LABELS, "pci_bus_id", "compute_capability", "architecture", "mig_enabled"),
            [
                *gpu_labels(node, gpu.index, gpu.uuid, gpu.name, sole_holder(by_device.get(gpu.uuid, ()))),
                gpu.pci_bus_id,
                cc,
                gpu.architecture,
                "" if gpu.mig_enabled is None else str(gpu.mig_enabled).lower(),
            ],
            1,
        )
    if host is None:
        return
    fam.gauge("node_cpus", "Logical CPUs of the node.", ("node",), [node], host.cpu_logical)
    fam.gauge("node_cpu_cores", "Physical CPU cores of the node.", ("node",), [node], host.cpu_physical)
    for disk in host.disks:
        fam.gauge(
            "node_disk_size_bytes",
            "Size of each physical disk.",
            ("node", "device"),
            [node, disk.name],
            _bytes(disk.size_bytes),
        )
    for nic in host.nics:
        fam.gauge(
            "node_network_speed_bytes",
            "Link speed of each real NIC in bytes per second.",
            ("node", "device"),
            [node, nic.name],
            None if nic.speed_mbps is None else nic.speed_mbps * 1_000_000 / 8,
        )


def _host_families(fam: _Families, host: HostSample, node: str) -> None:
    n = ("node",)
    v = [node]
    cpu_busy = _pct_to_ratio(host.cpu_percent)
    fam.gauge("node_cpu_utilization_ratio", "Share of CPU time spent busy, all CPUs (0..1).", n, v, cpu_busy)
    fam.gauge("node_load1", "1-minute load average.", n, v, host.load1)
    fam.gauge("node_load5", "5-minute load average.", n, v, host.load5)
    fam.gauge("node_load15", "15-minute load average.", n, v, host.load15)
    fam.gauge("node_memory_total_bytes", "Physical memory.", n, v, _bytes(host.memory_total_bytes))
    fam.gauge("node_memory_used_bytes", "Physical memory in use.", n, v, _bytes(host.memory_used_bytes))
    fam.gauge(
        "node_memory_available_bytes",
        "Memory available to new work without swapping.",
        n,
        v,
        _bytes(host.memory_available_bytes),
    )
    fam.gauge("node_swap_total_bytes", "Swap space.", n, v, _bytes(host.swap_total_bytes))
    fam.gauge("node_swap_used_bytes", "Swap space in use.", n, v, _bytes(host.swap_used_bytes))
    fam.gauge("node_page_faults_per_second", "Page faults per second over the last interval.", n, v, host.page_faults_per_s)
    fam.gauge(
        "node_disk_read_bytes_per_second", "Bytes read from disks per second.", n, v, host.disk_read_bytes_per_s
    )
    fam.gauge(
        "node_disk_written_bytes_per_second", "Bytes written to disks per second.", n, v, host.disk_write_bytes_per_s
    )
    fam.gauge("node_disk_reads_per_second", "Read operations per second, all disks.", n, v, host.disk_read_iops)
    fam.gauge("node_disk_writes_per_second", "Write operations per second, all disks.", n, v, host.disk_write_iops)
    fam.gauge(
        "node_disk_busy_ratio",
        "Share of time the busiest disk had I/O in flight (0..1).",
        n,
        v,
        _pct_to_ratio(host.disk_busy_pct),
    )
    fs, root = ("node", "mountpoint"), [node, "/"]
    fam.gauge("node_filesystem_size_bytes", "Size of the host's root filesystem.", fs, root, _bytes(host.fs_total_bytes))
    fam.gauge("node_filesystem_used_bytes", "Used space of the host's root filesystem.", fs, root, _bytes(host.fs_used_bytes))
    fam.gauge("node_processes", "Processes on the node.", n, v, host.processes_total)
    fam.gauge("node_processes_running", "Runnable tasks the kernel counts.", n, v, host.processes_running)
    fam.gauge("node_threads", "Threads on the node.", n, v, host.threads_total)
    dev = ("node", "device")
    for nic in host.nics:
        fam.counter(
            "node_network_transmit_bytes", "Bytes sent by the NIC.", dev, [node, nic.name], nic.tx_bytes_total
        )
        fam.counter(
            "node_network_receive_bytes", "Bytes received by the NIC.", dev, [node, nic.name], nic.rx_bytes_total
        )
        fam.gauge(
            "node_network_transmit_bytes_per_second",
            "Bytes sent by the NIC per second over the last interval.",
            dev,
            [node, nic.name],
            nic.tx_bytes_per_s,
        )
        fam.gauge(
            "node_network_receive_bytes_per_second",
            "Bytes received by the NIC per second over the last interval.",
            dev,
            [node, nic.name],
            nic.rx_bytes_per_s,
        )


def _gpu_families(fam: _Families, gpu: GpuSample, labels: list[str]) -> None:
    g = GPU_LABELS
    fam.gauge("gpu_lost", "1 when the GPU stopped answering (fell off the bus, ...).", g, labels, _bool(gpu.lost))
    fam.gauge(
        "gpu_read_error",
        "1 when the GPU as a whole could not be read in the latest sample.",
        g,
        labels,
        _bool(bool(gpu.error)),
    )
    busy = _pct_to_ratio(gpu.utilization_gpu_pct)
    fam.gauge("gpu_utilization_ratio", "Share of time a kernel ran on the GPU (0..1).", g, labels, busy)
    fam.gauge(
        "gpu_memory_utilization_ratio",
        "Share of time the GPU's memory was read or written (0..1).",
        g,
        labels,
        _pct_to_ratio(gpu.utilization_memory_pct),
    )
    fam.gauge("gpu_memory_total_bytes", "GPU memory.", g, labels, _bytes(gpu.memory_total_bytes))
    fam.gauge("gpu_memory_used_bytes", "GPU memory in use.", g, labels, _bytes(gpu.memory_used_bytes))
    fam.gauge("gpu_memory_free_bytes", "GPU memory free.", g, labels, _bytes(gpu.memory_free_bytes))
    fam.gauge("gpu_memory_reserved_bytes", "GPU memory the driver reserves.", g, labels, _bytes(gpu.memory_reserved_bytes))
    fam.gauge("gpu_temperature_celsius", "GPU core temperature.", g, labels, gpu.temperature_c)
    fam.gauge("gpu_power_draw_watts", "GPU power draw.", g, labels, gpu.power_draw_w)
    fam.gauge("gpu_power_limit_watts", "GPU power limit in force.", g, labels, gpu.power_limit_w)
    fam.gauge("gpu_sm_clock_hertz", "GPU streaming multiprocessor clock.", g, labels, _mhz_to_hertz(gpu.sm_clock_mhz))
    fam.gauge("gpu_memory_clock_hertz", "GPU memory clock.", g, labels, _mhz_to_hertz(gpu.memory_clock_mhz))
    fam.gauge("gpu_compute_processes", "Compute processes running on the GPU.", g, labels, gpu.compute_processes)
    if "throttle_reasons" not in gpu.unsupported and not gpu.lost and not gpu.error:
        active = set(gpu.throttle_reasons)
        for reason in (*THROTTLE_REASONS, *sorted(active - set(THROTTLE_REASONS))):
            fam.gauge(
                "gpu_throttle_reason",
                "1 while the reason holds the GPU's clocks down, else 0.",
                (*g, "reason"),
                [*labels, reason],
                _bool(reason in active),
            )
    for error_type, volatile, aggregate in (
        ("corrected", gpu.ecc_corrected_volatile, gpu.ecc_corrected_aggregate),
        ("uncorrected", gpu.ecc_uncorrected_volatile, gpu.ecc_uncorrected_aggregate),
    ):
        fam.counter(
            "gpu_ecc_volatile_errors",
            "ECC errors since the driver last loaded.",
            (*g, "type"),
            [*labels, error_type],
            volatile,
        )
        fam.counter(
            "gpu_ecc_aggregate_errors",
            "ECC errors over the GPU's life.",
            (*g, "type"),
            [*labels, error_type],
            aggregate,
        )
    fam.gauge("gpu_retired_pages", "Memory pages the GPU retired.", g, labels, gpu.retired_pages_count)
    fam.gauge(
        "gpu_retired_pages_pending",
        "1 when a page retirement waits for the next GPU reset.",
        g,
        labels,
        _bool(gpu.retired_pages_pending),
    )
    for error_type, rows in (
        ("correctable", gpu.remapped_rows_correctable),
        ("uncorrectable", gpu.remapped_rows_uncorrectable),
    ):
        fam.gauge("gpu_remapped_rows", "Memory rows the GPU remapped, by error type.", (*g, "type"), [*labels, error_type], rows)
    fam.gauge(
        "gpu_remapped_rows_pending", "1 when a row remap waits for a GPU reset.", g, labels, _bool(gpu.remapped_rows_pending)
    )
    fam.gauge(
        "gpu_remapped_rows_failure",
        "1 when a row remap failed (the GPU needs service).",
        g,
        labels,
        _bool(gpu.remapped_rows_failure),
    )
    fam.counter("gpu_pcie_replays", "PCIe replays (link-level retransmissions).", g, labels, gpu.pcie_replay_count)
    for link in gpu.nvlinks:
        link_labels = [*labels, str(link.link)]
        fam.gauge("gpu_nvlink_active", "1 when the NVLink is active.", (*g, "link"), link_labels, _bool(link.active))


def _attribution_families(
    fam: _Families,
    sample: NodeSample,
    attribution: Attribution,
    node: str,
    models: Mapping[str, str],
    inventory: NodeInventory | None,
    max_process_series: int,
) -> None:
    fam.gauge(
        "node_gpu_attribution_up",
        "1 when the kubelet's pod-resources API answered (GPU -> pod attribution), 0 with the reason.",
        ("node", "reason"),
        [node, attribution.reason],
        _bool(attribution.available),
    )
    for count in attribution.allocatable:
        fam.gauge(
            "node_gpu_allocatable",
            "Devices of the GPU resource the kubelet can hand out.",
            ("node", "resource"),
            [node, count.resource],
            count.allocatable,
        )
    gpus = {g.uuid: g for g in sample.gpus}
    by_device = holders(attribution)
    for allocation in attribution.allocations:
        gpu = gpus.get(allocation.gpu_uuid)
        if gpu is None:
            continue  # not one of this node's GPUs: the kubelet's word alone
        fam.gauge(
            "gpu_pod_info",
            "A container the kubelet assigned the GPU (or one of its MIG devices) to; the value is always 1.",
            (*GPU_LABELS[:4], "namespace", "pod", "container", "mig_uuid", "resource", "claim"),
            [
                node, str(gpu.index), gpu.uuid, models.get(gpu.uuid, ""),
                allocation.namespace, allocation.pod, allocation.container,
                allocation.mig_uuid, allocation.resource, allocation.claim,
            ],
            1,
        )
    profiles = _mig_profiles(inventory)
    mig_labels = (*GPU_LABELS, "mig", "mig_uuid", "profile")
    for gpu in sample.gpus:
        model = models.get(gpu.uuid, "")
        for mig in gpu.migs:
            holder = sole_holder(by_device.get(mig.uuid, ()))
            labels = [*gpu_labels(node, gpu.index, gpu.uuid, model, holder), str(mig.index), mig.uuid, profiles.get(mig.uuid, "")]
            fam.gauge("mig_memory_total_bytes", "Memory of the MIG device.", mig_labels, labels, mig.memory_total_bytes)
            fam.gauge("mig_memory_used_bytes", "Memory of the MIG device in use.", mig_labels, labels, mig.memory_used_bytes)
            fam.gauge(
                "mig_utilization_ratio",
                "Share of time a kernel ran on the MIG device (0..1), where NVML reports it.",
                mig_labels,
                labels,
                _pct_to_ratio(mig.utilization_gpu_pct),
            )
    _process_families(fam, sample, attribution, node, max_process_series)


def _process_families(fam: _Families, sample: NodeSample, attribution: Attribution, node: str, cap: int) -> None:
    ranked = sorted(
        ((p.used_memory_bytes or 0, gpu.index, p.pid, gpu, p) for gpu in sample.gpus for p in gpu.processes),
        key=lambda row: (-row[0], row[1], row[2]),
    )
    shown = ranked[: max(0, cap)]
    owners = owners_by_pid(attribution) if shown else {}
    # few labels on purpose: a scrape's cost is mostly per label (per-process utilization and
    # the process's kind are in the sample, nodes_data and the queries)
    labels_of = ("node", "gpu", "uuid", "pid", "mig_uuid", "namespace", "pod", "container")
    for _, _, _, gpu, process in shown:
        owner = owners.get(process.pid)
        labels = [
            node, str(gpu.index), gpu.uuid, str(process.pid), process.mig_uuid,
            owner.namespace if owner else "", owner.pod if owner else "", owner.container if owner else "",
        ]  # fmt: skip
        fam.gauge(
            "gpu_process_memory_used_bytes",
            "GPU memory a process uses (the processes using the most, see aios_node_gpu_processes_not_exposed).",
            labels_of,
            labels,
            process.used_memory_bytes,
        )
    fam.gauge(
        "node_gpu_processes_not_exposed",
        "GPU processes left out of the per-process series by their cap.",
        ("node",),
        [node],
        len(ranked) - len(shown),
    )


def _mig_profiles(inventory: NodeInventory | None) -> dict[str, str]:
    if inventory is None:
        return {}
    found: dict[str, str] = {}
    for gpu in inventory.gpus:
        mig: MigDevice
        for mig in gpu.mig_devices:
            found[mig.uuid] = mig.profile
    return found


def merge_families(families: Iterable[Metric]) -> list[Metric]:
    """One family per name: several nodes' families of one name become one.

    The text format allows a name's HELP/TYPE once; samples from every node
    must sit under it.
    """
    merged: dict[str, Metric] = {}
    for family in families:
        first = merged.get(family.name)
        if first is None:
            copy = Metric(family.name, family.documentation, family.type, family.unit)
            copy.samples = list(family.samples)
            merged[family.name] = copy
        else:
            first.samples.extend(family.samples)
    return list(merged.values())


class MetricsServer:
    """A running `/metrics` HTTP server (prometheus_client's) on its own thread."""

    def __init__(self, server: WSGIServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread

    @property
    def port(self) -> int:
        return self._server.server_port

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve_registry(
    port: int,
    registry: CollectorRegistry,
    *,
    addr: str = "0.0.0.0",
    routes: Mapping[str, Callable] | None = None,
) -> MetricsServer:
    """Serve `registry` on `addr:port` (port 0 picks a free one).

    `routes`: extra WSGI apps by exact path (e.g. `/healthz`); every other
    path is the metrics, as with prometheus_client's own server.
    """
    if not routes:
        server, thread = start_http_server(port, addr=addr, registry=registry)
        return MetricsServer(server, thread)
    metrics_app = make_wsgi_app(registry)
    extra = dict(routes)

    def app(environ, start_response):
        route = extra.get(environ.get("PATH_INFO", ""))
        return (route or metrics_app)(environ, start_response)

    server = make_server(addr, port, app, ThreadingWSGIServer, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True)
    thread.start()
    return MetricsServer(server, thread)


class _QuietHandler(WSGIRequestHandler):
    """No access log line per scrape or probe on stderr."""

    def log_message(self, format, *args):
        pass

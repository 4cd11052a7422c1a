"""`aios-aggregator nodes` (table), `node NAME` (details), `pod-gpus [NAMESPACE/]POD` and
`gpu-pods UUID | NODE INDEX` (who is on which GPU), via TelemetryQuery."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format

from aggregator.telemetry.query_client import QueryClient, QueryClientError
from proto.telemetry.v1 import telemetry_pb2 as pb

__all__ = ["format_gpu_uses", "format_node_detail", "format_node_table", "register"]

_STATUS = {
    pb.NODE_STATUS_HEALTHY: "healthy",
    pb.NODE_STATUS_UNHEALTHY: "unhealthy",
    pb.NODE_STATUS_STALE: "stale",
    pb.NODE_STATUS_UNSPECIFIED: "?",
}


def _client_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--aggregator", default=None, help="host:port (AIOS_AGGREGATOR_ADDR, default 127.0.0.1:50051)")
    p.add_argument("--token", default=None,
                   help="the aggregator's bearer token (default: AIOS_TOKEN, else the first line of AIOS_TOKEN_FILE)")
    p.add_argument("--tls-ca", type=Path, help="CA certificate (PEM) when the aggregator serves TLS")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("nodes", help="list the nodes the aggregator knows",
                       description="The node table of the aggregator (gRPC TelemetryQuery), as the agents report it.")
    _client_args(p)
    p.set_defaults(run=run_nodes)
    p = sub.add_parser("node", help="show one node (by id or name)",
                       description="One node: inventory, latest figures, rolling averages and health events.")
    p.add_argument("name")
    p.add_argument("--events", type=int, default=10, help="health events to show (10)")
    p.add_argument("--json", action="store_true", help="print the full record as JSON")
    _client_args(p)
    p.set_defaults(run=run_node)
    p = sub.add_parser("pod-gpus", help="which GPUs a pod uses (from the agents' latest samples)")
    p.add_argument("pod", help="[NAMESPACE/]POD; without a namespace, pods of that name in any")
    _client_args(p)
    p.set_defaults(run=run_pod_gpus)
    p = sub.add_parser("gpu-pods", help="which pods use a GPU: by GPU or MIG UUID, or by NODE and GPU INDEX")
    p.add_argument("gpu", help="a GPU or MIG UUID, or a node id or name (then the GPU index)")
    p.add_argument("index", nargs="?", type=int, help="the GPU's index on that node")
    _client_args(p)
    p.set_defaults(run=run_gpu_pods)


def _opt(msg: Any, name: str, fmt: str = "{:.1f}") -> str:
    return fmt.format(getattr(msg, name)) if msg.HasField(name) else "-"


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.0f}h"


def format_node_table(nodes: list[pb.NodeSummary], now: float) -> str:
    header = ("NODE", "NAME", "STATUS", "GPUS", "GPU MEM (MB)", "CPU %", "GPU %", "PROBLEMS", "LAST SEEN")
    rows = [header]
    for n in nodes:
        rows.append(
            (
                n.node_id,
                n.node_name,
                _STATUS.get(n.status, "?"),
                str(n.gpu_count),
                str(n.gpu_memory_mb),
                _opt(n, "cpu_percent"),
                _opt(n, "gpu_utilization_pct"),
                str(n.open_health_events),
                _age(max(0.0, now - n.last_seen)) + " ago",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    if not nodes:
        lines.append("(no nodes yet)")
    return "\n".join(lines)


def format_node_detail(d: pb.NodeDetail, now: float) -> str:
    s, inv = d.summary, d.inventory
    lines = [
        f"node:        {s.node_id} ({s.node_name})",
        f"status:      {_STATUS.get(s.status, '?')}, {s.open_health_events} open problem(s)",
        f"last seen:   {_age(max(0.0, now - s.last_seen))} ago, agent {s.agent_version or '?'}",
    ]
    if inv.HasField("host"):
        h = inv.host
        lines.append(
            f"host:        {h.hostname}, {h.os}, kernel {h.kernel}, {h.cpu_logical} vCPU, {h.memory_total_mb} MB RAM"
        )
    lines.append(
        f"nvml:        {inv.nvml_status or 'ok'}; driver {inv.driver_version or '-'}, CUDA {inv.cuda_driver_version or '-'}"
    )
    holders = _holders_by_gpu(d.latest_sample) if d.HasField("latest_sample") else {}
    for g in inv.gpus:
        lines.append(f"gpu {g.index}:       {g.name}, {g.memory_mb} MB, {g.uuid}")
        if g.uuid in holders:
            lines.append(f"             {holders[g.uuid]}")
    r = d.rolling
    lines.append(
        "cpu %:       now {}  1m {}  5m {}  15m {}".format(
            _opt(s, "cpu_percent"), _opt(r, "cpu_percent_1m"), _opt(r, "cpu_percent_5m"), _opt(r, "cpu_percent_15m")
        )
    )
    lines.append(
        "gpu util %:  now {}  1m {}  5m {}  15m {}".format(
            _opt(s, "gpu_utilization_pct"),
            _opt(r, "gpu_utilization_pct_1m"),
            _opt(r, "gpu_utilization_pct_5m"),
            _opt(r, "gpu_utilization_pct_15m"),
        )
    )
    if d.health_events:
        lines.append("health events (most recent first):")
        for e in d.health_events:
            where = f" gpu {e.gpu_index}" if e.HasField("gpu_index") else ""
            xid = f" xid {e.xid}" if e.HasField("xid") else ""
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(e.timestamp))
            lines.append(f"  {when}Z {e.kind}{where}{xid} {e.message}".rstrip())
    return "\n".join(lines)


def _holders_by_gpu(sample: pb.NodeSample) -> dict[str, str]:
    """GPU uuid -> "pods ns/pod/container, ...; N processes" for the detail view."""
    pods: dict[str, list[str]] = {}
    for a in sample.attribution.allocations:
        mig = f" (MIG {a.mig_uuid})" if a.mig_uuid else ""
        pods.setdefault(a.gpu_uuid, []).append(f"{a.namespace}/{a.pod}/{a.container}{mig}")
    lines = {}
    for gpu in sample.gpus:
        parts = []
        if pods.get(gpu.uuid):
            parts.append("pods " + ", ".join(pods[gpu.uuid]))
        if gpu.processes:
            parts.append(f"{len(gpu.processes)} process(es)")
        if parts:
            lines[gpu.uuid] = "; ".join(parts)
    return lines


def format_gpu_uses(uses: list[pb.GpuUse]) -> str:
    header = ("NODE", "GPU", "MIG", "NAMESPACE", "POD", "CONTAINER", "ALLOCATED", "PIDS", "GPU MEM (MB)")
    rows = [header]
    for u in uses:
        rows.append(
            (
                u.node_id,
                str(u.gpu_index),
                u.mig_uuid or "-",
                u.namespace or "-",
                u.pod or (f"(uid {u.pod_uid})" if u.pod_uid else "-"),
                u.container or "-",
                "yes" if u.allocated else "no",
                ",".join(str(pid) for pid in u.pids) or "-",
                str(u.used_memory_bytes // (1024 * 1024)) if u.HasField("used_memory_bytes") else "-",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    if not uses:
        lines.append("(none)")
    return "\n".join(lines)


def _with_client(args: argparse.Namespace, body: Callable[[QueryClient], str]) -> int:
    try:
        with QueryClient(args.aggregator, token=args.token, tls_ca=args.tls_ca) as client:
            print(body(client))
    except QueryClientError as e:
        hint = ""
        if e.code == grpc.StatusCode.UNAUTHENTICATED:
            hint = ("; give the aggregator's token with --token, AIOS_TOKEN or AIOS_TOKEN_FILE "
                    "(in a cluster: the `token` key of Secret aios-token)")
        print(f"aios-aggregator: {e}{hint}", file=sys.stderr)
        return 1
    return 0


def run_nodes(args: argparse.Namespace) -> int:
    return _with_client(args, lambda c: format_node_table(c.list_nodes(), time.time()))


def run_node(args: argparse.Namespace) -> int:
    def body(client: QueryClient) -> str:
        detail = client.get_node(args.name, args.events)
        if args.json:
            return str(json_format.MessageToJson(detail, indent=2))
        return format_node_detail(detail, time.time())

    return _with_client(args, body)


def run_pod_gpus(args: argparse.Namespace) -> int:
    namespace, _, pod = args.pod.rpartition("/")
    return _with_client(args, lambda c: format_gpu_uses(c.pod_gpus(namespace, pod)))


def run_gpu_pods(args: argparse.Namespace) -> int:
    if args.index is None:
        return _with_client(args, lambda c: format_gpu_uses(c.gpu_pods(args.gpu)))
    return _with_client(args, lambda c: format_gpu_uses(c.gpu_pods(node=args.gpu, gpu_index=args.index)))

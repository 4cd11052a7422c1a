"""Build and write the onboarding document for many nodes (goal: 5,000 nodes in under 1 s).

Measures, on the same inventories, side by side:
- build: `node_entry` for every node + `populate_document` (entries, totals);
- write: `write_document` (indented JSON, temp file + rename);
- enroll: one `with_node` on the 5,000-node document (what enrollment does per
  joining node, besides SQLite).
Nodes are a realistic mix: a third CPU-only, a third with 2 GPUs, a third
with 8; 1-4 disks, 1-3 NICs.

    python benchmarks/onboarding_doc.py [--nodes 5000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aggregator.commands.onboard import write_document
from aggregator.onboarding.document import node_entry, populate_document, with_node
from aggregator.onboarding.validate import normalise_config, validate_config
from proto.telemetry.v1.readings import MIB, DiskInfo, GpuInventory, HostInventory, NicInfo, NodeInventory

FEATURES = ("bf16", "fp16", "fp8", "int8", "tensor_cores", "tf32")
CONFIG = {"id": "bench-cluster", "regionId": "r1", "config": {"useGateway": True},
          "nodes": {"nodesData": []}, "clusterMetadata": {"name": "bench"}}


def inventory(i: int) -> NodeInventory:
    gpus = tuple(
        GpuInventory(index=g, uuid=f"GPU-{i}-{g}", name="NVIDIA H100 80GB HBM3", memory_bytes=81559 * MIB,
                     compute_capability=(9, 0), features=FEATURES)
        for g in range((0, 2, 8)[i % 3])
    )
    host = HostInventory(
        hostname=f"node-{i}", kernel="6.1", os="Debian 12", cpu_logical=64, cpu_physical=32,
        memory_total_bytes=515890 * MIB, swap_total_bytes=4095 * MIB,
        disks=tuple(DiskInfo(f"nvme{d}n1", 3662830 * MIB) for d in range(1 + i % 4)),
        nics=tuple(NicInfo(f"eth{n}", 100000) for n in range(1 + i % 3)),
    )
    return NodeInventory(node_id=f"node-{i:05d}", node_name=f"node-{i}", host=host, gpus=gpus)


def timed(fn, repeat: int) -> tuple[float, object]:
    """Median CPU seconds of this process (the machine is shared: wall time is noisier)."""
    times, result = [], None
    for _ in range(repeat):
        start = time.process_time()
        result = fn()
        times.append(time.process_time() - start)
    return statistics.median(times), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    inventories = [inventory(i) for i in range(args.nodes)]
    assert not validate_config(CONFIG)
    config = normalise_config(CONFIG)

    build_s, document = timed(lambda: populate_document(config, [node_entry(inv) for inv in inventories]), args.repeat)
    with tempfile.TemporaryDirectory() as folder:
        write_s, path = timed(lambda: write_document(document, folder), args.repeat)
        size_mb = path.stat().st_size / 1024 / 1024
        extra = node_entry(inventory(args.nodes))
        enroll_s, _ = timed(lambda: with_node(document, extra), args.repeat)
        dumps_s, _ = timed(lambda: json.dumps(document, sort_keys=True), args.repeat)  # what ClusterStore.put serialises
    total = build_s + write_s
    print(f"nodes={args.nodes} repeat={args.repeat} (medians of process CPU time)")
    print(f"build  {build_s * 1000:8.1f} ms")
    print(f"write  {write_s * 1000:8.1f} ms  ({size_mb:.1f} MB file)")
    print(f"total  {total * 1000:8.1f} ms  goal < 1000 ms: {'met' if total < 1 else 'MISSED'}")
    print(f"enroll one node (with_node) {enroll_s * 1000:6.1f} ms; store serialisation (json.dumps) {dumps_s * 1000:6.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())

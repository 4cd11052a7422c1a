"""Benchmark: memory of the agent's stream buffer when the aggregator is away.

1,000 samples (the default `buffer_limit`, ~2.8 h at 10 s) of a node with 8
fake H100s queued in a `TelemetryStream` that never connects; the process's
VmRSS before and after, medians of `--repeat` fresh processes. `--code DIR`
measures the stream of another checkout (e.g. `git worktree add /tmp/base <rev>`)
side by side.

    python benchmarks/stream_buffer_memory.py [--repeat 3] [--code DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = """
import gc, json, sys
sys.path.insert(0, sys.argv[1])
from agent.sampling.node_reader import open_node_reader
from agent.stream.client import StreamConfig, TelemetryStream

def rss_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024

reader = open_node_reader(node_id="n", node_name="n", nvml_library=sys.argv[2])
stream = TelemetryStream(StreamConfig(address="127.0.0.1:1", node_id="n"), reader.inventory())
samples = [reader.sample() for _ in range(2)]
gc.collect()
before = rss_mib()
for _ in range(1000):
    stream.send_sample(reader.sample())
gc.collect()
print(json.dumps({"buffered": stream.stats().buffered, "rss_delta_mib": round(rss_mib() - before, 1)}))
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--code", type=Path, action="append", default=[], help="another checkout to measure too")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from tests.fakenvml import FakeNvml, build_fake_nvml
    from tests.fakenvml.presets import h100_sxm

    codes = [ROOT, *[code.resolve() for code in args.code]]
    results: dict[str, list[float]] = {str(code): [] for code in codes}
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        nvml = FakeNvml(build_fake_nvml(tmp / "lib"), tmp / "nvml.conf").configure(gpus=[h100_sxm(i) for i in range(8)])
        library = str(Path(nvml.env["LD_LIBRARY_PATH"].split(os.pathsep)[0]) / "libnvidia-ml.so.1")
        for _ in range(args.repeat):
            for code in codes:
                out = subprocess.run([sys.executable, "-c", CHILD, str(code), library], env={**os.environ, **nvml.env},
                                     cwd=tmp, capture_output=True, text=True, check=True, timeout=300)
                result = json.loads(out.stdout)
                assert result["buffered"] == 1000, result
                results[str(code)].append(result["rss_delta_mib"])
    print(json.dumps({code: {"median_mib": statistics.median(each), "each": each} for code, each in results.items()},
                     indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

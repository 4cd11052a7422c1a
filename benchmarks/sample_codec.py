"""Cost of one sample's wire conversion: readings -> protobuf bytes (agent) and back (aggregator).

    python benchmarks/sample_codec.py [--gpus 8] [--rounds 5] [--tree PATH]

`--tree` measures another checkout's code (e.g. an unpacked `git archive main`), so two
versions can be compared side by side on the same machine; each round is the best of 5
repeats of 2,000 calls, and the median round is printed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tree", type=Path, default=ROOT, help="the checkout whose code to measure")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(args.tree.resolve()))
    from benchmarks.ingest import _sample_bytes  # the ingest benchmark's 8-GPU sample, as that tree builds it
    from proto.telemetry.v1 import convert
    from proto.telemetry.v1 import telemetry_pb2 as pb

    data = _sample_bytes(args.gpus)
    sample = convert.sample_from_pb(pb.NodeSample.FromString(data))

    def per_call_us(call) -> float:
        return min(timeit.repeat(call, number=2000, repeat=5)) / 2000 * 1e6

    decode = [per_call_us(lambda: convert.sample_from_pb(pb.NodeSample.FromString(data))) for _ in range(args.rounds)]
    encode = [per_call_us(lambda: convert.sample_to_pb(sample).SerializeToString()) for _ in range(args.rounds)]
    print(f"{args.tree}: {args.gpus} GPUs, wire {len(data)} B, decode {statistics.median(decode):.1f} us, "
          f"encode {statistics.median(encode):.1f} us (medians of {args.rounds} rounds)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

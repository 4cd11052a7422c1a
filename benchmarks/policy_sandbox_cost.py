"""What the policy sandbox costs: opening a policy (worker start, confinement, import), one call, closing.

    python benchmarks/policy_sandbox_cost.py [--opens 20] [--calls 2000]

Run it once per tree to compare (e.g. `PYTHONPATH=/path/to/other/checkout python benchmarks/...`):
it imports `aggregator` from the first entry of sys.path that has it. Prints medians.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

if not any((Path(p) / "aggregator").is_dir() for p in sys.path if p):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aggregator
from aggregator.policies import PolicyConfig, open_policy

TRIVIAL = """
class AIOSv1PolicyRule:
    def __init__(self, rule_id, settings, parameters):
        pass

    def eval(self, parameters, input_data, context):
        return {"allowed": True, "input_data": input_data}
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--opens", type=int, default=20)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        code = Path(tmp) / "policy" / "code"
        code.mkdir(parents=True)
        (code / "function.py").write_text(TRIVIAL)
        config = PolicyConfig(cache_dir=Path(tmp) / "cache", install_requirements=False)
        opens, closes = [], []
        for _ in range(args.opens):
            started = time.perf_counter()
            handle = open_policy(str(code.parent), config=config)
            handle.eval({"n": 1})
            opened = time.perf_counter()
            handle.close()
            opens.append(opened - started)
            closes.append(time.perf_counter() - opened)
        with open_policy(str(code.parent), config=config) as handle:
            started = time.perf_counter()
            for n in range(args.calls):
                handle.eval({"n": n})
            per_call = (time.perf_counter() - started) / args.calls
    print(f"tree: {Path(aggregator.__file__).parents[1]}")
    print(f"open + first call: median {statistics.median(opens) * 1000:.1f} ms (of {args.opens})")
    print(f"close (stop, sweep, clean up): median {statistics.median(closes) * 1000:.1f} ms")
    print(f"one call: {per_call * 1e6:.0f} us (mean of {args.calls})")


if __name__ == "__main__":
    main()

"""Regenerate the *_pb2.py, *_pb2_grpc.py and *.pyi files beside every .proto.

Run with the pinned grpcio-tools (see pyproject's `test` extra):
    python scripts/gen_proto.py            # write the files
    python scripts/gen_proto.py --check    # exit 1 when they are out of date
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GENERATED_SUFFIXES = ("_pb2.py", "_pb2_grpc.py", "_pb2.pyi")


def proto_files(root: Path = ROOT) -> list[Path]:
    return sorted((root / "proto").rglob("*.proto"))


def generate(out_dir: Path, root: Path = ROOT) -> None:
    import grpc_tools
    from grpc_tools import protoc  # imported late: only the generator needs it

    include = Path(grpc_tools.__file__).parent / "_proto"
    for proto in proto_files(root):
        rel = proto.relative_to(root)
        args = [
            "protoc",
            f"-I{root}",
            f"-I{include}",
            f"--python_out={out_dir}",
            f"--pyi_out={out_dir}",
            f"--grpc_python_out={out_dir}",
            str(rel),
        ]
        code = protoc.main(args)
        if code != 0:
            raise SystemExit(f"protoc failed on {rel} (exit {code})")


def generated_files(base: Path, root: Path = ROOT) -> dict[str, bytes]:
    found = {}
    for proto in proto_files(root):
        stem = proto.relative_to(root).with_suffix("")
        for suffix in GENERATED_SUFFIXES:
            path = base / (str(stem) + suffix)
            if path.exists():
                found[str(path.relative_to(base))] = path.read_bytes()
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    if not args.check:
        import os

        os.chdir(ROOT)
        generate(ROOT)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        fresh = generated_files(Path(tmp))
    committed = generated_files(ROOT)
    stale = sorted(k for k in fresh if committed.get(k) != fresh[k])
    if stale:
        print("out of date (run scripts/gen_proto.py):", ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The generated protobuf/gRPC code committed beside the .proto files is current."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_generated_code_matches_proto_sources():
    pytest.importorskip("grpc_tools")
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_proto.py"), "--check"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_generated_module_imports_and_round_trips():
    from proto.telemetry.v1 import telemetry_pb2 as pb

    msg = pb.AgentMessage(seq=7, sample=pb.NodeSample(timestamp=1.5))
    again = pb.AgentMessage.FromString(msg.SerializeToString())
    assert again.WhichOneof("body") == "sample"
    assert again.seq == 7
    assert not again.sample.host.HasField("cpu_percent")

"""Drive a GPU collector in a subprocess, one JSON line per command.

pynvml keeps the library it loaded for the life of a process, so each test
scenario runs the collector in its own process: `ProbeProcess` starts this
module with the fake NVML's environment and sends it commands on stdin:

  inventory          -> the GpuReport as JSON
  annotation         -> {"value": the gpu.aios/info value for that inventory}
  sample             -> {"gpus": [GpuSample...], "events": [HealthEvent...]}
  close              -> {"closed": true}, then the process exits

The process prints {"ready": true} once the collector is open.

With `--node` (`ProbeProcess(env, node=True)`) it opens the agent's whole
`NodeReader` instead, as `aios-agent run` does (`open_node_reader`, reading
the environment: AIOS_HOST_ROOT, AIOS_POD_RESOURCES_SOCKET, ...), and
`sample` answers {"sample": the wire NodeSample, hex} so the test decodes it
with the same conversion the aggregator uses.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def _jsonable(value):
    if dataclasses.is_dataclass(value):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def node_main() -> int:
    from agent.sampling.node_reader import open_node_reader
    from proto.telemetry.v1.convert import sample_to_pb

    reader = open_node_reader(
        node_id="node-a", node_name="node-a", host_root=os.environ.get("AIOS_HOST_ROOT", "/")
    )
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "sample":
            reply = {"sample": sample_to_pb(reader.sample()).SerializeToString().hex()}
        elif command == "close":
            reader.close()
            print(json.dumps({"closed": True}), flush=True)
            return 0
        else:
            reply = {"error": f"unknown command {command!r}"}
        print(json.dumps(reply), flush=True)
    reader.close()
    return 0


def main() -> int:
    if "--node" in sys.argv[1:]:
        return node_main()
    from agent.gpu.collector import open_gpu_collector
    from agent.kube.annotation import gpu_annotation_value

    retry = float(os.environ.get("AIOS_PROBE_RETRY_S", "60"))
    collector = open_gpu_collector(retry_interval_s=retry)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "inventory":
            reply = _jsonable(collector.inventory())
        elif command == "sample":
            gpus, events = collector.sample()
            reply = {"gpus": _jsonable(gpus), "events": _jsonable(events)}
        elif command == "annotation":
            reply = {"value": gpu_annotation_value(collector.inventory().gpus)}
        elif command == "close":
            collector.close()
            print(json.dumps({"closed": True}), flush=True)
            return 0
        else:
            reply = {"error": f"unknown command {command!r}"}
        print(json.dumps(reply), flush=True)
    collector.close()
    return 0


class ProbeProcess:
    """A running probe; use as a context manager so it is always stopped."""

    def __init__(self, env: dict[str, str], timeout_s: float = 20.0, *, node: bool = False):
        full_env = dict(os.environ)
        full_env.pop("AIOS_NVML_LIBRARY", None)
        full_env.update(env)
        full_env["PYTHONPATH"] = str(REPO_ROOT)
        self.timeout_s = timeout_s
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.fakenvml.probe", *(["--node"] if node else [])],
            cwd=REPO_ROOT,
            env=full_env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            ready = self._read()
        except BaseException:
            self.proc.kill()
            self.close()
            raise
        if ready != {"ready": True}:
            self.close()
            raise RuntimeError(f"probe did not start: {ready}")

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(timeout=self.timeout_s)
            raise RuntimeError(f"probe exited ({self.proc.returncode}): {self.proc.stderr.read()}")
        return json.loads(line)

    def ask(self, command: str) -> dict:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self._read()

    def inventory(self) -> dict:
        return self.ask("inventory")

    def sample(self) -> dict:
        return self.ask("sample")

    def annotation(self) -> str:
        return self.ask("annotation")["value"]

    def sample_until(self, predicate, timeout_s: float = 10.0, interval_s: float = 0.05) -> list[dict]:
        """Sample until predicate(all samples so far) holds; returns the samples."""
        deadline = time.monotonic() + timeout_s
        seen: list[dict] = []
        while True:
            seen.append(self.sample())
            if predicate(seen):
                return seen
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met within {timeout_s}s; last sample: {seen[-1]}")
            time.sleep(interval_s)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.ask("close")
                self.proc.wait(timeout=self.timeout_s)
            except Exception:  # noqa: BLE001 - a probe that cannot close politely is killed
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            stream.close()

    def __enter__(self) -> ProbeProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


if __name__ == "__main__":
    sys.exit(main())

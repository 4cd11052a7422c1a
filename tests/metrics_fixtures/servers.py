"""Real servers for the metrics tests: a Prometheus, and uvicorn serving a FastAPI app."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.support.net import free_port


def _get_json(url: str, timeout: float = 2.0) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


class PrometheusServer:
    """A real `prometheus` scraping the given targets every second, on a loopback port."""

    def __init__(self, workdir: Path, jobs: dict[str, list[str]], *, binary: str) -> None:
        config = workdir / "prometheus.yml"
        scrape_configs = [
            {"job_name": job, "metrics_path": "/metrics", "static_configs": [{"targets": targets}]}
            for job, targets in jobs.items()
        ]
        # JSON is YAML; Prometheus reads it as its config.
        config.write_text(
            json.dumps({"global": {"scrape_interval": "1s", "scrape_timeout": "1s"}, "scrape_configs": scrape_configs})
        )
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = (workdir / "prometheus.log").open("w")
        self._proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._logfile = workdir / "prometheus.log"
        self._wait_ready()

    def _wait_ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self._proc.returncode}: {self._logfile.read_text()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"prometheus not ready after {timeout}s: {self._logfile.read_text()}")

    def query(self, promql: str) -> list[dict]:
        answer = _get_json(f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}")
        assert answer["status"] == "success", answer
        return answer["data"]["result"]

    def expect(self, promql: str, expected: dict[str, float], *, by: str, timeout: float = 15.0) -> None:
        """Poll until the query answers `expected` as {label `by`: value} (scrapes come every second)."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(promql)
            got = {r["metric"].get(by, ""): float(r["value"][1]) for r in result}
            if got == expected:
                return
            if time.monotonic() > deadline:
                targets = _get_json(f"{self.url}/api/v1/targets")["data"]["activeTargets"]
                health = [(t["labels"], t["health"], t["lastError"]) for t in targets]
                raise AssertionError(f"{promql!r} answered {got}, expected {expected}; targets: {health}")
            time.sleep(0.1)

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._log.close()


def prometheus_binary() -> str:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus not installed (Debian package `prometheus`; .ci/run installs it)")
    return binary

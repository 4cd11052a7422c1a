"""What the policy runner knows about its own readiness, for its `/healthz`.

No setting ever stops the runner: a crash-looping container helps no one, and
the kubelet would restart it with the same environment. Instead the runner
serves, every policy call answers the problem as a policy error (so the
aggregator's pre-check or stability verdict names it), and `/healthz` (the
liveness probe: always 200 while the process serves) lists it under
`problems`. It recovers by itself when the service appears, and with the next
pod when the setting is fixed (the operators' `kubectl patch` rolls the pod).

- `RunnerSettings`: the `PolicyConfig` from the environment, or why there is
  none (a bad value), and what the mode still lacks (remote without an
  executor id or URL).
- `ServiceProbe`: every `interval_s`, a TCP connection to each network service
  the runner calls (the policy DB, the remote executor); the last answer is
  what `/healthz` shows. Started and closed explicitly.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from aggregator.policies.config import PolicyConfig
from aggregator.policies.errors import PolicyConfigError, PolicyError

__all__ = ["ProbeResult", "RunnerSettings", "ServiceProbe", "read_runner_settings", "runner_health"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunnerSettings:
    config: PolicyConfig | None  # None: a setting is unusable (`problem` says which)
    problem: str = ""  # "" when every call can be tried

    def require_config(self) -> PolicyConfig:
        """The config to open a policy with; PolicyConfigError (answered per call) when there is none."""
        if self.config is None:
            raise PolicyConfigError(f"the policy runner's settings are unusable: {self.problem}")
        return self.config

    def services(self) -> dict[str, str]:
        """name -> URL of the network services the current mode calls."""
        if self.config is None:
            return {}
        if self.config.mode == "remote":
            return {"executor": self.config.executor_host_url} if self.config.executor_host_url else {}
        return {"policy_db": self.config.policy_db_url} if self.config.policy_db_url else {}


def read_runner_settings(env: Mapping[str, str] | None = None, **overrides) -> RunnerSettings:
    try:
        config = PolicyConfig.from_env(env, **overrides)
    except PolicyError as exc:
        return RunnerSettings(None, exc.reason)
    if config.mode == "remote":
        try:
            config.require_remote()
        except PolicyConfigError as exc:
            return RunnerSettings(config, exc.reason)
    return RunnerSettings(config)


@dataclass(frozen=True)
class ProbeResult:
    url: str
    reachable: bool | None  # None: not checked yet
    error: str = ""
    checked_at: float | None = None  # unix seconds


def _address(url: str) -> tuple[str, int]:
    split = urllib.parse.urlsplit(url)
    if not split.hostname:
        raise ValueError(f"{url!r} has no host")
    return split.hostname, split.port or (443 if split.scheme == "https" else 80)


def _connect(url: str, timeout_s: float) -> str:
    """"" when a TCP connection to the URL's host and port opens, else why not."""
    try:
        host, port = _address(url)
        with socket.create_connection((host, port), timeout=timeout_s):
            return ""
    except ValueError as exc:
        return str(exc)
    except TimeoutError:
        return f"no answer within {timeout_s:g} s"
    except OSError as exc:
        return f"{type(exc).__name__}: {exc.strerror or exc}"


class ServiceProbe:
    """Checks that the services answer (a TCP connection), in the background, so that `/healthz`
    (the kubelet waits one second for it) never waits on DNS or a dead host."""

    def __init__(
        self,
        services: Mapping[str, str],
        *,
        interval_s: float = 30.0,
        timeout_s: float = 3.0,
        clock: Callable[[], float] = time.time,
        connect: Callable[[str, float], str] = _connect,
    ) -> None:
        self._services = dict(services)
        self._interval_s = interval_s
        self._timeout_s = timeout_s
        self._clock = clock
        self._connect = connect
        self._lock = threading.Lock()
        self._results = {name: ProbeResult(url, None) for name, url in self._services.items()}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> ServiceProbe:
        if self._services and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="policy-service-probe", daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self._timeout_s + 1)

    def check_now(self) -> None:
        for name, url in self._services.items():
            error = self._connect(url, self._timeout_s)
            result = ProbeResult(url, not error, error, self._clock())
            with self._lock:
                before = self._results[name]
                self._results[name] = result
            if before.reachable is not result.reachable:  # say it once per change, not every interval
                if result.reachable:
                    log.info("%s at %s answers", name, url)
                else:
                    log.warning("%s at %s unreachable: %s", name, url, error)

    def results(self) -> dict[str, ProbeResult]:
        with self._lock:
            return dict(self._results)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.check_now()
            self._stop.wait(self._interval_s)


def runner_health(settings: RunnerSettings, probes: Mapping[str, ProbeResult], token_problem: str = "") -> dict:
    """Pure: the `/healthz` fields beyond mode and open policies; `ready` is false while any problem holds."""
    problems = [settings.problem] if settings.problem else []
    services = {}
    for name, result in probes.items():
        services[name] = {"url": result.url, "reachable": result.reachable, "error": result.error,
                          "checked_at": result.checked_at}
        if result.reachable is False:
            problems.append(f"{name} at {result.url} unreachable: {result.error}")
    if token_problem:
        problems.append(token_problem)
    return {"ready": not problems and all(r.reachable for r in probes.values()), "problems": problems,
            "services": services}

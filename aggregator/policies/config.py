"""How policies are run: `PolicyConfig` and where its values come from.

Precedence, per value: an environment variable that is set and not empty wins
(the operators flip `POLICY_EXECUTION_MODE` / `POLICY_SYSTEM_EXECUTOR_ID` with a
`kubectl patch` of the controller's env, and a rollout restart must make that
take effect), then the cluster document's `config.policyExecutionMode` /
`config.policyExecutorId`, then the default (`local`, no executor).
An empty env value counts as unset: the guide's switch back to local sets
`POLICY_SYSTEM_EXECUTOR_ID=""`.

Our own knobs (limits, cache) use `AIOS_POLICY_*` variables.

`AIOS_POLICY_SIDECAR_URL` (set on the aggregator's container only) sends every
policy call to the pod's policy-runner container instead of running it here;
that container's own env then decides local or remote. Its token is the
runner's own, never the aggregator's (`AIOS_POLICY_SIDECAR_TOKEN_FILE`, a file
both containers of the pod share and either creates, re-read per call; or
`AIOS_POLICY_SIDECAR_TOKEN`): it grants policy calls only.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from aggregator.policies.errors import PolicyConfigError
from aggregator.policies.sandbox.plan import SandboxLimits, parse_uid_range

__all__ = ["EXECUTION_MODES", "PolicyConfig"]

EXECUTION_MODES = ("local", "remote")


@dataclass(frozen=True)
class PolicyConfig:
    mode: str = "local"
    executor_id: str = ""
    policy_db_url: str = ""
    executor_host_url: str = ""
    cache_dir: Path = Path(tempfile.gettempdir()) / f"aios-policies-{os.getuid()}"
    call_timeout_s: float = 30.0  # one eval/management call
    load_timeout_s: float = 60.0  # importing function.py and building the instance
    memory_limit_mb: int = 1024  # RLIMIT_AS of each worker process; 0 = no limit
    install_requirements: bool = True
    pip_timeout_s: float = 300.0
    download_timeout_s: float = 30.0  # whole download, and each socket operation
    max_download_bytes: int = 100 * 1024 * 1024
    max_extracted_bytes: int = 500 * 1024 * 1024
    max_result_bytes: int = 64 * 1024 * 1024
    http_timeout_s: float = 30.0  # policy DB and remote executor requests
    sidecar_url: str = ""  # non-empty: run every policy through the policy-runner sidecar
    sidecar_token: str = field(default="", repr=False)
    sidecar_token_file: str = ""
    sandbox_limits: SandboxLimits = field(default_factory=SandboxLimits)  # docs/policy-sandbox.md

    def __post_init__(self) -> None:
        # A relative cache folder is taken relative to where the process started, once:
        # workers run with their package folder as cwd, where it would mean something else.
        if not Path(self.cache_dir).is_absolute():
            object.__setattr__(self, "cache_dir", Path(self.cache_dir).expanduser().absolute())
        if self.mode not in EXECUTION_MODES:
            raise PolicyConfigError(
                f"policy execution mode {self.mode!r} is not one of {', '.join(EXECUTION_MODES)}"
            )
        for name in ("call_timeout_s", "load_timeout_s", "download_timeout_s", "http_timeout_s"):
            if getattr(self, name) <= 0:
                raise PolicyConfigError(f"{name} must be positive, got {getattr(self, name)}")

    def require_remote(self) -> None:
        """Remote mode needs an executor id and the executor's URL."""
        if not self.executor_id:
            raise PolicyConfigError(
                "remote policy execution needs an executor id "
                "(POLICY_SYSTEM_EXECUTOR_ID or config.policyExecutorId)"
            )
        if not self.executor_host_url:
            raise PolicyConfigError("remote policy execution needs POLICY_EXECUTOR_HOST_URL")

    def with_overrides(self, **changes) -> PolicyConfig:
        return replace(self, **changes)

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        cluster_config: Mapping | None = None,
        **overrides,
    ) -> PolicyConfig:
        """Build from the environment and the cluster document's `config` object."""
        env = os.environ if env is None else env
        cluster_config = cluster_config or {}

        def pick(env_name: str, config_key: str, default: str) -> str:
            value = env.get(env_name, "").strip()
            if value:
                return value
            from_cluster = cluster_config.get(config_key)
            if isinstance(from_cluster, str) and from_cluster.strip():
                return from_cluster.strip()
            return default

        mode = pick("POLICY_EXECUTION_MODE", "policyExecutionMode", "local").lower()
        if mode not in EXECUTION_MODES:
            where = "POLICY_EXECUTION_MODE" if env.get("POLICY_EXECUTION_MODE", "").strip() else "config.policyExecutionMode"
            raise PolicyConfigError(
                f"{where}={mode!r}: the policy execution mode must be one of {', '.join(EXECUTION_MODES)}"
            )
        values: dict = {
            "mode": mode,
            "executor_id": pick("POLICY_SYSTEM_EXECUTOR_ID", "policyExecutorId", ""),
            "policy_db_url": env.get("POLICY_DB_URL", "").strip().rstrip("/"),
            "executor_host_url": env.get("POLICY_EXECUTOR_HOST_URL", "").strip().rstrip("/"),
            "sidecar_url": env.get("AIOS_POLICY_SIDECAR_URL", "").strip().rstrip("/"),
            # the runner's own token (never the aggregator's): AIOS_POLICY_SIDECAR_TOKEN_FILE, shared in the pod
            "sidecar_token": env.get("AIOS_POLICY_SIDECAR_TOKEN", "").strip(),
            "sidecar_token_file": env.get("AIOS_POLICY_SIDECAR_TOKEN_FILE", "").strip(),
            "sandbox_limits": _sandbox_limits(env),
        }
        if env.get("AIOS_POLICY_CACHE_DIR", "").strip():
            values["cache_dir"] = Path(env["AIOS_POLICY_CACHE_DIR"].strip())
        numeric: dict[str, tuple[str, Callable[[str], float]]] = {
            "AIOS_POLICY_TIMEOUT_S": ("call_timeout_s", float),
            "AIOS_POLICY_LOAD_TIMEOUT_S": ("load_timeout_s", float),
            "AIOS_POLICY_MEMORY_MB": ("memory_limit_mb", int),
            "AIOS_POLICY_MAX_DOWNLOAD_MB": ("max_download_bytes", lambda v: int(float(v) * 1024 * 1024)),
        }
        for env_name, (field_name, parse) in numeric.items():
            raw = env.get(env_name, "").strip()
            if raw:
                try:
                    values[field_name] = parse(raw)
                except ValueError as exc:
                    raise PolicyConfigError(f"{env_name}={raw!r} is not a number") from exc
        raw_install = env.get("AIOS_POLICY_INSTALL_REQUIREMENTS", "").strip().lower()
        if raw_install:
            if raw_install not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise PolicyConfigError(
                    f"AIOS_POLICY_INSTALL_REQUIREMENTS={raw_install!r} is not a boolean (1/0, true/false)"
                )
            values["install_requirements"] = raw_install in ("1", "true", "yes", "on")
        values.update(overrides)
        return cls(**values)


_SANDBOX_NUMBERS = {
    "AIOS_POLICY_CPU_S": "cpu_s",
    "AIOS_POLICY_MAX_PROCESSES": "max_processes",
    "AIOS_POLICY_MAX_OPEN_FILES": "max_open_files",
    "AIOS_POLICY_MAX_FILE_MB": "max_file_mb",
}


def _sandbox_limits(env: Mapping[str, str]) -> SandboxLimits:
    """`AIOS_POLICY_CPU_S`, `_MAX_PROCESSES`, `_MAX_OPEN_FILES`, `_MAX_FILE_MB` (0: no limit),
    `AIOS_POLICY_ALLOW_NETWORK` (comma-separated policy URIs/locations, glob patterns, or *),
    `AIOS_POLICY_WORKER_UIDS` (FIRST-LAST, or off)."""
    values: dict = {}
    for name, field_name in _SANDBOX_NUMBERS.items():
        raw = env.get(name, "").strip()
        if raw:
            try:
                values[field_name] = int(raw)
            except ValueError as exc:
                raise PolicyConfigError(f"{name}={raw!r} is not a whole number") from exc
            if values[field_name] < 0:
                raise PolicyConfigError(f"{name}={raw!r} must be 0 (no limit) or more")
    allowed = [item.strip() for item in env.get("AIOS_POLICY_ALLOW_NETWORK", "").split(",") if item.strip()]
    if allowed:
        values["network_allowed"] = tuple(allowed)
    raw_uids = env.get("AIOS_POLICY_WORKER_UIDS", "").strip()
    if raw_uids:
        try:
            values["worker_uids"] = parse_uid_range(raw_uids)
        except ValueError as exc:
            raise PolicyConfigError(str(exc)) from exc
    return SandboxLimits(**values)

"""The quarantine's settings, from the environment (docs/gpu-health.md).

| variable | default | meaning |
|---|---|---|
| `AIOS_QUARANTINE` | `dry-run` | `off`, `dry-run` (record and report, touch nothing), `taint`, `cordon` (taint and cordon) |
| `AIOS_QUARANTINE_MAX_NODES` | 5 | never more nodes quarantined at once |
| `AIOS_QUARANTINE_MAX_PERCENT` | 25 | never more than this share of the cluster (rounded down; at least one while above 0) |
| `AIOS_QUARANTINE_MAX_CYCLES_PER_DAY` | 3 | quarantines of one node within 24 h after which it is held, not released |
| `AIOS_QUARANTINE_TAINT_EFFECT` | `NoSchedule` | or `NoExecute` (evicts the pods that do not tolerate it) |
| `AIOS_QUARANTINE_RECHECK_S` | 300 | how long a refusal by the `cluster_mgmt` pre-check stands before it is asked again |
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["MODES", "TAINT_EFFECTS", "TAINT_KEY", "QuarantineConfig", "QuarantineConfigError"]

MODES = ("off", "dry-run", "taint", "cordon")
TAINT_EFFECTS = ("NoSchedule", "NoExecute")
TAINT_KEY = "gpu.aios/unhealthy"


class QuarantineConfigError(ValueError):
    """A quarantine setting is not usable; the message names the variable."""


@dataclass(frozen=True)
class QuarantineConfig:
    mode: str = "dry-run"
    max_nodes: int = 5
    max_percent: float = 25.0
    max_cycles_per_day: int = 3
    taint_effect: str = "NoSchedule"
    recheck_s: float = 300.0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise QuarantineConfigError(f"AIOS_QUARANTINE={self.mode!r}: expected one of {', '.join(MODES)}")
        if self.taint_effect not in TAINT_EFFECTS:
            raise QuarantineConfigError(
                f"AIOS_QUARANTINE_TAINT_EFFECT={self.taint_effect!r}: expected one of {', '.join(TAINT_EFFECTS)}"
            )
        if self.max_nodes < 0:
            raise QuarantineConfigError(f"AIOS_QUARANTINE_MAX_NODES={self.max_nodes}: must be 0 or more")
        if not 0 <= self.max_percent <= 100:
            raise QuarantineConfigError(f"AIOS_QUARANTINE_MAX_PERCENT={self.max_percent:g}: must be 0..100")
        if self.max_cycles_per_day < 1:
            raise QuarantineConfigError(f"AIOS_QUARANTINE_MAX_CYCLES_PER_DAY={self.max_cycles_per_day}: must be 1 or more")
        if self.recheck_s <= 0:
            raise QuarantineConfigError(f"AIOS_QUARANTINE_RECHECK_S={self.recheck_s:g}: must be above 0")

    @property
    def writes(self) -> bool:
        """Whether the mode touches the cluster (taint or cordon)."""
        return self.mode in ("taint", "cordon")

    @property
    def active(self) -> bool:
        return self.mode != "off"

    def budget(self, cluster_nodes: int) -> int:
        """How many nodes may be quarantined at once in a cluster of `cluster_nodes` (pure)."""
        by_share = math.floor(cluster_nodes * self.max_percent / 100.0 + 1e-9)
        if self.max_percent > 0 and cluster_nodes > 0:
            # A small cluster can still set one broken node aside: rounding 25 % of 3 down to
            # none would leave a GPU that fell off the bus schedulable forever.
            by_share = max(1, by_share)
        return max(0, min(self.max_nodes, by_share))

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> QuarantineConfig:
        def raw(name: str) -> str:
            return str(env.get(name, "") or "").strip()

        def number(name: str, default, kind):
            text = raw(name)
            if not text:
                return default
            try:
                value = kind(text)
            except ValueError as exc:
                raise QuarantineConfigError(f"{name}={text!r}: expected {'an integer' if kind is int else 'a number'}") from exc
            if isinstance(value, float) and not math.isfinite(value):
                raise QuarantineConfigError(f"{name}={text!r}: expected a finite number")
            return value

        return cls(
            mode=raw("AIOS_QUARANTINE") or "dry-run",
            max_nodes=number("AIOS_QUARANTINE_MAX_NODES", 5, int),
            max_percent=number("AIOS_QUARANTINE_MAX_PERCENT", 25.0, float),
            max_cycles_per_day=number("AIOS_QUARANTINE_MAX_CYCLES_PER_DAY", 3, int),
            taint_effect=raw("AIOS_QUARANTINE_TAINT_EFFECT") or "NoSchedule",
            recheck_s=number("AIOS_QUARANTINE_RECHECK_S", 300.0, float),
        )

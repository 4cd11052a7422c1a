"""How GPU problems read as Node conditions and taints: one wording for the agent and the aggregator.

The agent writes one Node condition per `ProblemKind` (`ProblemKind.condition_type`:
GPUXidCritical, GPULost, GPUMemoryErrors, GPUUnresponsive, GPUThermalThrottling);
the aggregator's quarantine taints a node `gpu.aios/unhealthy=<reason>` with the
reason of its worst problem. Both take their words from here (docs/gpu-health.md
lists them):

- `problem_reason(kind, problems)`: the CamelCase reason of a condition that is
  True, from its worst problem (the most demanding recovery): e.g.
  `XidNeedsNodeReboot`, `GpuLost`, `UncorrectableEccErrors`, `NvmlCallHung`;
- `healthy_reason(kind)` / `cleared_reason(kind)`: False from the start, and
  False again after a problem ended, saying why (`GpuAnswersAgain`, ...);
  `ACKNOWLEDGED_REASON` when an operator acknowledged it;
- `condition_message(problems)`: every problem's one line (GPU index and UUID,
  the XID or counter, the recovery action), worst first.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from proto.health.gpu_rule import GpuProblem, ProblemCause, ProblemKind
from proto.health.xid_catalog import Resolution

__all__ = [
    "ACKNOWLEDGED_REASON",
    "CONDITION_TYPES",
    "cleared_reason",
    "condition_message",
    "healthy_reason",
    "kind_of_condition",
    "problem_reason",
    "severity",
    "worst_first",
]

CONDITION_TYPES: tuple[str, ...] = tuple(kind.condition_type for kind in ProblemKind)
ACKNOWLEDGED_REASON = "AcknowledgedByOperator"

_HEALTHY = {
    ProblemKind.XID_CRITICAL: "NoCriticalXid",
    ProblemKind.LOST: "AllGpusPresent",
    ProblemKind.MEMORY_ERRORS: "NoMemoryErrors",
    ProblemKind.UNRESPONSIVE: "AllGpusResponsive",
    ProblemKind.THERMAL_THROTTLING: "NoThermalThrottling",
}
_CLEARED = {
    ProblemKind.XID_CRITICAL: "NoRecentCriticalXid",  # the event window passed, the driver no longer asks
    ProblemKind.LOST: "GpuAnswersAgain",
    ProblemKind.MEMORY_ERRORS: "MemoryErrorsStopped",  # counters reset (GPU reset) or no new event
    ProblemKind.UNRESPONSIVE: "GpuRespondsAgain",
    ProblemKind.THERMAL_THROTTLING: "ThrottlingEnded",
}
_ACTION_WORDS = {
    Resolution.NONE: "NoAction",
    Resolution.RESTART_APPLICATION: "AppRestart",
    Resolution.RESET_GPU: "GpuReset",
    Resolution.REBOOT_NODE: "NodeReboot",
    Resolution.CONTACT_SUPPORT: "Support",
}
_ORDER = {resolution: rank for rank, resolution in enumerate(Resolution)}  # least to most demanding


def kind_of_condition(condition_type: str) -> ProblemKind:
    for kind in ProblemKind:
        if kind.condition_type == condition_type:
            return kind
    raise KeyError(condition_type)


def severity(problem: GpuProblem) -> int:
    """How demanding the problem's recovery is (higher: more); a lost GPU ranks with a reboot."""
    return _ORDER[problem.resolution]


def worst_first(problems: Iterable[GpuProblem]) -> list[GpuProblem]:
    """Most demanding recovery first, then by GPU index and label (a stable order: stable messages)."""
    return sorted(problems, key=lambda p: (-severity(p), -1 if p.gpu_index is None else p.gpu_index, p.label))


def problem_reason(kind: ProblemKind, problems: Sequence[GpuProblem]) -> str:
    """The reason of a True condition of `kind`, from its worst problem."""
    if not problems:
        raise ValueError("problem_reason needs at least one problem")
    worst = worst_first(problems)[0]
    if kind is ProblemKind.XID_CRITICAL:
        prefix = "DriverAsks" if worst.cause is ProblemCause.RECOVERY_ACTION else "XidNeeds"
        return prefix + _ACTION_WORDS[worst.resolution]
    if kind is ProblemKind.LOST:
        return "GpuLost"
    if kind is ProblemKind.MEMORY_ERRORS:
        return {
            ProblemCause.ROW_REMAP_FAILURE: "RowRemapFailed",
            ProblemCause.ROW_REMAP_PENDING: "RowRemapPending",
            ProblemCause.RETIRED_PAGES_PENDING: "PageRetirementPending",
        }.get(worst.cause, "UncorrectableEccErrors")
    if kind is ProblemKind.UNRESPONSIVE:
        return "NvmlCallHung" if "did not return" in worst.detail else "NvmlReadFailed"
    return "ThermalSlowdown"


def healthy_reason(kind: ProblemKind) -> str:
    return _HEALTHY[kind]


def cleared_reason(kind: ProblemKind) -> str:
    return _CLEARED[kind]


def condition_message(problems: Iterable[GpuProblem]) -> str:
    """Each problem's line, worst first, joined with " | " (a line holds "; " itself)."""
    return " | ".join(p.message for p in worst_first(problems))

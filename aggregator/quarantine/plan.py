"""What the quarantine should do now: pure decisions from the nodes' health and what is in force.

Inputs: each node's `NodeHealth` (from the shared health rule, plus nodes the
stability policy named), the nodes holding a quarantine slot now (quarantined,
would-be quarantined in dry-run, or held), how many times each node was
quarantined within the last 24 h, the budget, and the refusals or failures
that still stand. Output: one `Decision` per node that needs one.

- A node that needs quarantine and holds a slot keeps it (`keep`; `retaint`
  when its reason changed, so the taint's value stays true).
- One that needs it and holds none gets a slot while the budget has one
  (`quarantine`), the most demanding recovery first, then the longest-standing
  problem, then by node id; the rest are `over_budget`. A slot freed by a
  release in this round is only given out in the next one, so the count never
  goes over the budget, even for a moment.
- One that holds a slot and no longer needs it is `release`d, unless it was
  quarantined `max_cycles` times within 24 h: then it is `hold`: a flapping
  node stays quarantined and is reported rather than toggled.
- A decision the `cluster_mgmt` pre-check refused, or the API failed, stands
  until its time is up (`Blocked`): `refused` / `failed`, nothing asked again.
- Anything else the store remembers about a healthy node is `clear`ed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["OCCUPYING_STATES", "Blocked", "Decision", "NodeHealth", "plan"]

# states that hold one of the budget's slots
OCCUPYING_STATES = frozenset({"quarantined", "would_quarantine", "held"})


@dataclass(frozen=True)
class NodeHealth:
    node_id: str
    needs_quarantine: bool
    reason: str = ""  # the taint's value, e.g. "XidNeedsNodeReboot", "GpuLost", "PolicyNamed"
    detail: str = ""  # the problems, for people
    gpus: tuple[int, ...] = ()
    severity: int = 0  # higher: more demanding recovery
    since: float | None = None  # when the oldest of its problems was seen


@dataclass(frozen=True)
class Blocked:
    """A quarantine or release that must not be tried again before `until`."""

    action: str  # "quarantine" or "release"
    reason: str  # the NodeHealth.reason it was decided for (a new reason asks again)
    until: float
    state: str  # "refused" or "failed"


@dataclass(frozen=True)
class Decision:
    node_id: str
    action: str  # keep, retaint, quarantine, over_budget, release, hold, refused, failed, clear
    health: NodeHealth | None = None


def _order(health: NodeHealth) -> tuple:
    return (-health.severity, math.inf if health.since is None else health.since, health.node_id)


def plan(
    healths: Mapping[str, NodeHealth],
    occupying: Mapping[str, str],  # node id -> its state (one of OCCUPYING_STATES)
    reasons: Mapping[str, str],  # node id -> the reason in force for an occupying node
    cycles_today: Mapping[str, int],
    budget: int,
    max_cycles: int,
    blocked: Mapping[str, Blocked],
    known: frozenset[str] | set[str],  # every node id the store has a record of
    now: float,
) -> list[Decision]:
    decisions: list[Decision] = []
    free = budget - len(occupying)

    def standing(node_id: str, action: str, reason: str) -> Blocked | None:
        block = blocked.get(node_id)
        if block is not None and block.action == action and block.reason == reason and now < block.until:
            return block
        return None

    needing = sorted((h for h in healths.values() if h.needs_quarantine), key=_order)
    for health in needing:
        if health.node_id in occupying:
            same = reasons.get(health.node_id) == health.reason
            decisions.append(Decision(health.node_id, "keep" if same else "retaint", health))
            continue
        block = standing(health.node_id, "quarantine", health.reason)
        if block is not None:
            decisions.append(Decision(health.node_id, block.state, health))
        elif free > 0:
            decisions.append(Decision(health.node_id, "quarantine", health))
            free -= 1
        else:
            decisions.append(Decision(health.node_id, "over_budget", health))
    for node_id in sorted(occupying):
        now_health = healths.get(node_id)
        if now_health is not None and now_health.needs_quarantine:
            continue
        if cycles_today.get(node_id, 0) >= max_cycles and occupying[node_id] != "would_quarantine":
            decisions.append(Decision(node_id, "hold", now_health))
            continue
        block = standing(node_id, "release", "")
        decisions.append(Decision(node_id, block.state if block is not None else "release", now_health))
    decided = {d.node_id for d in decisions}
    for node_id in sorted(set(known) - decided):
        decisions.append(Decision(node_id, "clear", healths.get(node_id)))
    return decisions

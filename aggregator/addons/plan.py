"""What an install would change, object by object: pure comparison of the live object with the
API server's dry-run answer to our apply.

The API server computes the result of a server-side apply itself (defaults, fields we stop
setting, other managers' fields), so the plan compares two answers of the server rather than
guessing: `create` when there is no live object, `unchanged` when the dry run returns what is
there, `configure` (with a unified diff) otherwise. Fields only the server writes (status,
resourceVersion, managedFields, ...) are left out of the comparison.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import yaml

__all__ = ["APPLY_ORDER", "Change", "apply_order", "comparable", "plan_change"]

SERVER_METADATA = ("resourceVersion", "managedFields", "generation", "uid", "creationTimestamp", "selfLink")
# dependencies first: the namespace, who may read, settings, storage, addresses, then workloads
APPLY_ORDER = ("Namespace", "Role", "RoleBinding", "ConfigMap", "PersistentVolumeClaim", "Service", "StatefulSet",
               "Deployment")

Action = Literal["create", "configure", "unchanged"]


@dataclass(frozen=True)
class Change:
    obj: dict  # what we apply
    action: Action
    diff: str = ""  # `configure`: unified diff from live to after-apply

    @property
    def label(self) -> str:
        return f"{str(self.obj['kind']).lower()}/{self.obj['metadata']['name']}"


def apply_order(obj: Mapping[str, Any]) -> int:
    kind = obj.get("kind")
    return APPLY_ORDER.index(kind) if kind in APPLY_ORDER else len(APPLY_ORDER)


def comparable(obj: Mapping[str, Any]) -> dict:
    """`obj` without what only the server writes."""
    result = copy.deepcopy(dict(obj))
    result.pop("status", None)
    metadata = result.get("metadata")
    if isinstance(metadata, dict):
        for key in SERVER_METADATA:
            metadata.pop(key, None)
    return result


def _yaml_lines(obj: Mapping[str, Any]) -> list[str]:
    return yaml.safe_dump(obj, sort_keys=True, default_flow_style=False).splitlines(keepends=True)


def plan_change(rendered: Mapping[str, Any], live: Mapping[str, Any] | None,
                predicted: Mapping[str, Any] | None) -> Change:
    """`predicted`: the dry-run apply's answer (None when there is no live object)."""
    if live is None or predicted is None:
        return Change(dict(rendered), "create")
    before, after = comparable(live), comparable(predicted)
    if before == after:
        return Change(dict(rendered), "unchanged")
    diff = "".join(difflib.unified_diff(_yaml_lines(before), _yaml_lines(after), "live", "after install"))
    return Change(dict(rendered), "configure", diff)

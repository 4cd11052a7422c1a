"""Installing, watching and removing an add-on's objects in a cluster (through `KubeObjects`).

- `plan`: for each rendered object, `create`, `unchanged` or `configure` (see `plan.py`); the
  namespace is created when missing (and never deleted: other things may live in it).
- `apply`: server-side apply of what the plan says changes, nothing else; so a second install
  with nothing changed sends no write.
- `status` / `wait_ready`: the add-on's objects found by its label, with pods and events for the
  ones not ready; `wait_ready` polls until all are ready or the time is up, and reports each
  change of state as it happens.
- `removal` / `remove`: exactly the objects carrying the add-on's label; claims (data) only with
  `delete_data`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aggregator.addons.catalogue import ADDON_LABEL, PART_OF_LABEL, AddOn
from aggregator.addons.kube import KubeObjects
from aggregator.addons.plan import Change, apply_order, plan_change
from aggregator.addons.status import AddOnStatus, addon_status

__all__ = ["OWNED_KINDS", "AddOnLifecycle", "Removal", "namespace_object"]

# the kinds an add-on's objects have (StatefulSets' claims included), in the order remove deletes them
OWNED_KINDS = ("Deployment", "StatefulSet", "Service", "ConfigMap", "RoleBinding", "Role", "PersistentVolumeClaim")


def namespace_object(namespace: str) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": namespace, "labels": {PART_OF_LABEL[0]: PART_OF_LABEL[1]}}}


@dataclass(frozen=True)
class Removal:
    delete: tuple[dict, ...]
    keep: tuple[dict, ...]  # the data volumes, without delete_data


class AddOnLifecycle:
    def __init__(self, kube: KubeObjects, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._kube = kube
        self._clock = clock
        self._sleep = sleep

    # ------------------------------------------------------------ install

    def plan(self, objects: Sequence[dict], namespace: str) -> list[Change]:
        changes: list[Change] = []
        namespace_exists = self._kube.get("Namespace", None, namespace) is not None
        if not namespace_exists:
            changes.append(Change(namespace_object(namespace), "create"))
        for obj in sorted(objects, key=apply_order):
            meta = obj["metadata"]
            live = self._kube.get(obj["kind"], meta.get("namespace"), meta["name"]) if namespace_exists else None
            predicted = self._kube.apply(obj, dry_run=True) if live is not None else None
            changes.append(plan_change(obj, live, predicted))
        return changes

    def apply(self, changes: Sequence[Change], on_applied: Callable[[Change], None] | None = None) -> int:
        """Apply every change that is not `unchanged`, in order; returns how many were applied."""
        applied = 0
        for change in changes:
            if change.action == "unchanged":
                continue
            self._kube.apply(change.obj)
            applied += 1
            if on_applied is not None:
                on_applied(change)
        return applied

    # ------------------------------------------------------------ status

    def _owned(self, item: AddOn, namespace: str, kinds: Sequence[str] = OWNED_KINDS) -> list[dict]:
        found: list[dict] = []
        for kind in kinds:
            found.extend(self._kube.list(kind, namespace, {ADDON_LABEL: item.name}))
        return found

    def status(self, item: AddOn, namespace: str, *, details: bool = True,
               kinds: Sequence[str] = OWNED_KINDS) -> AddOnStatus:
        """With `details`, pods and events explain what is not ready (one more list each)."""
        objects = self._owned(item, namespace, kinds)
        first = addon_status(item.name, namespace, objects)
        if not details or first.ready or not first.installed:
            return first
        pods = self._kube.list("Pod", namespace, {ADDON_LABEL: item.name})
        events = self._kube.list("Event", namespace)
        return addon_status(item.name, namespace, objects, pods, events)

    def wait_ready(self, item: AddOn, namespace: str, *, timeout_s: float, poll_s: float = 2.0,
                   on_progress: Callable[[AddOnStatus, list[str]], None] | None = None) -> AddOnStatus:
        """Poll until ready or `timeout_s`; `on_progress(status, changed_lines)` on every change of state."""
        deadline = self._clock() + timeout_s
        shown: dict[str, str] = {}
        while True:
            current = self.status(item, namespace)
            changed = []
            for obj in current.objects:
                line = f"{obj.line()}: {obj.state}" + "".join(f"\n    {p}" for p in obj.problems)
                if shown.get(obj.line()) != line:
                    shown[obj.line()] = line
                    changed.append(line)
            if changed and on_progress is not None:
                on_progress(current, changed)
            if current.ready or self._clock() >= deadline:
                return current
            self._sleep(min(poll_s, max(0.0, deadline - self._clock())))

    # ------------------------------------------------------------ remove

    def removal(self, item: AddOn, namespace: str, *, delete_data: bool) -> Removal:
        owned = self._owned(item, namespace)
        keep = tuple(o for o in owned if o["kind"] == "PersistentVolumeClaim" and not delete_data)
        return Removal(tuple(o for o in owned if o not in keep), keep)

    def remove(self, removal: Removal, on_deleted: Callable[[dict, bool], None] | None = None) -> int:
        deleted = 0
        for obj in removal.delete:
            meta = obj["metadata"]
            gone_now = self._kube.delete(obj["kind"], meta.get("namespace"), meta["name"])
            deleted += int(gone_now)
            if on_deleted is not None:
                on_deleted(obj, gone_now)
        return deleted

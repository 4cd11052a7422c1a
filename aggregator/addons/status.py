"""Is an add-on ready, and if not, why: pure functions over the objects the API server returned.

A Deployment is ready when its controller has seen the current spec (`observedGeneration`) and
all replicas are updated and available; a StatefulSet when all replicas are updated and ready;
a PersistentVolumeClaim when it is Bound. Other objects are ready by existing. For what is not
ready the reasons come from where Kubernetes puts them: the workload's conditions, its pods'
container states (ImagePullBackOff, CreateContainerConfigError, ...) and scheduling condition,
and the Events about the workload, its ReplicaSets and pods, or the claim (a pending PVC's
"waiting for a volume to be created" is a Normal event, so claims take any event; workloads take
Warnings). Newest first, one line per reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["AddOnStatus", "ObjectStatus", "addon_status", "object_status"]

MAX_PROBLEMS = 3


@dataclass(frozen=True)
class ObjectStatus:
    kind: str
    name: str
    ready: bool
    state: str  # "1/1 ready", "Bound", "Pending", "present"
    problems: tuple[str, ...] = ()

    def line(self) -> str:
        return f"{self.kind.lower()}/{self.name}"

    def to_json(self) -> dict:
        return {"kind": self.kind, "name": self.name, "ready": self.ready, "state": self.state,
                "problems": list(self.problems)}


@dataclass(frozen=True)
class AddOnStatus:
    name: str
    namespace: str
    objects: tuple[ObjectStatus, ...]

    @property
    def installed(self) -> bool:
        return bool(self.objects)

    @property
    def ready(self) -> bool:
        return self.installed and all(o.ready for o in self.objects)

    def to_json(self) -> dict:
        return {"name": self.name, "namespace": self.namespace, "installed": self.installed, "ready": self.ready,
                "objects": [o.to_json() for o in self.objects]}


def _int(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _conditions(obj: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {str(c.get("type")): c for c in ((obj.get("status") or {}).get("conditions") or []) if isinstance(c, Mapping)}


def _condition_problems(obj: Mapping[str, Any]) -> list[str]:
    found = []
    for kind, condition in _conditions(obj).items():
        bad = (condition.get("status") == "True") if kind == "ReplicaFailure" else (condition.get("status") == "False")
        if bad and kind in ("Available", "Progressing", "ReplicaFailure"):
            message = condition.get("message") or f"{kind} is {condition.get('status')}"
            found.append(f"{condition.get('reason') or kind}: {message}")
    return found


def _workload_state(obj: Mapping[str, Any]) -> tuple[bool, str]:
    spec, status, metadata = obj.get("spec") or {}, obj.get("status") or {}, obj.get("metadata") or {}
    wanted = _int(spec.get("replicas"), 1)
    ready = _int(status.get("readyReplicas"))
    updated = _int(status.get("updatedReplicas"))
    observed = _int(status.get("observedGeneration"), -1)
    generation = _int(metadata.get("generation"), 0)
    seen = observed >= generation
    if obj.get("kind") == "Deployment":
        available = _int(status.get("availableReplicas"))
        ok = seen and updated >= wanted and available >= wanted and ready >= wanted
    else:
        ok = seen and updated >= wanted and ready >= wanted
    state = f"{min(ready, wanted) if ok else ready}/{wanted} ready"
    if not seen:
        state += " (update not yet seen by its controller)"
    elif updated < wanted:
        state += f", {updated} updated"
    return ok, state


def _selector_labels(obj: Mapping[str, Any]) -> dict[str, str]:
    return dict(((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {})


def _pod_problems(pod: Mapping[str, Any]) -> list[str]:
    status = pod.get("status") or {}
    name = (pod.get("metadata") or {}).get("name")
    found = []
    for container in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        waiting = (container.get("state") or {}).get("waiting") or {}
        terminated = (container.get("lastState") or {}).get("terminated") or {}
        if waiting.get("reason") and waiting.get("reason") not in ("ContainerCreating", "PodInitializing"):
            detail = waiting.get("message") or (f"last exit {terminated.get('exitCode')} ({terminated.get('reason')})"
                                                if terminated else "")
            found.append(f"pod {name} container {container.get('name')}: {waiting['reason']}" + (f": {detail}" if detail else ""))
    scheduled = _conditions(pod).get("PodScheduled")
    if scheduled and scheduled.get("status") == "False":
        found.append(f"pod {name}: {scheduled.get('reason') or 'Unschedulable'}: {scheduled.get('message') or ''}".rstrip(": "))
    return found


def _event_time(event: Mapping[str, Any]) -> str:
    created = (event.get("metadata") or {}).get("creationTimestamp")
    return str(event.get("lastTimestamp") or event.get("eventTime") or created or "")


def _event_problems(events: Iterable[Mapping[str, Any]], names: set[str], prefixes: Sequence[str], *,
                    warnings_only: bool) -> list[str]:
    chosen = []
    for event in events:
        involved = event.get("involvedObject") or {}
        name = str(involved.get("name") or "")
        if not (name in names or any(name.startswith(p) for p in prefixes)):
            continue
        if warnings_only and event.get("type") != "Warning":
            continue
        chosen.append(event)
    chosen.sort(key=_event_time, reverse=True)
    found, reasons = [], set()
    for event in chosen:
        involved = event.get("involvedObject") or {}
        key = (involved.get("name"), event.get("reason"))
        if key in reasons:
            continue
        reasons.add(key)
        count = _int(event.get("count"), 1)
        times = f" (x{count})" if count > 1 else ""
        found.append(f"event on {str(involved.get('kind') or '').lower()}/{involved.get('name')}: "
                     f"{event.get('reason')}: {event.get('message')}{times}")
    return found


def object_status(obj: Mapping[str, Any], pods: Sequence[Mapping[str, Any]] = (),
                  events: Sequence[Mapping[str, Any]] = ()) -> ObjectStatus:
    kind = str(obj.get("kind"))
    name = str((obj.get("metadata") or {}).get("name"))
    if kind in ("Deployment", "StatefulSet"):
        ready, state = _workload_state(obj)
        if ready:
            return ObjectStatus(kind, name, True, state)
        selector = _selector_labels(obj)
        own_pods = [p for p in pods if selector and all(((p.get("metadata") or {}).get("labels") or {}).get(k) == v
                                                         for k, v in selector.items())]
        pod_names = {str((p.get("metadata") or {}).get("name")) for p in own_pods}
        problems = _condition_problems(obj)
        for pod in own_pods:
            problems.extend(_pod_problems(pod))
        problems.extend(_event_problems(events, {name} | pod_names, (f"{name}-",), warnings_only=True))
        return ObjectStatus(kind, name, False, state, tuple(problems[:MAX_PROBLEMS]))
    if kind == "PersistentVolumeClaim":
        phase = str((obj.get("status") or {}).get("phase") or "Pending")
        if phase == "Bound":
            return ObjectStatus(kind, name, True, "Bound")
        return ObjectStatus(kind, name, False, phase,
                            tuple(_event_problems(events, {name}, (), warnings_only=False)[:MAX_PROBLEMS]))
    return ObjectStatus(kind, name, True, "present")


_ORDER = ("Deployment", "StatefulSet", "PersistentVolumeClaim", "Service", "ConfigMap", "Role", "RoleBinding")


def addon_status(name: str, namespace: str, objects: Iterable[Mapping[str, Any]],
                 pods: Sequence[Mapping[str, Any]] = (), events: Sequence[Mapping[str, Any]] = ()) -> AddOnStatus:
    """The add-on's state from its objects (any kinds), its pods and the namespace's events."""
    states = [object_status(obj, pods, events) for obj in objects]
    states.sort(key=lambda s: (_ORDER.index(s.kind) if s.kind in _ORDER else len(_ORDER), s.name))
    return AddOnStatus(name, namespace, tuple(states))

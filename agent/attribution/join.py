"""Naming the owners of GPU processes: cgroups meet the kubelet's allocations. Pure.

A process's cgroup tells its pod's UID and its container's runtime id; the
kubelet's pod-resources API tells which pod (namespace, name) and container
(name) holds each device, but not their UIDs or ids. The two meet on the
devices, by this rule:

- a pod UID is named pod P when P is the only pod holding every device the
  UID's processes run on (each a whole GPU or a MIG device), and no other
  UID is named P the same way;
- within it, a container id is named container C when C is the only one of
  P's containers holding every device that container's processes run on,
  and no other container id of the pod is named C the same way.

Otherwise the owner keeps its UID and container id with empty names: a pod
that runs on a GPU it was not allocated (a privileged pod, or one with
NVIDIA_VISIBLE_DEVICES=all), and pods sharing one time-sliced GPU that
nothing else tells apart. Guessing would put one team's process under
another team's pod.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from agent.attribution.cgroup import CgroupOwner
from proto.telemetry.v1.readings import DeviceAllocation, ProcessOwner

__all__ = ["holders_by_device", "name_owners"]

PodKey = tuple[str, str]  # (namespace, pod)


def holders_by_device(allocations: Iterable[DeviceAllocation]) -> dict[str, list[DeviceAllocation]]:
    """Allocations by device key: the MIG UUID for a MIG device, else the GPU UUID."""
    holders: dict[str, list[DeviceAllocation]] = {}
    for allocation in allocations:
        key = allocation.mig_uuid or allocation.gpu_uuid
        if key:
            holders.setdefault(key, []).append(allocation)
    return holders


def name_owners(
    pids_by_device: Mapping[str, Sequence[int]],
    cgroups: Mapping[int, CgroupOwner | None],
    holders: Mapping[str, Sequence[DeviceAllocation]],
) -> tuple[ProcessOwner, ...]:
    """One `ProcessOwner` per owner of the processes, in a stable order.

    `pids_by_device`: device key (as `holders_by_device`) -> pids on it;
    `cgroups`: pid -> what its cgroup says, None when it could not be read.
    """
    devices_of_uid: dict[str, set[str]] = {}
    devices_of_container: dict[tuple[str, str], set[str]] = {}
    groups: dict[tuple, list[int]] = {}
    for device, pids in pids_by_device.items():
        for pid in pids:
            owner = cgroups.get(pid)
            if owner is None:
                groups.setdefault(("unknown", "", "", ""), []).append(pid)
                continue
            groups.setdefault((owner.scope, owner.pod_uid, owner.container_id, owner.runtime), []).append(pid)
            if owner.scope == "pod":
                devices_of_uid.setdefault(owner.pod_uid, set()).add(device)
                devices_of_container.setdefault((owner.pod_uid, owner.container_id), set()).add(device)

    pod_of_uid = _pods_of_uids(devices_of_uid, holders)
    container_of: dict[tuple[str, str], str] = {}
    for (pod_uid, container_id), devices in devices_of_container.items():
        named = pod_of_uid.get(pod_uid)
        if named is not None:
            container_of[(pod_uid, container_id)] = _container_name(named, devices, holders)
    claimed: dict[tuple[str, str], int] = {}
    for (pod_uid, _), name in container_of.items():
        claimed[(pod_uid, name)] = claimed.get((pod_uid, name), 0) + 1
    found = []
    for (scope, pod_uid, container_id, runtime), pids in groups.items():
        namespace = pod = container = ""
        named = pod_of_uid.get(pod_uid) if scope == "pod" else None
        if named is not None:
            namespace, pod = named
            container = container_of.get((pod_uid, container_id), "")
            if container and claimed[(pod_uid, container)] > 1:
                container = ""  # two running containers cannot both be the one holding it
        found.append(
            ProcessOwner(
                scope=scope,
                pids=tuple(sorted(set(pids))),
                namespace=namespace,
                pod=pod,
                container=container,
                pod_uid=pod_uid,
                container_id=container_id,
                runtime=runtime,
            )
        )
    found.sort(key=lambda o: (o.scope, o.namespace, o.pod, o.container, o.pod_uid, o.container_id, o.pids))
    return tuple(found)


def _pods_holding(devices: set[str], holders: Mapping[str, Sequence[DeviceAllocation]]) -> set[PodKey]:
    common: set[PodKey] | None = None
    for device in devices:
        pods = {(a.namespace, a.pod) for a in holders.get(device, ())}
        common = pods if common is None else common & pods
        if not common:
            return set()
    return common or set()


def _pods_of_uids(
    devices_of_uid: Mapping[str, set[str]], holders: Mapping[str, Sequence[DeviceAllocation]]
) -> dict[str, PodKey]:
    candidates: dict[str, PodKey] = {}
    for uid, devices in devices_of_uid.items():
        pods = _pods_holding(devices, holders)
        if len(pods) == 1:
            candidates[uid] = next(iter(pods))
    claims: dict[PodKey, int] = {}
    for pod in candidates.values():
        claims[pod] = claims.get(pod, 0) + 1
    return {uid: pod for uid, pod in candidates.items() if claims[pod] == 1}


def _container_name(pod: PodKey, devices: set[str], holders: Mapping[str, Sequence[DeviceAllocation]]) -> str:
    common: set[str] | None = None
    for device in devices:
        names = {a.container for a in holders.get(device, ()) if (a.namespace, a.pod) == pod}
        common = names if common is None else common & names
    if common is not None and len(common) == 1:
        return next(iter(common))
    return ""

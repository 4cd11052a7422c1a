"""Which container and pod a process is in, from the text of its `/proc/<pid>/cgroup`.

Pure functions; reading the file is `agent.attribution.owners`'s job.

The file has one `hierarchy-id:controllers:path` line per hierarchy: many
lines under cgroup v1, the single `0::<path>` line under cgroup v2 (hybrid
hosts have both). The kubelet names a pod's cgroup after its UID and the
runtime names the container's after its 64-hex id, in one of two layouts,
depending on the cgroup driver:

  cgroupfs  /kubepods/burstable/pod<uid>/<id>                  containerd, Docker
            /kubepods/pod<uid>/crio-<id>                        CRI-O (Guaranteed: no QoS level)
  systemd   /kubepods.slice/kubepods-besteffort.slice/
            kubepods-besteffort-pod<uid with _>.slice/cri-containerd-<id>.scope
            .../crio-<id>.scope, .../docker-<id>.scope
            .../kubepods-burstable-pod<uid>.slice:cri-containerd:<id>
                                    (containerd's "slice:prefix:name" form)

and possibly below a prefix (a node that is itself a container, as with
kind: `/docker/<node id>/kubepods/...`, `/kubelet.slice/kubelet-kubepods.slice/...`)
or with sub-cgroups inside the container (`.../cri-containerd-<id>.scope/init.scope`).
A static pod's UID is 32 hex digits without dashes. A container outside
Kubernetes: `/docker/<id>`, `/system.slice/docker-<id>.scope`,
`/machine.slice/libpod-<id>.scope` (Podman).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["CgroupOwner", "owner_from_cgroup"]

_HEX = "0-9a-f"
# 8-4-4-4-12 with "-" (cgroupfs) or "_" (systemd), or 32 hex digits (static pods)
_POD = re.compile(
    rf"pod([{_HEX}]{{8}}[-_]?[{_HEX}]{{4}}[-_]?[{_HEX}]{{4}}[-_]?[{_HEX}]{{4}}[-_]?[{_HEX}]{{12}})(?![{_HEX}])"
)
_CONTAINER = re.compile(
    rf"(?:^|[/:.-])(?:(cri-containerd|crio|docker|libpod)[-:/])?([{_HEX}]{{64}})(?:\.scope)?(?=$|/)"
)
_RUNTIMES = {"cri-containerd": "containerd", "crio": "cri-o", "docker": "docker", "libpod": "podman"}


@dataclass(frozen=True)
class CgroupOwner:
    scope: str  # "pod", "container" (not Kubernetes'), "host"
    pod_uid: str = ""  # dashed, as Kubernetes writes it
    container_id: str = ""  # the runtime's 64-hex id
    runtime: str = ""  # "containerd", "cri-o", "docker", "podman"; "" where the path does not say


HOST = CgroupOwner("host")


def owner_from_cgroup(text: str) -> CgroupOwner:
    """The owner a `/proc/<pid>/cgroup` text names; `HOST` for a process in no container."""
    best = HOST
    for line in text.splitlines():
        _, _, path = line.partition(":")
        _, _, path = path.partition(":")
        if not path or path == "/":
            continue
        owner = _owner_from_path(path.strip())
        if owner.scope == "pod":
            if owner.container_id:
                return owner
            if best.scope != "pod":
                best = owner  # a pod-level cgroup: keep looking for the container
        elif owner.scope == "container" and best.scope == "host":
            best = owner
    return best


def _owner_from_path(path: str) -> CgroupOwner:
    pods = _POD.findall(path)
    containers = _CONTAINER.findall(path)
    container_id = runtime = ""
    if containers:
        prefix, container_id = containers[-1]  # the innermost: a node that is a container has its own
        runtime = _RUNTIMES.get(prefix, "")
    if pods:
        pod_uid = _dashed(pods[-1])
        if containers and not _after(path, container_id, pods[-1]):
            container_id = runtime = ""  # the id is the node's own container, above the pod
        return CgroupOwner("pod", pod_uid, container_id, runtime)
    if container_id:
        return CgroupOwner("container", "", container_id, runtime)
    return HOST


def _after(path: str, container_id: str, pod_text: str) -> bool:
    return path.rfind(container_id) > path.rfind(pod_text)


def _dashed(uid: str) -> str:
    return uid.replace("_", "-")  # systemd writes the UID's dashes as underscores

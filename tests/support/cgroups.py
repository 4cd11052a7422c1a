"""Literal `/proc/<pid>/cgroup` files of pod containers, as each runtime and cgroup version writes them.

Shared by the cgroup parser's unit tests and the attribution tests, which
write them under a fixture host root (`write_proc_cgroups`).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["CGROUP_FILES", "HOST_CGROUP_V1", "HOST_CGROUP_V2", "write_proc_cgroups"]

UID_A = "0f4c1a2b-5d6e-4f70-8a91-b2c3d4e5f607"
UID_B = "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
UID_C = "9e8d7c6b-5a49-4837-a625-14f3e2d1c0b9"
UID_STATIC = "6b3e2a1f9c8d7e6f5a4b3c2d1e0f9a8b"  # a static pod: a hash, no dashes
CID_1 = "3a5b" * 16
CID_2 = "c0ffee00" * 8
CID_3 = "deadbeef" * 8
CID_4 = "0123456789abcdef" * 4
NODE_CID = "ab" * 32  # the node's own container (kind)


def _us(uid: str) -> str:
    return uid.replace("-", "_")


# cgroup v1, cgroupfs driver, containerd (Burstable pod)
CONTAINERD_V1_CGROUPFS = f"""12:pids:/kubepods/burstable/pod{UID_A}/{CID_1}
11:hugetlb:/kubepods/burstable/pod{UID_A}/{CID_1}
10:memory:/kubepods/burstable/pod{UID_A}/{CID_1}
9:devices:/kubepods/burstable/pod{UID_A}/{CID_1}
8:cpu,cpuacct:/kubepods/burstable/pod{UID_A}/{CID_1}
7:net_cls,net_prio:/kubepods/burstable/pod{UID_A}/{CID_1}
6:freezer:/kubepods/burstable/pod{UID_A}/{CID_1}
5:perf_event:/kubepods/burstable/pod{UID_A}/{CID_1}
4:blkio:/kubepods/burstable/pod{UID_A}/{CID_1}
3:cpuset:/kubepods/burstable/pod{UID_A}/{CID_1}
2:rdma:/
1:name=systemd:/kubepods/burstable/pod{UID_A}/{CID_1}
0::/
"""

# cgroup v1, systemd driver, containerd (Guaranteed pod: no QoS slice)
CONTAINERD_V1_SYSTEMD = f"""11:memory:/kubepods.slice/kubepods-pod{_us(UID_A)}.slice/cri-containerd-{CID_1}.scope
10:cpu,cpuacct:/kubepods.slice/kubepods-pod{_us(UID_A)}.slice/cri-containerd-{CID_1}.scope
9:pids:/kubepods.slice/kubepods-pod{_us(UID_A)}.slice/cri-containerd-{CID_1}.scope
1:name=systemd:/kubepods.slice/kubepods-pod{_us(UID_A)}.slice/cri-containerd-{CID_1}.scope
"""

# cgroup v2, systemd driver, containerd (BestEffort pod)
CONTAINERD_V2 = (
    f"0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{_us(UID_A)}.slice/cri-containerd-{CID_1}.scope\n"
)

# cgroup v2, containerd's "slice:prefix:name" form
CONTAINERD_V2_COLON = f"0::/kubepods-burstable-pod{_us(UID_A)}.slice:cri-containerd:{CID_1}\n"

# cgroup v1, cgroupfs driver, CRI-O
CRIO_V1_CGROUPFS = f"""10:memory:/kubepods/burstable/pod{UID_B}/crio-{CID_2}
9:pids:/kubepods/burstable/pod{UID_B}/crio-{CID_2}
1:name=systemd:/kubepods/burstable/pod{UID_B}/crio-{CID_2}
"""

# cgroup v2, systemd driver, CRI-O (Burstable)
CRIO_V2 = f"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{_us(UID_B)}.slice/crio-{CID_2}.scope\n"

# cgroup v1, cgroupfs driver, Docker (dockershim / cri-dockerd)
DOCKER_V1_CGROUPFS = f"""11:memory:/kubepods/besteffort/pod{UID_C}/{CID_3}
10:cpu,cpuacct:/kubepods/besteffort/pod{UID_C}/{CID_3}
1:name=systemd:/kubepods/besteffort/pod{UID_C}/{CID_3}
"""

# cgroup v2, systemd driver, Docker (cri-dockerd)
DOCKER_V2 = f"0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{_us(UID_C)}.slice/docker-{CID_3}.scope\n"

# a static pod (UID: a hash) under cgroup v2 / containerd
STATIC_POD_V2 = (
    f"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_STATIC}.slice/cri-containerd-{CID_4}.scope\n"
)

# a kind node: the node is a Docker container, the pod inside it
KIND_V2 = f"0::/docker/{NODE_CID}/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{_us(UID_A)}.slice/cri-containerd-{CID_1}.scope\n"  # noqa: E501

# systemd running inside the container: the process sits in a sub-cgroup
CONTAINERD_V2_NESTED = f"0::/kubepods.slice/kubepods-pod{_us(UID_A)}.slice/cri-containerd-{CID_1}.scope/init.scope\n"

# a container Docker runs outside Kubernetes, v1 and v2
PLAIN_DOCKER_V1 = f"11:memory:/docker/{CID_3}\n1:name=systemd:/docker/{CID_3}\n"
PLAIN_DOCKER_V2 = f"0::/system.slice/docker-{CID_3}.scope\n"

HOST_CGROUP_V1 = (
    "11:memory:/user.slice\n10:pids:/user.slice/user-1000.slice/session-4.scope\n"
    "1:name=systemd:/user.slice/user-1000.slice/session-4.scope\n"
)
HOST_CGROUP_V2 = "0::/system.slice/nvidia-persistenced.service\n"

# name -> (text, expected (scope, pod_uid, container_id, runtime))
CGROUP_FILES = {
    "containerd, cgroup v1, cgroupfs": (CONTAINERD_V1_CGROUPFS, ("pod", UID_A, CID_1, "")),
    "containerd, cgroup v1, systemd": (CONTAINERD_V1_SYSTEMD, ("pod", UID_A, CID_1, "containerd")),
    "containerd, cgroup v2": (CONTAINERD_V2, ("pod", UID_A, CID_1, "containerd")),
    "containerd, cgroup v2, slice:prefix:name": (CONTAINERD_V2_COLON, ("pod", UID_A, CID_1, "containerd")),
    "containerd, cgroup v2, nested": (CONTAINERD_V2_NESTED, ("pod", UID_A, CID_1, "containerd")),
    "CRI-O, cgroup v1, cgroupfs": (CRIO_V1_CGROUPFS, ("pod", UID_B, CID_2, "cri-o")),
    "CRI-O, cgroup v2": (CRIO_V2, ("pod", UID_B, CID_2, "cri-o")),
    "Docker, cgroup v1, cgroupfs": (DOCKER_V1_CGROUPFS, ("pod", UID_C, CID_3, "")),
    "Docker, cgroup v2": (DOCKER_V2, ("pod", UID_C, CID_3, "docker")),
    "static pod, cgroup v2": (STATIC_POD_V2, ("pod", UID_STATIC, CID_4, "containerd")),
    "kind node": (KIND_V2, ("pod", UID_A, CID_1, "containerd")),
    "plain Docker, cgroup v1": (PLAIN_DOCKER_V1, ("container", "", CID_3, "docker")),
    "plain Docker, cgroup v2": (PLAIN_DOCKER_V2, ("container", "", CID_3, "docker")),
    "host, cgroup v1": (HOST_CGROUP_V1, ("host", "", "", "")),
    "host, cgroup v2": (HOST_CGROUP_V2, ("host", "", "", "")),
}


def write_proc_cgroups(root: Path, by_pid: dict[int, str]) -> Path:
    """Write `<root>/proc/<pid>/cgroup` for each pid; returns root (an AIOS_HOST_ROOT)."""
    for pid, text in by_pid.items():
        directory = Path(root) / "proc" / str(pid)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "cgroup").write_text(text)
    return Path(root)

"""Naming GPU processes' owners (cgroups meet the kubelet's allocations), and resolving the kubelet's device names."""

import pytest

from agent.attribution.cgroup import CgroupOwner
from agent.attribution.devices import GpuTargets, allocations, resolve
from agent.attribution.join import holders_by_device, name_owners
from agent.attribution.pod_resources import KubeletDevice
from proto.telemetry.v1.readings import DeviceAllocation, GpuSample, MigSample, ProcessOwner

GPU0, GPU1, GPU2 = "GPU-00000000-0000-0000-0000-000000000000", "GPU-11111111-1111-1111-1111-111111111111", "GPU-2"
MIG_A, MIG_B = "MIG-aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa", "MIG-bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb"
SAMPLES = (
    GpuSample(0, GPU0),
    GpuSample(1, GPU1, migs=(MigSample(0, MIG_A), MigSample(3, MIG_B))),
)
TARGETS = GpuTargets.of(SAMPLES)


def dev(device_id, resource="nvidia.com/gpu", claim="", cdi=()):
    return KubeletDevice("ns", "p", "c", resource, device_id, claim, cdi)


@pytest.mark.parametrize(
    "device, expected",
    [
        (dev(GPU0), (GPU0, "")),
        (dev(f"{GPU0}::3"), (GPU0, "")),  # a time-sliced replica is its GPU
        (dev(MIG_B, "nvidia.com/mig-1g.10gb"), (GPU1, MIG_B)),
        (dev("1"), (GPU1, "")),  # DEVICE_ID_STRATEGY=index
        (dev("1:3", "nvidia.com/mig-1g.10gb"), (GPU1, MIG_B)),  # GPU index : MIG device index
        (dev("gpu-0", "gpu.nvidia.com", claim="ns/c"), (GPU0, "")),  # DRA device name
        (dev("gpu-1-mig-1g10gb-0", "gpu.nvidia.com", claim="ns/c"), (GPU1, "")),
        (dev("a-device", "gpu.nvidia.com", claim="ns/c", cdi=(f"k8s.gpu.nvidia.com/device={MIG_A}",)), (GPU1, MIG_A)),
        (dev(f"MIG-{GPU1}/1/0"), (GPU1, "")),  # the R470 MIG name form
        (dev("GPU-99999999-9999-9999-9999-999999999999"), ("", "")),  # not this node's
        (dev("7"), ("", "")),
    ],
)
def test_the_kubelet_s_device_names_resolve_to_gpus(device, expected):
    assert resolve(device, TARGETS) == expected


def test_non_gpu_devices_are_left_out_unresolved_gpu_ones_kept():
    found = allocations([dev("0000:3b:00.2", "example.com/sriov-nic"), dev("GPU-elsewhere"), dev(GPU0)], TARGETS)
    assert [(a.device_id, a.gpu_uuid) for a in found] == [("GPU-elsewhere", ""), (GPU0, GPU0)]


def alloc(namespace, pod, container, gpu, mig=""):
    return DeviceAllocation(namespace, pod, container, "nvidia.com/gpu", mig or gpu, gpu, mig)


def pod_owner(uid, cid):
    return CgroupOwner("pod", uid, cid, "containerd")


def test_a_pod_holding_the_device_its_processes_use_is_named():
    holders = holders_by_device([alloc("a", "train", "main", GPU0)])
    owners = name_owners({GPU0: [10, 11]}, {10: pod_owner("u1", "c1"), 11: pod_owner("u1", "c1")}, holders)
    assert owners == (ProcessOwner("pod", (10, 11), "a", "train", "main", "u1", "c1", "containerd"),)


def test_containers_of_one_pod_are_told_apart_by_their_devices():
    holders = holders_by_device([alloc("a", "p", "left", GPU0), alloc("a", "p", "right", GPU1)])
    owners = name_owners(
        {GPU0: [10], GPU1: [20]}, {10: pod_owner("u1", "c-left"), 20: pod_owner("u1", "c-right")}, holders
    )
    assert [(o.pod, o.container, o.container_id) for o in owners] == [("p", "left", "c-left"), ("p", "right", "c-right")]


def test_a_second_pod_on_a_gpu_it_was_not_given_names_neither():
    # a privileged pod (or NVIDIA_VISIBLE_DEVICES=all) runs on the GPU the trainer holds:
    # both UIDs could be the holder, so neither is named after it
    holders = holders_by_device([alloc("a", "train", "main", GPU0)])
    owners = name_owners({GPU0: [10, 30]}, {10: pod_owner("u1", "c1"), 30: pod_owner("u3", "c3")}, holders)
    assert [(o.pod_uid, o.pod) for o in owners] == [("u1", ""), ("u3", "")]


def test_a_pod_whose_processes_span_another_pod_s_device_is_not_named():
    holders = holders_by_device([alloc("a", "train", "main", GPU0)])
    owners = name_owners({GPU0: [10], GPU1: [11]}, {10: pod_owner("u1", "c1"), 11: pod_owner("u1", "c1")}, holders)
    assert [(o.pod_uid, o.pod, o.pids) for o in owners] == [("u1", "", (10, 11))]


def test_time_sliced_pods_told_apart_only_by_another_device():
    holders = holders_by_device(
        [alloc("a", "one", "main", GPU0), alloc("a", "two", "main", GPU0), alloc("a", "two", "main", GPU1)]
    )
    cgroups = {10: pod_owner("u1", "c1"), 20: pod_owner("u2", "c2"), 21: pod_owner("u2", "c2")}
    owners = name_owners({GPU0: [10, 20], GPU1: [21]}, cgroups, holders)
    # u2 also runs on GPU1, which only pod "two" holds; u1 shares GPU0 with it: not named
    assert [(o.pod_uid, o.pod) for o in owners] == [("u1", ""), ("u2", "two")]


def test_mig_devices_are_devices_of_their_own():
    holders = holders_by_device([alloc("s", "i0", "srv", GPU1, MIG_A), alloc("s", "i1", "srv", GPU1, MIG_B)])
    owners = name_owners({MIG_A: [5], MIG_B: [6]}, {5: pod_owner("u5", "c5"), 6: pod_owner("u6", "c6")}, holders)
    assert [(o.pod_uid, o.pod) for o in owners] == [("u5", "i0"), ("u6", "i1")]


def test_host_container_and_gone_processes_keep_their_scope():
    owners = name_owners(
        {GPU0: [1, 2, 3]},
        {1: CgroupOwner("host"), 2: CgroupOwner("container", "", "d" * 64, "docker"), 3: None},
        {},
    )
    assert owners == (
        ProcessOwner("container", (2,), container_id="d" * 64, runtime="docker"),
        ProcessOwner("host", (1,)),
        ProcessOwner("unknown", (3,)),
    )


def test_a_sidecar_on_its_pod_s_gpu_does_not_take_the_holder_s_name():
    holders = holders_by_device([alloc("a", "train", "main", GPU0)])
    owners = name_owners({GPU0: [10, 12]}, {10: pod_owner("u1", "c-main"), 12: pod_owner("u1", "c-side")}, holders)
    # the pod is known; which of its two containers is "main" is not
    assert [(o.pod, o.container, o.container_id) for o in owners] == [("train", "", "c-main"), ("train", "", "c-side")]

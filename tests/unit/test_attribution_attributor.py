"""The attributor's schedule and memory: when it reads the kubelet and the cgroups, and what it reuses."""

from agent.attribution.attributor import GpuAttributor, refresh_from_env
from agent.attribution.cgroup import CgroupOwner
from agent.attribution.pod_resources import KubeletDevice, KubeletSnapshot, PodResourcesUnavailable
from proto.telemetry.v1.readings import GpuProcess, GpuSample

GPU = "GPU-00000000-0000-0000-0000-000000000000"
TRAIN = KubeletDevice("a", "train", "main", "nvidia.com/gpu", GPU)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class Kubelet:
    """Answers with `snapshot`, or raises `error`; counts reads."""

    def __init__(self, devices=(TRAIN,)):
        self.snapshot = KubeletSnapshot(pods=3, devices=tuple(devices), allocatable={"nvidia.com/gpu": (GPU,)})
        self.error: str | None = None
        self.reads = 0
        self.closed = False

    def read(self):
        self.reads += 1
        if self.error:
            raise PodResourcesUnavailable(self.error)
        return self.snapshot

    def close(self):
        self.closed = True


class Cgroups:
    def __init__(self):
        self.reads: list[int] = []

    def __call__(self, pid):
        self.reads.append(pid)
        return CgroupOwner("pod", "u1", "c1", "containerd")


def gpus(*pids, used=100):
    return (GpuSample(0, GPU, processes=tuple(GpuProcess(pid, "compute", used) for pid in pids)),)


def make(kubelet=None, refresh_s=30.0, min_refresh_s=0.0):
    clock, cgroups = Clock(), Cgroups()
    kubelet = kubelet or Kubelet()
    attributor = GpuAttributor(kubelet, clock=clock, refresh_s=refresh_s, min_refresh_s=min_refresh_s, cgroup_reader=cgroups)
    return attributor, kubelet, clock, cgroups


def test_steady_gpus_cost_one_kubelet_read_per_refresh_and_one_cgroup_read_per_pid():
    attributor, kubelet, clock, cgroups = make()
    first = attributor.attribute(gpus(10, 11))
    clock.now += 10
    second = attributor.attribute(gpus(10, 11, used=999))  # memory moved, same processes
    assert second is first  # nothing to redo: the very same object
    assert (kubelet.reads, cgroups.reads) == (1, [10, 11])
    clock.now += 25  # past refresh_s
    third = attributor.attribute(gpus(10, 11))
    assert kubelet.reads == 2 and third.refreshed_at == clock.now
    assert third.owners == first.owners and cgroups.reads == [10, 11]


def test_a_changed_process_set_reads_the_kubelet_now_and_only_new_cgroups():
    attributor, kubelet, clock, cgroups = make()
    attributor.attribute(gpus(10))
    clock.now += 1
    result = attributor.attribute(gpus(10, 12))
    assert kubelet.reads == 2 and cgroups.reads == [10, 12]
    assert result.owners[0].pids == (10, 12)
    clock.now += 1
    attributor.attribute(gpus(12))  # 10 left: forgotten, and the kubelet read again
    attributor.attribute(gpus(10, 12))  # a pid seen again is read again (it may be another process)
    assert cgroups.reads == [10, 12, 10]


def test_early_reads_are_spaced_by_min_refresh_and_not_lost():
    attributor, kubelet, clock, _ = make(min_refresh_s=5.0)
    attributor.attribute(gpus(10))
    clock.now += 1
    attributor.attribute(gpus(10, 11))  # changed, but too soon
    assert kubelet.reads == 1
    clock.now += 5
    attributor.attribute(gpus(10, 11))  # unchanged since, but the change is still owed a read
    assert kubelet.reads == 2


def test_a_kubelet_that_stops_answering_is_unavailable_with_the_reason_then_back():
    attributor, kubelet, clock, _ = make()
    assert attributor.attribute(gpus(10)).owners[0].pod == "train"
    kubelet.error = "the kubelet is not answering on /x"
    clock.now += 30
    down = attributor.attribute(gpus(10))
    assert (down.available, down.reason, down.allocations, down.refreshed_at) == (False, kubelet.error, (), None)
    assert down.owners[0].pod == "" and down.owners[0].pod_uid == "u1"  # the cgroup still says which pod UID
    kubelet.error = None
    clock.now += 30
    up = attributor.attribute(gpus(10))
    assert up.available and up.owners[0].pod == "train"


def test_a_pod_gone_from_the_kubelet_is_gone_at_the_next_read():
    attributor, kubelet, clock, _ = make()
    assert [a.pod for a in attributor.attribute(gpus(10)).allocations] == ["train"]
    kubelet.snapshot = KubeletSnapshot(pods=2, devices=(), allocatable={})
    clock.now += 30
    after = attributor.attribute(gpus(10))
    assert after.allocations == () and after.pods == 2 and after.owners[0].pod == ""


def test_no_kubelet_configured_says_so():
    attributor = GpuAttributor(None, clock=Clock(), cgroup_reader=Cgroups())
    result = attributor.attribute(gpus(10))
    assert (result.available, result.reason) == (False, "no kubelet socket configured")


def test_close_closes_the_client():
    attributor, kubelet, _, _ = make()
    attributor.close()
    assert kubelet.closed


def test_refresh_setting():
    assert refresh_from_env({}) == 30.0
    assert refresh_from_env({"AIOS_POD_RESOURCES_REFRESH_S": "0"}) == 0.0
    for bad, message in (("soon", "not a number"), ("-1", "between 0 and 3600"), ("7200", "between 0 and 3600")):
        try:
            refresh_from_env({"AIOS_POD_RESOURCES_REFRESH_S": bad})
        except ValueError as e:
            assert message in str(e) and "AIOS_POD_RESOURCES_REFRESH_S" in str(e)
        else:
            raise AssertionError(f"{bad!r} accepted")

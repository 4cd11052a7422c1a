"""Who is on the GPU, end to end on real parts: the agent's NodeReader (as `aios-agent run` opens it)
under the fake NVML with processes on each GPU, a kubelet pod-resources v1 server on a unix socket
(real gRPC, the published API) with pods holding whole GPUs, MIG devices and a DRA claim, and a
fixture host root whose /proc/<pid>/cgroup files are those of each runtime and cgroup version.

Each scenario runs the reader in its own process (pynvml keeps the library it loaded); samples come
back in their wire form and are decoded with the conversion the aggregator uses. Expected values are
written out from the fixtures, never computed by the code under test.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest

from proto.telemetry.v1 import telemetry_pb2 as pb
from proto.telemetry.v1.convert import sample_from_pb
from proto.telemetry.v1.readings import (
    Attribution,
    DeviceAllocation,
    GpuProcess,
    MigSample,
    NodeSample,
    ProcessOwner,
    ResourceCount,
)
from tests.fakenvml import FakeProcess
from tests.fakenvml.presets import a100_80gb, h100_sxm, l4, t4, with_mig
from tests.fakenvml.probe import ProbeProcess
from tests.support.cgroups import (
    CID_1,
    CID_2,
    CID_3,
    CID_4,
    CONTAINERD_V2,
    CRIO_V1_CGROUPFS,
    DOCKER_V2,
    HOST_CGROUP_V2,
    PLAIN_DOCKER_V1,
    STATIC_POD_V2,
    UID_A,
    UID_B,
    UID_C,
    UID_STATIC,
    write_proc_cgroups,
)
from tests.support.hostfs import Counters, write_host_tree
from tests.support.pod_resources import PodResourcesServer, container, devices, dra, pod

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
GIB = 1024 * MIB

GPU0 = replace(
    h100_sxm(0),
    processes=(FakeProcess(4101, "c", 20480, sm_pct=80, mem_pct=40), FakeProcess(4102, "c", 2048, sm_pct=5, mem_pct=1)),
)
_A100_MIG = with_mig(a100_80gb(1), ("3g.40gb", "1g.10gb"))
GPU1 = replace(
    _A100_MIG,
    mig_devices=(
        replace(_A100_MIG.mig_devices[0], memory_used_mb=8192),
        replace(_A100_MIG.mig_devices[1], memory_used_mb=4096),
    ),
    # GPU instance ids: the fake numbers MIG device M as instance M + 1
    processes=(FakeProcess(5201, "c", 8192, gpu_instance_id=1), FakeProcess(5301, "c", 4096, gpu_instance_id=2)),
)
GPU2 = replace(l4(2), processes=(FakeProcess(6301, "g", 512),), unsupported=(*l4(2).unsupported, "process_utilization"))
GPU3 = replace(t4(3), processes=(FakeProcess(7001, "c", 300), FakeProcess(7002, "c", 700), FakeProcess(8001, "c", 100)))
GPUS = [GPU0, GPU1, GPU2, GPU3]
MIG0, MIG1 = GPU1.mig_devices
ELSEWHERE = "GPU-00000000-1111-2222-3333-444444444444"  # a GPU the kubelet names that this node lacks

CGROUPS = {
    4101: CONTAINERD_V2,
    4102: CONTAINERD_V2,
    5201: CRIO_V1_CGROUPFS,
    5301: STATIC_POD_V2,
    6301: DOCKER_V2,
    7001: HOST_CGROUP_V2,
    7002: PLAIN_DOCKER_V1,
    # 8001 has no /proc entry: it exited between NVML's list and the read
}

RENDER_CDI = "k8s.gpu.nvidia.com/device=gpu-2"
TRAINER = pod(
    "team-a", "trainer-0",
    container("trainer", devices("nvidia.com/gpu", GPU0.uuid, numa=0)),
    container("log-shipper"),
)  # fmt: skip
PODS = [
    TRAINER,
    pod("team-b", "infer-0", container("server", devices("nvidia.com/mig-3g.40gb", MIG0.uuid))),
    pod("kube-system", "static-infer-node-a", container("server", devices("nvidia.com/mig-1g.10gb", MIG1.uuid))),
    pod(
        "team-c",
        "render-0",
        container("render", dynamic=[dra("team-c", "render-gpu", "gpu.nvidia.com", "node-a", "gpu-2", cdi=[RENDER_CDI])]),
    ),
    pod("team-d", "cpu-job", container("main")),
    pod("team-e", "nic-user", container("app", devices("example.com/sriov-nic", "0000:3b:00.2"))),
    pod("team-f", "elsewhere", container("main", devices("nvidia.com/gpu", ELSEWHERE))),
]
ALLOCATABLE = [
    devices("nvidia.com/gpu", GPU0.uuid, GPU3.uuid),
    devices("nvidia.com/mig-3g.40gb", MIG0.uuid),
    devices("nvidia.com/mig-1g.10gb", MIG1.uuid),
    devices("example.com/sriov-nic", "0000:3b:00.2", "0000:3b:00.3"),
]

ALLOCATIONS = (
    DeviceAllocation("team-f", "elsewhere", "main", "nvidia.com/gpu", ELSEWHERE),
    *sorted(
        (
            DeviceAllocation("team-a", "trainer-0", "trainer", "nvidia.com/gpu", GPU0.uuid, GPU0.uuid),
            DeviceAllocation("team-b", "infer-0", "server", "nvidia.com/mig-3g.40gb", MIG0.uuid, GPU1.uuid, MIG0.uuid),
            DeviceAllocation(
                "kube-system", "static-infer-node-a", "server", "nvidia.com/mig-1g.10gb", MIG1.uuid, GPU1.uuid, MIG1.uuid
            ),
            DeviceAllocation("team-c", "render-0", "render", "gpu.nvidia.com", "gpu-2", GPU2.uuid, claim="team-c/render-gpu"),
        ),
        key=lambda a: (a.gpu_uuid, a.mig_uuid),
    ),
)
OWNERS = (
    ProcessOwner("container", (7002,), container_id=CID_3, runtime="docker"),
    ProcessOwner("host", (7001,)),
    ProcessOwner("pod", (5301,), "kube-system", "static-infer-node-a", "server", UID_STATIC, CID_4, "containerd"),
    ProcessOwner("pod", (4101, 4102), "team-a", "trainer-0", "trainer", UID_A, CID_1, "containerd"),
    ProcessOwner("pod", (5201,), "team-b", "infer-0", "server", UID_B, CID_2, "cri-o"),
    ProcessOwner("pod", (6301,), "team-c", "render-0", "render", UID_C, CID_3, "docker"),
    ProcessOwner("unknown", (8001,)),
)
ALLOCATABLE_COUNTS = (
    ResourceCount("nvidia.com/gpu", 2),
    ResourceCount("nvidia.com/mig-1g.10gb", 1),
    ResourceCount("nvidia.com/mig-3g.40gb", 1),
)


@pytest.fixture
def short_dir():
    # a unix socket path must stay under ~107 bytes: pytest's tmp_path can be longer
    path = Path(tempfile.mkdtemp(prefix="aios-pr-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def kubelet(short_dir):
    server = PodResourcesServer(str(short_dir / "kubelet.sock"))
    server.set_pods(*PODS)
    server.set_allocatable(*ALLOCATABLE)
    with server:
        yield server


@pytest.fixture
def host_root(tmp_path) -> Path:
    """A fixture host (tests/hostfs.py) whose GPU processes have the CGROUPS files."""
    return write_proc_cgroups(write_host_tree(tmp_path / "host", Counters()), CGROUPS)


def _env(fake_nvml, host_root: Path, socket_path: str, **extra: str) -> dict[str, str]:
    return {
        **fake_nvml.env,
        "AIOS_HOST_ROOT": str(host_root),
        "AIOS_POD_RESOURCES_SOCKET": socket_path,
        "AIOS_POD_RESOURCES_REFRESH_S": "0",  # read the kubelet at every sample
        **extra,
    }


def _sample(probe: ProbeProcess) -> NodeSample:
    reply = probe.ask("sample")
    assert "sample" in reply, reply
    return sample_from_pb(pb.NodeSample.FromString(bytes.fromhex(reply["sample"])))


def test_pods_containers_and_processes_of_every_gpu_exactly(fake_nvml, kubelet, host_root):
    fake_nvml.configure(gpus=GPUS)
    root = host_root
    with ProbeProcess(_env(fake_nvml, root, kubelet.socket_path), node=True) as probe:
        sample = _sample(probe)

    assert [(c.name, c.success) for c in sample.collectors] == [("gpu", True), ("host", True), ("attribution", True)]
    assert sample.attribution is not None
    assert sample.attribution == Attribution(
        available=True,
        reason="",
        refreshed_at=sample.attribution.refreshed_at,
        pods=7,
        allocations=ALLOCATIONS,
        owners=OWNERS,
        allocatable=ALLOCATABLE_COUNTS,
    )
    assert sample.attribution.refreshed_at is not None and sample.attribution.refreshed_at > 0

    gpu0, gpu1, gpu2, gpu3 = sample.gpus
    assert gpu0.processes == (
        GpuProcess(4101, "compute", 20480 * MIB, 80.0, 40.0),
        GpuProcess(4102, "compute", 2048 * MIB, 5.0, 1.0),
    )
    assert gpu0.compute_processes == 2 and gpu0.migs == ()
    # MIG: processes name their instance; per-process utilization is not a MIG thing (nvml.h)
    assert gpu1.processes == (
        GpuProcess(5201, "compute", 8192 * MIB, None, None, MIG0.uuid),
        GpuProcess(5301, "compute", 4096 * MIB, None, None, MIG1.uuid),
    )
    assert gpu1.migs == (
        MigSample(0, MIG0.uuid, 40 * GIB, 8 * GIB, None, ("utilization_gpu_pct",)),
        MigSample(1, MIG1.uuid, 10 * GIB, 4 * GIB, None, ("utilization_gpu_pct",)),
    )
    assert "process_utilization" in gpu1.unsupported
    # a graphics-only process, on a GPU without per-process utilization
    assert gpu2.processes == (GpuProcess(6301, "graphics", 512 * MIB),)
    assert gpu2.compute_processes == 0 and "process_utilization" in gpu2.unsupported
    assert [p.pid for p in gpu3.processes] == [7001, 7002, 8001]
    # the rest of the GPU reading is as before
    assert [g.temperature_c for g in sample.gpus] == [float(g.temperature_c) for g in GPUS]


def test_a_deleted_pod_loses_its_names_at_the_next_read(fake_nvml, kubelet, host_root):
    fake_nvml.configure(gpus=GPUS)
    root = host_root
    with ProbeProcess(_env(fake_nvml, root, kubelet.socket_path), node=True) as probe:
        before = _sample(probe)
        kubelet.set_pods(*(p for p in PODS if p.name != "trainer-0"))
        after = _sample(probe)

    assert before.attribution is not None and after.attribution is not None
    assert [a.pod for a in before.attribution.allocations].count("trainer-0") == 1
    assert "trainer-0" not in [a.pod for a in after.attribution.allocations]
    assert after.attribution.pods == 6
    # its processes still run (for now): they keep their cgroup identity, without names
    trainer = next(o for o in after.attribution.owners if o.pod_uid == UID_A)
    assert trainer == ProcessOwner("pod", (4101, 4102), "", "", "", UID_A, CID_1, "containerd")
    # nobody else changed
    assert [o for o in after.attribution.owners if o.pod_uid != UID_A] == [o for o in OWNERS if o.pod_uid != UID_A]


def test_a_new_gpu_process_brings_its_pod_at_once(fake_nvml, kubelet, host_root):
    # the kubelet read is due only every 300 s, but a GPU's process set changing reads it early
    fake_nvml.configure(gpus=[replace(GPU0, processes=())])
    root = host_root
    kubelet.set_pods()
    env = _env(fake_nvml, root, kubelet.socket_path, AIOS_POD_RESOURCES_REFRESH_S="300")
    with ProbeProcess(env, node=True) as probe:
        empty = _sample(probe)
        kubelet.set_pods(TRAINER)
        still_empty = _sample(probe)  # nothing on the GPU changed: no read
        fake_nvml.set(0, processes=GPU0.processes)
        busy = _sample(probe)
    assert empty.attribution is not None and empty.attribution.owners == () and empty.attribution.pods == 0
    assert still_empty.attribution == empty.attribution
    assert busy.attribution is not None
    assert busy.attribution.owners == (
        ProcessOwner("pod", (4101, 4102), "team-a", "trainer-0", "trainer", UID_A, CID_1, "containerd"),
    )
    assert kubelet.calls["List"] == 2


def test_no_socket_attribution_unavailable_the_rest_goes_on(fake_nvml, host_root, short_dir):
    fake_nvml.configure(gpus=GPUS)
    root = host_root
    missing = str(short_dir / "kubelet.sock")
    with ProbeProcess(_env(fake_nvml, root, missing), node=True) as probe:
        sample = _sample(probe)
    assert all(c.success for c in sample.collectors)
    attribution = sample.attribution
    assert attribution is not None and attribution.available is False
    assert attribution.reason.startswith(f"no kubelet pod-resources socket at {missing}")
    assert attribution.allocations == () and attribution.refreshed_at is None
    # processes still have their owners from the cgroups, without the kubelet's names
    assert [(o.scope, o.pod_uid, o.container_id, o.namespace) for o in attribution.owners if o.scope == "pod"] == [
        ("pod", UID_A, CID_1, ""),  # in the order of their UIDs, with no names to sort by
        ("pod", UID_B, CID_2, ""),
        ("pod", UID_STATIC, CID_4, ""),
        ("pod", UID_C, CID_3, ""),
    ]
    assert [len(g.processes) for g in sample.gpus] == [2, 2, 1, 3]
    assert sample.host is not None and len(sample.gpus) == 4


def test_a_kubelet_without_the_v1_api_is_named(fake_nvml, kubelet, host_root):
    fake_nvml.configure(gpus=[GPU0])
    kubelet.unimplemented = {"List", "GetAllocatableResources", "Get"}
    root = host_root
    with ProbeProcess(_env(fake_nvml, root, kubelet.socket_path), node=True) as probe:
        sample = _sample(probe)
    assert sample.attribution is not None and not sample.attribution.available
    assert "does not serve pod-resources v1 List" in sample.attribution.reason


def test_an_old_kubelet_without_allocatable_still_attributes(fake_nvml, kubelet, host_root):
    fake_nvml.configure(gpus=[GPU0])
    kubelet.unimplemented = {"GetAllocatableResources"}
    root = host_root
    with ProbeProcess(_env(fake_nvml, root, kubelet.socket_path), node=True) as probe:
        sample = _sample(probe)
    assert sample.attribution is not None and sample.attribution.available
    assert sample.attribution.allocatable == ()
    assert [o.pod for o in sample.attribution.owners] == ["trainer-0"]


def test_attribution_off_reads_no_processes_and_no_kubelet(fake_nvml, kubelet, host_root):
    fake_nvml.configure(gpus=GPUS)
    root = host_root
    with ProbeProcess(_env(fake_nvml, root, kubelet.socket_path, AIOS_ATTRIBUTION="off"), node=True) as probe:
        sample = _sample(probe)
    assert sample.attribution is None
    assert [g.processes for g in sample.gpus] == [(), (), (), ()]
    assert [g.compute_processes for g in sample.gpus] == [2, 2, 0, 3]
    assert kubelet.calls["List"] == 0

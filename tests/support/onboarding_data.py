"""Literal test data for onboarding: three measured nodes and the operators' sample config.

The expected figures in the tests are written out by hand from these, never
recomputed with the code under test.
"""

from proto.telemetry.v1.readings import MIB, DiskInfo, GpuInventory, HostInventory, NicInfo, NodeInventory

T4_FEATURES = ("fp16", "int8", "tensor_cores")
H100_FEATURES = ("bf16", "fp16", "fp8", "int8", "tensor_cores", "tf32")


def t4(index):
    return GpuInventory(index=index, uuid=f"GPU-t4-{index}", name="Tesla T4", memory_bytes=15360 * MIB,
                        compute_capability=(7, 5), architecture="turing", features=T4_FEATURES)


def h100(index):
    return GpuInventory(index=index, uuid=f"GPU-h100-{index}", name="NVIDIA H100 80GB HBM3", memory_bytes=81559 * MIB,
                        compute_capability=(9, 0), architecture="hopper", features=H100_FEATURES)


def cpu_node_a() -> NodeInventory:
    return NodeInventory(
        node_id="node-a", node_name="worker-a",
        host=HostInventory(hostname="worker-a", kernel="6.1.0", os="Debian 12", cpu_logical=16, cpu_physical=8,
                           memory_total_bytes=64305 * MIB, swap_total_bytes=2047 * MIB,
                           disks=(DiskInfo("nvme0n1", 476940 * MIB),),
                           nics=(NicInfo("eno1", 1000, "3c:ec:ef:00:00:01"),)),
        gpus=(), nvml_status="library not found",
    )


def gpu_node_b() -> NodeInventory:
    return NodeInventory(
        node_id="node-b", node_name="worker-b",
        host=HostInventory(hostname="worker-b", kernel="6.1.0", os="Ubuntu 22.04", cpu_logical=32, cpu_physical=16,
                           memory_total_bytes=128803 * MIB, swap_total_bytes=0,
                           disks=(DiskInfo("sda", 915715 * MIB, rotational=True),
                                  DiskInfo("sdb", 1907729 * MIB, rotational=True)),
                           nics=(NicInfo("eth0", 25000), NicInfo("eth1", 25000))),
        gpus=(t4(1), t4(0)), driver_version="550.54.15", cuda_driver_version="12.4",
    )


def gpu_node_c() -> NodeInventory:
    return NodeInventory(
        node_id="node-c", node_name="worker-c",
        host=HostInventory(hostname="worker-c", kernel="6.5.0", os="Ubuntu 22.04", cpu_logical=224, cpu_physical=112,
                           memory_total_bytes=2063827 * MIB, swap_total_bytes=8191 * MIB,
                           disks=tuple(DiskInfo(f"nvme{i}n1", 3662830 * MIB) for i in range(4)),
                           nics=(NicInfo("ens1f0", 200000), NicInfo("ens1f1", 200000), NicInfo("eno1", None))),
        gpus=tuple(h100(i) for i in range(8)), driver_version="550.54.15", cuda_driver_version="12.4",
    )


def gpu_node_d() -> NodeInventory:
    """The node that joins after onboarding."""
    return NodeInventory(
        node_id="node-d", node_name="worker-d",
        host=HostInventory(hostname="worker-d", kernel="6.1.0", os="Debian 12", cpu_logical=64, cpu_physical=32,
                           memory_total_bytes=515890 * MIB, swap_total_bytes=4095 * MIB,
                           disks=(DiskInfo("nvme0n1", 1907729 * MIB),),
                           nics=(NicInfo("eth0", 100000),)),
        gpus=(t4(0),), driver_version="550.54.15", cuda_driver_version="12.4",
    )


ENTRY_A = {
    "id": "node-a",
    "gpus": {"count": 0, "memory": 0, "gpus": [], "features": [], "modelNames": []},
    "vcpus": {"count": 16}, "memory": 64305, "swap": 2047,
    "storage": {"disks": 1, "size": 476940},
    "network": {"interfaces": 1, "txBandwidth": 1000, "rxBandwidth": 1000},
}
ENTRY_B = {
    "id": "node-b",
    "gpus": {"count": 2, "memory": 30720,
             "gpus": [{"modelName": "Tesla T4", "memory": 15360}, {"modelName": "Tesla T4", "memory": 15360}],
             "features": ["fp16", "int8", "tensor_cores"], "modelNames": ["Tesla T4"]},
    "vcpus": {"count": 32}, "memory": 128803, "swap": 0,
    "storage": {"disks": 2, "size": 2823444},
    "network": {"interfaces": 2, "txBandwidth": 50000, "rxBandwidth": 50000},
}
ENTRY_C = {
    "id": "node-c",
    "gpus": {"count": 8, "memory": 652472,
             "gpus": [{"modelName": "NVIDIA H100 80GB HBM3", "memory": 81559}] * 8,
             "features": ["bf16", "fp16", "fp8", "int8", "tensor_cores", "tf32"],
             "modelNames": ["NVIDIA H100 80GB HBM3"]},
    "vcpus": {"count": 224}, "memory": 2063827, "swap": 8191,
    "storage": {"disks": 4, "size": 14651320},
    "network": {"interfaces": 3, "txBandwidth": 400000, "rxBandwidth": 400000},
}
ENTRY_D = {
    "id": "node-d",
    "gpus": {"count": 1, "memory": 15360, "gpus": [{"modelName": "Tesla T4", "memory": 15360}],
             "features": ["fp16", "int8", "tensor_cores"], "modelNames": ["Tesla T4"]},
    "vcpus": {"count": 64}, "memory": 515890, "swap": 4095,
    "storage": {"disks": 1, "size": 1907729},
    "network": {"interfaces": 1, "txBandwidth": 100000, "rxBandwidth": 100000},
}
TOTALS_ABC = {
    "gpus": {"count": 10, "memory": 683192},
    "vcpus": {"count": 272},
    "memory": 2256935,
    "swap": 10238,
    "storage": {"disks": 7, "size": 17951704},
    "network": {"interfaces": 6, "txBandwidth": 451000, "rxBandwidth": 451000},
}
TOTALS_ABCD = {
    "gpus": {"count": 11, "memory": 698552},
    "vcpus": {"count": 336},
    "memory": 2772825,
    "swap": 14333,
    "storage": {"disks": 8, "size": 19859433},
    "network": {"interfaces": 7, "txBandwidth": 551000, "rxBandwidth": 551000},
}

# The shape of the sample config.json the operators' guide ships: note `nodesData`.
SAMPLE_CONFIG_TEXT = """{
  "id": "cluster-eu-1",
  "regionId": "eu-west-1",
  "status": "live",
  "nodes": {
    "nodesData": []
  },
  "clusterMetadata": {
    "name": "EU inference cluster",
    "description": "GPU cluster for inference blocks",
    "owner": "ml-infra",
    "email": "ml-infra@example.org",
    "countries": ["DE", "NL"],
    "miscContactInfo": {},
    "additionalInfo": {}
  },
  "tags": ["gpu", "inference"],
  "reputation": 0,
  "config": {
    "policyExecutorId": "",
    "policyExecutionMode": "local",
    "customPolicySystem": {"name": "", "version": "", "releaseTag": ""},
    "publicHostname": "cluster-eu-1.example.org",
    "useGateway": true,
    "allowExternalNodes": false,
    "actionsPolicyMap": {},
    "stabilityChecker": {"policyRuleURI": "stability-check:1.0-stable", "parameters": {"min_healthy": 2}}
  },
  "siteNotes": {"rack": "R12", "floor": 3}
}
"""


def expected_document(entries, totals) -> dict:
    """The sample config populated: every input field kept, nodeData written, totals added."""
    return {
        "id": "cluster-eu-1",
        "regionId": "eu-west-1",
        "status": "live",
        "nodes": {"nodeData": entries, "count": len(entries)},
        "clusterMetadata": {
            "name": "EU inference cluster",
            "description": "GPU cluster for inference blocks",
            "owner": "ml-infra",
            "email": "ml-infra@example.org",
            "countries": ["DE", "NL"],
            "miscContactInfo": {},
            "additionalInfo": {},
        },
        "tags": ["gpu", "inference"],
        "reputation": 0,
        "config": {
            "policyExecutorId": "",
            "policyExecutionMode": "local",
            "customPolicySystem": {"name": "", "version": "", "releaseTag": ""},
            "publicHostname": "cluster-eu-1.example.org",
            "useGateway": True,
            "allowExternalNodes": False,
            "actionsPolicyMap": {},
            "stabilityChecker": {"policyRuleURI": "stability-check:1.0-stable", "parameters": {"min_healthy": 2}},
        },
        "siteNotes": {"rack": "R12", "floor": 3},
        **totals,
    }

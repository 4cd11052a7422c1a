"""Readings dataclasses survive the trip through their protobuf wire form."""

import math

import pytest

from proto.telemetry.v1 import convert
from proto.telemetry.v1 import readings as r
from proto.telemetry.v1 import telemetry_pb2 as pb

FULL_INVENTORY = r.NodeInventory(
    node_id="node-a",
    node_name="gpu-a-1",
    host=r.HostInventory(
        hostname="gpu-a-1",
        kernel="6.1.0-18-amd64",
        os="Debian GNU/Linux 12 (bookworm)",
        cpu_logical=96,
        cpu_physical=48,
        memory_total_mb=1_031_891,
        swap_total_mb=0,
        disks=(r.DiskInfo("nvme0n1", 3_815_447, False, "SAMSUNG MZQL23T8"),),
        nics=(r.NicInfo("eth0", 100_000, "0c:42:a1:00:00:01"), r.NicInfo("lo", None, "")),
    ),
    gpus=(
        r.GpuInventory(
            index=0,
            uuid="GPU-11111111-2222-3333-4444-555555555555",
            name="NVIDIA A100-SXM4-80GB",
            memory_mb=81920,
            pci_bus_id="00000000:07:00.0",
            compute_capability=(8, 0),
            architecture="ampere",
            features=("tf32", "bf16", "mig"),
            mig_enabled=True,
            mig_pending=False,
            mig_devices=(r.MigDevice(0, "MIG-aaaa", 9728, "1g.10gb"),),
            power_limit_w=400.0,
            unsupported=(),
        ),
        r.GpuInventory(
            index=1,
            uuid="GPU-2",
            name="Tesla T4",
            memory_mb=15360,
            compute_capability=None,
            mig_enabled=None,
            power_limit_w=None,
            unsupported=("mig_mode", "power_limit"),
        ),
    ),
    driver_version="550.54.15",
    cuda_driver_version="12.4",
    nvml_status="ok",
)

FULL_SAMPLE = r.NodeSample(
    timestamp=1_764_403_200.25,
    host=r.HostSample(
        cpu_percent=12.5,
        load1=1.0,
        load5=0.5,
        load15=0.25,
        memory_total_mb=1_031_891,
        memory_used_mb=20_000,
        memory_available_mb=1_000_000,
        swap_total_mb=0,
        swap_used_mb=0,
        page_faults_per_s=3.0,
        disk_read_bytes_per_s=None,
        nics=(r.NicRate("eth0", 10, 20, 1.5, None),),
        tx_bytes_total=10,
        rx_bytes_total=20,
        processes_total=312,
        threads_total=1400,
    ),
    gpus=(
        r.GpuSample(
            index=0,
            uuid="GPU-11111111-2222-3333-4444-555555555555",
            utilization_gpu_pct=0.0,  # 0 must stay 0, not become "unknown"
            memory_used_mb=0,
            temperature_c=41.0,
            throttle_reasons=("gpu_idle",),
            ecc_uncorrected_volatile=0,
            remapped_rows_failure=False,
            nvlinks=(r.NvLinkState(0, True), r.NvLinkState(1, False)),
            unsupported=("pcie_replay_count",),
        ),
        r.GpuSample(index=1, uuid="GPU-2", lost=True, error="NVML_ERROR_GPU_IS_LOST"),
    ),
    collectors=(r.CollectorStatus("gpu", True, 0.003), r.CollectorStatus("host", False, 0.1, "OSError: x")),
)


def test_inventory_round_trips_with_optional_fields_kept_apart_from_zero():
    wire = convert.inventory_to_pb(FULL_INVENTORY)
    again = convert.inventory_from_pb(pb.NodeInventory.FromString(wire.SerializeToString()))
    assert again == FULL_INVENTORY
    assert wire.gpus[0].compute_capability_major == 8
    assert not wire.gpus[1].HasField("compute_capability_major")
    assert not wire.gpus[1].HasField("mig_enabled")
    assert wire.host.nics[0].speed_mbps == 100_000
    assert not wire.host.nics[1].HasField("speed_mbps")


def test_sample_round_trips_and_zero_is_not_unknown():
    wire = convert.sample_to_pb(FULL_SAMPLE)
    again = convert.sample_from_pb(pb.NodeSample.FromString(wire.SerializeToString()))
    assert again == FULL_SAMPLE
    assert wire.gpus[0].HasField("utilization_gpu_pct")
    assert wire.gpus[0].utilization_gpu_pct == 0.0
    assert not wire.gpus[0].HasField("power_draw_w")
    assert again.gpus[0].power_draw_w is None
    assert not wire.host.HasField("disk_read_bytes_per_s")
    assert again.gpus[1].lost is True


def test_sample_health_events_travel_separately():
    event = r.HealthEvent("xid", 5.0, gpu_index=0, gpu_uuid="GPU-1", xid=79, message="fell off the bus")
    sample = r.NodeSample(timestamp=5.0, host=None, health_events=(event,))
    again = convert.sample_from_pb(convert.sample_to_pb(sample))
    assert again.health_events == ()
    assert again.host is None


@pytest.mark.parametrize(
    "event",
    [
        r.HealthEvent("xid", 5.0, gpu_index=0, gpu_uuid="GPU-1", xid=79, message="fell off the bus"),
        r.HealthEvent("gpu_lost", 6.5, gpu_index=0, nvml_error="NVML_ERROR_GPU_IS_LOST"),
        r.HealthEvent("collector_error", 7.0, message="host: OSError"),
    ],
)
def test_health_event_round_trips(event):
    wire = convert.health_to_pb(event)
    assert convert.health_from_pb(pb.HealthEvent.FromString(wire.SerializeToString())) == event
    assert wire.HasField("gpu_index") == (event.gpu_index is not None)


def test_generic_entry_points_pick_the_class_by_message_name():
    wire = convert.to_pb(r.NicInfo("eth1", None, "aa"))
    assert isinstance(wire, pb.NicInfo)
    assert convert.from_pb(wire) == r.NicInfo("eth1", None, "aa")


def test_unknown_types_are_refused():
    with pytest.raises(convert.ConversionError, match="dict"):
        convert.to_pb({"a": 1})
    with pytest.raises(convert.ConversionError, match="Ack"):
        convert.from_pb(pb.Ack(acked_seq=1))


def test_nan_is_carried_not_hidden():
    # conversion is faithful; refusing NaN is the aggregator's validation job
    wire = convert.sample_to_pb(r.NodeSample(timestamp=1.0, host=r.HostSample(cpu_percent=math.nan)))
    assert math.isnan(convert.sample_from_pb(wire).host.cpu_percent)

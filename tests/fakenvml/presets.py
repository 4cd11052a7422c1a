"""Fake GPUs shaped like real models (names and totals as NVML reports them).

Each preset takes the GPU's index, which picks its PCI bus id and a stable
UUID, so two presets on one node never collide.
"""

from __future__ import annotations

import uuid
from dataclasses import replace

from tests.fakenvml import FakeGpu, FakeMig

__all__ = ["PRESETS", "a100_80gb", "h100_sxm", "l4", "t4", "v100", "with_mig"]

_UUID_NAMESPACE = uuid.UUID("6f1c1d7e-3a55-4c1e-9a43-5e0b7d2a9c10")
# Bus ids of the eight GPUs of an HGX board, then made-up ones past them.
_BUS_IDS = (0x07, 0x0F, 0x47, 0x4E, 0x87, 0x90, 0xB7, 0xBD)


def _uuid(prefix: str, key: str) -> str:
    return f"{prefix}-{uuid.uuid5(_UUID_NAMESPACE, key)}"


def _bus_id(index: int) -> str:
    bus = _BUS_IDS[index] if index < len(_BUS_IDS) else 0xC0 + index
    return f"00000000:{bus:02X}:00.0"


def a100_80gb(index: int) -> FakeGpu:
    return FakeGpu(
        name="NVIDIA A100-SXM4-80GB",
        uuid=_uuid("GPU", f"a100-80gb-{index}"),
        memory_total_mb=81920,
        memory_used_mb=3,
        memory_reserved_mb=570,
        pci_bus_id=_bus_id(index),
        compute_capability=(8, 0),
        mig_current=False,
        mig_pending=False,
        power_limit_w=400.0,
        power_draw_w=62.5,
        temperature_c=33,
        clock_sm_mhz=210,
        clock_mem_mhz=1593,
        clock_event_reasons=0x1,  # idle
        nvlinks=(True,) * 12,
        unsupported=("retired_pages",),  # Ampere remaps rows instead
    )


def h100_sxm(index: int) -> FakeGpu:
    return FakeGpu(
        name="NVIDIA H100 80GB HBM3",
        uuid=_uuid("GPU", f"h100-sxm-{index}"),
        memory_total_mb=81559,
        memory_used_mb=1,
        memory_reserved_mb=528,
        pci_bus_id=_bus_id(index),
        compute_capability=(9, 0),
        mig_current=False,
        mig_pending=False,
        power_limit_w=700.0,
        power_draw_w=71.2,
        temperature_c=30,
        clock_sm_mhz=345,
        clock_mem_mhz=2619,
        clock_event_reasons=0x1,
        nvlinks=(True,) * 18,
        unsupported=("retired_pages",),
    )


def t4(index: int) -> FakeGpu:
    return FakeGpu(
        name="Tesla T4",
        uuid=_uuid("GPU", f"t4-{index}"),
        memory_total_mb=15360,
        memory_used_mb=0,
        memory_reserved_mb=255,
        pci_bus_id=_bus_id(index),
        compute_capability=(7, 5),
        mig_current=None,
        power_limit_w=70.0,
        power_draw_w=9.8,
        temperature_c=41,
        clock_sm_mhz=300,
        clock_mem_mhz=405,
        clock_event_reasons=0x1,
        unsupported=("remapped_rows", "nvlink"),
    )


def v100(index: int) -> FakeGpu:
    return FakeGpu(
        name="Tesla V100-SXM2-32GB",
        uuid=_uuid("GPU", f"v100-{index}"),
        memory_total_mb=32768,
        memory_used_mb=0,
        memory_reserved_mb=258,
        pci_bus_id=_bus_id(index),
        compute_capability=(7, 0),
        mig_current=None,
        power_limit_w=300.0,
        power_draw_w=41.0,
        temperature_c=36,
        clock_sm_mhz=135,
        clock_mem_mhz=877,
        clock_event_reasons=0x1,
        nvlinks=(True,) * 6,
        unsupported=("remapped_rows",),
    )


def l4(index: int) -> FakeGpu:
    return FakeGpu(
        name="NVIDIA L4",
        uuid=_uuid("GPU", f"l4-{index}"),
        memory_total_mb=23034,
        memory_used_mb=0,
        memory_reserved_mb=372,
        pci_bus_id=_bus_id(index),
        compute_capability=(8, 9),
        mig_current=None,
        power_limit_w=72.0,
        power_draw_w=16.3,
        temperature_c=38,
        clock_sm_mhz=210,
        clock_mem_mhz=405,
        clock_event_reasons=0x1,
        unsupported=("retired_pages", "nvlink"),
    )


def with_mig(gpu: FakeGpu, profiles: tuple[str, ...], *, pending: bool = True) -> FakeGpu:
    """The GPU with MIG enabled and one MIG device per profile (e.g. "3g.40gb")."""
    migs = []
    for m, profile in enumerate(profiles):
        gigabytes = int(profile.split(".")[1].removesuffix("gb"))
        migs.append(
            FakeMig(
                uuid=_uuid("MIG", f"{gpu.uuid}-{m}-{profile}"),
                name=f"{gpu.name} MIG {profile}",
                memory_mb=gigabytes * 1024,
            )
        )
    return replace(gpu, mig_current=True, mig_pending=pending, mig_devices=tuple(migs))


PRESETS = {"a100_80gb": a100_80gb, "h100_sxm": h100_sxm, "t4": t4, "v100": v100, "l4": l4}

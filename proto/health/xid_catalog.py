"""The XID catalogue: what each XID means and what it takes to recover from it.

Source followed: NVIDIA's "XID Errors" document (GPU deployment and management
documentation), page "Analyzing Xid Errors with the Xid Catalog", the catalog
for Ampere and newer GPUs, in the revision that lists XIDs 1 to 172 and whose
newest driver gates are R575 / CUDA 12.9 (the page carries no date; read for
this project in December 2026). The table below holds its facts (code,
mnemonic, the "Resolution Bucket (Immediate Action)"); the descriptions are
ours. An XID that is not in the table (newer than this revision) has no entry:
`lookup_xid` answers None and it is not fatal by default.

NVIDIA's immediate-action buckets are mapped onto five `Resolution`s:

| NVIDIA bucket | Resolution | why |
|---|---|---|
| IGNORE | none | no action required |
| RESTART_APP | restart_application | |
| RESET_GPU | reset_gpu | |
| RESTART_BM, RESTART_VM | reboot_node | the bare-metal machine or the VM holding the GPU restarts: a Kubernetes node either way |
| CONTACT_SUPPORT | contact_support | |
| CHECK_MECHANICALS (54) | contact_support | someone has to check seating and power cables at the machine |
| UPDATE_SWFW (78) | contact_support | a driver or firmware update by the operator, not an automatic recovery |
| CHECK_UVM (159) | reset_gpu | "reset if UVM/vGPU is in use, else ignore": CUDA uses UVM, so the reset |
| WORKFLOW_XID_45 (45) | none | alone: restart the fabric manager; with another XID: follow that one (it is the usual case) |
| WORKFLOW_XID_48 (48) | reset_gpu | alone: reset; with 63/64: drain and reset |
| WORKFLOW_NVLINK_ERR (74) | reset_gpu | "a GPU reset or node reboot is needed to clear this error" |
| WORKFLOW_NVLINK5_ERR (144-150) | reset_gpu | needs the subcode, which NVML events lack; the fatal subcodes say RESET_GPU |
| XID_154 (154) | reset_gpu | it names another XID's action; NVML's recovery-action field says which |
| no bucket published (162-172) | per entry, see `_NO_BUCKET` | chosen from NVIDIA's trigger text or the XID it mirrors |

Codes the catalog lists as "Unused" (deprecated, or used only on Volta and
older GPUs) keep NVIDIA's immediate action, CONTACT_SUPPORT (one, 108, says
IGNORE): on a current GPU such an XID is unexpected, so it is treated as a
fault to report. They are marked `in_use=False`.

Unhealthy by default: every XID whose resolution is in `UNHEALTHY_RESOLUTIONS`
(reset the GPU, reboot the node, contact support): the GPU cannot be trusted
with new work until somebody acts. `restart_application` and `none` leave the
GPU healthy: the fault was the application's, or is already handled.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from types import MappingProxyType

__all__ = [
    "CATALOG_REVISION",
    "UNHEALTHY_RESOLUTIONS",
    "XID_CATALOG",
    "Resolution",
    "XidEntry",
    "default_fatal_xids",
    "describe_xid",
    "lookup_xid",
    "recovery_action_text",
    "resolution_of_bucket",
]

CATALOG_REVISION = (
    "NVIDIA XID Errors, 'Analyzing Xid Errors with the Xid Catalog' (Ampere and newer), "
    "XIDs 1-172, driver gates up to R575 / CUDA 12.9; read December 2026"
)


class Resolution(str, enum.Enum):
    """What it takes to bring a GPU back into service after a fault (least to most)."""

    NONE = "none"
    RESTART_APPLICATION = "restart_application"
    RESET_GPU = "reset_gpu"
    REBOOT_NODE = "reboot_node"
    CONTACT_SUPPORT = "contact_support"


UNHEALTHY_RESOLUTIONS: frozenset[Resolution] = frozenset(
    {Resolution.RESET_GPU, Resolution.REBOOT_NODE, Resolution.CONTACT_SUPPORT}
)

_ACTION_TEXT = {
    Resolution.NONE: "no action needed",
    Resolution.RESTART_APPLICATION: "restart the application",
    Resolution.RESET_GPU: "reset the GPU",
    Resolution.REBOOT_NODE: "reboot the node",
    Resolution.CONTACT_SUPPORT: "contact support",
}


def recovery_action_text(resolution: Resolution) -> str:
    """The action in words, for messages: "reset the GPU", "reboot the node", ..."""
    return _ACTION_TEXT[resolution]


_BUCKETS: Mapping[str, Resolution] = MappingProxyType(
    {
        "IGNORE": Resolution.NONE,
        "RESTART_APP": Resolution.RESTART_APPLICATION,
        "RESET_GPU": Resolution.RESET_GPU,
        "RESTART_BM": Resolution.REBOOT_NODE,
        "RESTART_VM": Resolution.REBOOT_NODE,
        "CONTACT_SUPPORT": Resolution.CONTACT_SUPPORT,
        "CHECK_MECHANICALS": Resolution.CONTACT_SUPPORT,
        "UPDATE_SWFW": Resolution.CONTACT_SUPPORT,
        "CHECK_UVM": Resolution.RESET_GPU,
        "WORKFLOW_XID_45": Resolution.NONE,
        "WORKFLOW_XID_48": Resolution.RESET_GPU,
        "WORKFLOW_NVLINK_ERR": Resolution.RESET_GPU,
        "WORKFLOW_NVLINK5_ERR": Resolution.RESET_GPU,
        "XID_154": Resolution.RESET_GPU,
    }
)


def resolution_of_bucket(bucket: str) -> Resolution:
    """NVIDIA's immediate-action bucket name (e.g. "RESTART_BM") as a `Resolution`; KeyError if unknown."""
    return _BUCKETS[bucket]


@dataclass(frozen=True)
class XidEntry:
    code: int
    mnemonic: str  # NVIDIA's name, e.g. "ROBUST_CHANNEL_GPU_HAS_FALLEN_OFF_THE_BUS"
    description: str  # one line, ours
    resolution: Resolution
    nvidia_bucket: str = ""  # the immediate-action bucket as NVIDIA publishes it; "" where it publishes none
    in_use: bool = True  # False: listed as "Unused" on Ampere and newer

    @property
    def unhealthy(self) -> bool:
        return self.resolution in UNHEALTHY_RESOLUTIONS


# (code, mnemonic, description, NVIDIA's immediate-action bucket), for the XIDs in use.
_IN_USE: tuple[tuple[int, str, str, str], ...] = (
    (8, "ROBUST_CHANNEL_FIFO_ERROR_IDLE_TIMEOUT", "a channel stopped making progress (idle timeout)", "RESTART_APP"),
    (11, "ROBUST_CHANNEL_GR_ERROR_MISSING_HW", "invalid or corrupted command stream sent to the GPU", "RESTART_APP"),
    (13, "ROBUST_CHANNEL_GR_EXCEPTION", "graphics/compute engine exception, usually an application fault", "RESTART_APP"),
    (14, "ROBUST_CHANNEL_FAKE_ERROR", "an error injected on purpose from user space", "IGNORE"),
    (25, "ROBUST_CHANNEL_GR_ILLEGAL_NOTIFY", "illegal command stream sent to the GPU", "RESTART_APP"),
    (31, "ROBUST_CHANNEL_FIFO_ERROR_MMU_ERR_FLT", "GPU memory page fault (illegal address), usually an app bug", "RESTART_APP"),
    (32, "ROBUST_CHANNEL_PBDMA_ERROR", "the command DMA engine reported a fault, often PCIe signal quality", "RESTART_APP"),
    (37, "ROBUST_CHANNEL_FECS_ERR_UNIMP_FIRMWARE_METHOD", "driver firmware error (unimplemented method)", "IGNORE"),
    (38, "ROBUST_CHANNEL_FECS_ERR_WATCHDOG_TIMEOUT", "driver firmware watchdog timeout", "IGNORE"),
    (39, "ROBUST_CHANNEL_CE0_ERROR", "copy engine 0 exception", "RESTART_APP"),
    (40, "ROBUST_CHANNEL_CE1_ERROR", "copy engine 1 exception", "RESTART_APP"),
    (41, "ROBUST_CHANNEL_CE2_ERROR", "copy engine 2 exception", "RESTART_APP"),
    (43, "ROBUST_CHANNEL_RESETCHANNEL_VERIF_ERROR", "an application hit a software fault and was stopped; GPU fine", "IGNORE"),
    (44, "ROBUST_CHANNEL_GR_FAULT_DURING_CTXSW", "engine fault during a context switch", "IGNORE"),
    (45, "ROBUST_CHANNEL_PREEMPTIVE_REMOVAL", "the driver tore down an application's work after an abort or an earlier error",
     "WORKFLOW_XID_45"),
    (46, "ROBUST_CHANNEL_GPU_TIMEOUT_ERROR", "the GPU stopped processing (timeout)", "RESET_GPU"),
    (48, "ROBUST_CHANNEL_GPU_ECC_DBE", "uncorrectable (double-bit) ECC memory error", "WORKFLOW_XID_48"),
    (54, "SILENT_RUNNING_PWR_REDUCED_CLOCKING", "the board's auxiliary power is not connected", "CHECK_MECHANICALS"),
    (60, "ROBUST_CHANNEL_SEC2_ERROR", "video/security processor exception", "RESTART_APP"),
    (62, "PMU_HALT_ERROR", "an internal micro-controller halted", "RESET_GPU"),
    (63, "INFOROM_DRAM_RETIREMENT_EVENT", "a memory row was remapped (or a page retired) after ECC errors", "IGNORE"),
    (64, "INFOROM_DRAM_RETIREMENT_FAILURE", "remapping a memory row (or retiring a page) failed", "RESET_GPU"),
    (66, "ROBUST_CHANNEL_FECS_ERR_REG_ACCESS_VIOLATION", "illegal register access by the driver", "IGNORE"),
    (67, "ROBUST_CHANNEL_FECS_ERR_VERIF_VIOLATION", "illegal access by the driver", "IGNORE"),
    (68, "ROBUST_CHANNEL_NVDEC0_ERROR", "video decoder 0 exception", "RESTART_APP"),
    (69, "ROBUST_CHANNEL_GR_CLASS_ERROR", "graphics engine class error", "RESTART_APP"),
    (70, "ROBUST_CHANNEL_CE3_ERROR", "copy engine 3 error", "RESTART_APP"),
    (71, "ROBUST_CHANNEL_CE4_ERROR", "copy engine 4 error", "RESTART_APP"),
    (72, "ROBUST_CHANNEL_CE5_ERROR", "copy engine 5 error", "RESTART_APP"),
    (74, "NVLINK_ERROR", "NVLink error on a link to another GPU or an NVSwitch", "WORKFLOW_NVLINK_ERR"),
    (75, "ROBUST_CHANNEL_CE6_ERROR", "copy engine 6 error", "RESTART_APP"),
    (76, "ROBUST_CHANNEL_CE7_ERROR", "copy engine 7 error", "RESTART_APP"),
    (77, "ROBUST_CHANNEL_CE8_ERROR", "copy engine 8 error", "RESTART_APP"),
    (78, "VGPU_START_ERROR", "a vGPU failed to start (driver or profile mismatch)", "UPDATE_SWFW"),
    (79, "ROBUST_CHANNEL_GPU_HAS_FALLEN_OFF_THE_BUS", "GPU has fallen off the bus", "RESTART_BM"),
    (80, "PBDMA_PUSHBUFFER_CRC_MISMATCH", "corrupted data sent to the GPU (checksum mismatch)", "RESTART_APP"),
    (82, "ROBUST_CHANNEL_NVJPG0_ERROR", "JPEG engine 0 error", "RESTART_APP"),
    (83, "ROBUST_CHANNEL_NVDEC1_ERROR", "video decoder 1 error", "RESTART_APP"),
    (84, "ROBUST_CHANNEL_NVDEC2_ERROR", "video decoder 2 error", "RESTART_APP"),
    (85, "ROBUST_CHANNEL_CE9_ERROR", "copy engine 9 error", "RESTART_APP"),
    (86, "ROBUST_CHANNEL_OFA0_ERROR", "optical flow accelerator 0 exception", "RESTART_APP"),
    (88, "ROBUST_CHANNEL_NVDEC3_ERROR", "video decoder 3 error", "RESTART_APP"),
    (89, "ROBUST_CHANNEL_NVDEC4_ERROR", "video decoder 4 error", "RESTART_APP"),
    (92, "EXCESSIVE_SBE_INTERRUPTS", "high rate of corrected single-bit ECC errors", "IGNORE"),
    (93, "INFOROM_ERASE_LIMIT_EXCEEDED", "InfoROM update refused: its provisioned wear limit is reached", "IGNORE"),
    (94, "ROBUST_CHANNEL_CONTAINED_ERROR", "uncorrectable memory error contained to one application", "RESTART_APP"),
    (95, "ROBUST_CHANNEL_UNCONTAINED_ERROR", "uncorrectable memory error affecting several applications", "RESET_GPU"),
    (96, "ROBUST_CHANNEL_NVDEC5_ERROR", "video decoder 5 error", "RESTART_APP"),
    (97, "ROBUST_CHANNEL_NVDEC6_ERROR", "video decoder 6 error", "RESTART_APP"),
    (98, "ROBUST_CHANNEL_NVDEC7_ERROR", "video decoder 7 error", "RESTART_APP"),
    (99, "ROBUST_CHANNEL_NVJPG1_ERROR", "JPEG engine 1 error", "RESTART_APP"),
    (100, "ROBUST_CHANNEL_NVJPG2_ERROR", "JPEG engine 2 error", "RESTART_APP"),
    (101, "ROBUST_CHANNEL_NVJPG3_ERROR", "JPEG engine 3 error", "RESTART_APP"),
    (102, "ROBUST_CHANNEL_NVJPG4_ERROR", "JPEG engine 4 error", "RESTART_APP"),
    (103, "ROBUST_CHANNEL_NVJPG5_ERROR", "JPEG engine 5 error", "RESTART_APP"),
    (104, "ROBUST_CHANNEL_NVJPG6_ERROR", "JPEG engine 6 error", "RESTART_APP"),
    (105, "ROBUST_CHANNEL_NVJPG7_ERROR", "JPEG engine 7 error", "RESTART_APP"),
    (106, "SMBPBI_TEST_MESSAGE", "test message from the out-of-band management interface", "IGNORE"),
    (107, "SMBPBI_TEST_MESSAGE_SILENT", "silent test message from the out-of-band management interface", "IGNORE"),
    (109, "ROBUST_CHANNEL_CTXSW_TIMEOUT_ERROR", "a context switch timed out", "RESET_GPU"),
    (110, "SEC_FAULT_ERROR", "security fault, usually failing hardware", "RESET_GPU"),
    (119, "GSP_RPC_TIMEOUT", "the GPU System Processor did not answer a call in time", "RESET_GPU"),
    (120, "GSP_ERROR", "error in code running on the GPU System Processor", "RESET_GPU"),
    (121, "C2C_ERROR", "corrected errors on the chip-to-chip link to a Grace CPU", "IGNORE"),
    (126, "ROBUST_CHANNEL_CE10_ERROR", "copy engine 10 error", "RESTART_APP"),
    (127, "ROBUST_CHANNEL_CE11_ERROR", "copy engine 11 error", "RESTART_APP"),
    (128, "ROBUST_CHANNEL_CE12_ERROR", "copy engine 12 error", "RESTART_APP"),
    (129, "ROBUST_CHANNEL_CE13_ERROR", "copy engine 13 error", "RESTART_APP"),
    (130, "ROBUST_CHANNEL_CE14_ERROR", "copy engine 14 error", "RESTART_APP"),
    (131, "ROBUST_CHANNEL_CE15_ERROR", "copy engine 15 error", "RESTART_APP"),
    (132, "ROBUST_CHANNEL_CE16_ERROR", "copy engine 16 error", "RESTART_APP"),
    (133, "ROBUST_CHANNEL_CE17_ERROR", "copy engine 17 error", "RESTART_APP"),
    (134, "ROBUST_CHANNEL_CE18_ERROR", "copy engine 18 error", "RESTART_APP"),
    (135, "ROBUST_CHANNEL_CE19_ERROR", "copy engine 19 error", "RESTART_APP"),
    (136, "ALI_TRAINING_FAIL", "NVLink link training failed", "RESET_GPU"),
    (137, "NVLINK_PRIV_ERR", "illegal NVLink peer-to-peer access, usually an application bug", "IGNORE"),
    (139, "ROBUST_CHANNEL_OFA1_ERROR", "optical flow accelerator 1 error", "RESTART_APP"),
    (140, "UNRECOVERABLE_ECC_ERROR_ESCAPE", "uncorrectable memory error that page offlining/row remapping could not catch",
     "RESET_GPU"),
    (141, "ROBUST_CHANNEL_FAST_PATH_ERROR", "CUDA fast path error", "IGNORE"),
    (142, "ROBUST_CHANNEL_NVENC3_ERROR", "video encoder 3 error", "CONTACT_SUPPORT"),
    (143, "GPU_INIT_ERROR", "GPU initialization failed", "RESET_GPU"),
    (144, "NVLINK_SAW_ERROR", "NVLink SAW unit error", "WORKFLOW_NVLINK5_ERR"),
    (145, "NVLINK_RLW_ERROR", "NVLink RLW unit error", "WORKFLOW_NVLINK5_ERR"),
    (146, "NVLINK_TLW_ERROR", "NVLink TLW unit error", "WORKFLOW_NVLINK5_ERR"),
    (147, "NVLINK_TREX_ERROR", "NVLink TREX unit error", "WORKFLOW_NVLINK5_ERR"),
    (148, "NVLINK_NVLPW_CTRL_ERROR", "NVLink NVLPW_CTRL unit error", "WORKFLOW_NVLINK5_ERR"),
    (149, "NVLINK_NETIR_ERROR", "NVLink NETIR error (link events, link down)", "WORKFLOW_NVLINK5_ERR"),
    (150, "NVLINK_MSE_ERROR", "NVLink management engine (MSE) error", "WORKFLOW_NVLINK5_ERR"),
    (151, "ROBUST_CHANNEL_KEY_ROTATION_ERROR", "confidential-computing key rotation failed", "RESTART_VM"),
    (152, "ROBUST_CHANNEL_DLA_SMMU_ERROR", "deep learning accelerator SMMU error", "IGNORE"),
    (153, "ROBUST_CHANNEL_DLA_TIMEOUT", "deep learning accelerator timeout", "IGNORE"),
    (154, "GPU_RECOVERY_ACTION_CHANGED", "the driver changed the GPU's required recovery action (comes with another XID)",
     "XID_154"),
    (155, "NVLINK_SW_DEFINED_ERROR", "an NVLink was taken down on purpose (software-defined, e.g. to sleep)", "RESET_GPU"),
    (156, "RESOURCE_RETIREMENT_EVENT", "a hardware resource was retired", "RESET_GPU"),
    (157, "RESOURCE_RETIREMENT_FAILURE", "retiring a resource failed: no spares left", "IGNORE"),
    (158, "GPU_FATAL_TIMEOUT", "fatal timeout inside the GPU", "RESET_GPU"),
    (159, "ROBUST_CHANNEL_CHI_NON_DATA_ERROR", "non-data error on a chip-to-chip (CHI) link", "CHECK_UVM"),
    (160, "CHANNEL_RETIREMENT_EVENT", "a channel was retired", "IGNORE"),
    (161, "CHANNEL_RETIREMENT_FAILURE", "retiring a channel failed", "IGNORE"),
)

# XIDs for which the catalog publishes no immediate-action bucket: (mnemonic,
# description, our resolution), the resolution read from NVIDIA's trigger text
# or taken from the XID the entry mirrors.
_NO_BUCKET: Mapping[int, tuple[str, str, Resolution]] = MappingProxyType(
    {
        162: ("PSHC_REENGAGED", "power smoothing circuitry engaged again", Resolution.NONE),
        163: ("PSHC_DISENGAGED", "power smoothing circuitry disengaged (the text says no reset is needed)", Resolution.NONE),
        164: ("PSHC_LOW_LIFETIME", "power smoothing circuitry close to the end of its life", Resolution.NONE),
        165: ("PSHC_ZERO_LIFETIME", "power smoothing circuitry worn out; smoothing is switched off", Resolution.NONE),
        166: ("NVLINK_SECURE_CRYPTO_ERR", "traffic on an NVLink before it was set up for encryption (confidential computing)",
              Resolution.CONTACT_SUPPORT),
        167: ("PCIE_FATAL_TIMEOUT", "fatal PCIe timeout (treated like 158, a GPU fatal timeout)", Resolution.RESET_GPU),
        168: ("REDUCED_GPU_MEMORY_CAPACITY", "errors in the write-protected memory region reduce usable memory; boot again",
              Resolution.REBOOT_NODE),
        169: ("SEC2_HALT_ERROR", "the SEC2 internal micro-controller halted (treated like 62)", Resolution.RESET_GPU),
        170: ("NVLINK_SECURE_OTHER", "unexpected NVLink interrupt in confidential-computing mode", Resolution.CONTACT_SUPPORT),
        171: ("UNCORRECTABLE_DRAM_ERROR", "detail to XID 48: the uncorrectable error was in DRAM", Resolution.RESET_GPU),
        172: ("UNCORRECTABLE_SRAM_ERROR", "detail to XID 48: the uncorrectable error was in SRAM", Resolution.RESET_GPU),
    }
)

# Listed as "Unused" on Ampere and newer; immediate action CONTACT_SUPPORT (108: IGNORE).
_UNUSED: Mapping[int, str] = MappingProxyType(
    {
        1: "ROBUST_CHANNEL_FIFO_ERROR_FIFO_METHOD",
        2: "ROBUST_CHANNEL_FIFO_ERROR_SW_METHOD",
        3: "ROBUST_CHANNEL_FIFO_ERROR_UNK_METHOD",
        4: "ROBUST_CHANNEL_FIFO_ERROR_CHANNEL_BUSY",
        5: "ROBUST_CHANNEL_FIFO_ERROR_RUNOUT_OVERFLOW",
        6: "ROBUST_CHANNEL_FIFO_ERROR_PARSE_ERR",
        7: "ROBUST_CHANNEL_FIFO_ERROR_PTE_ERR",
        9: "ROBUST_CHANNEL_GR_ERROR_INSTANCE",
        10: "ROBUST_CHANNEL_GR_ERROR_SINGLE_STEP",
        12: "ROBUST_CHANNEL_GR_ERROR_SW_METHOD",
        15: "ROBUST_CHANNEL_SCANLINE_TIMEOUT",
        16: "ROBUST_CHANNEL_VBLANK_CALLBACK_TIMEOUT",
        17: "ROBUST_CHANNEL_PARAMETER_ERROR",
        18: "ROBUST_CHANNEL_BUS_MASTER_TIMEOUT_ERROR",
        19: "ROBUST_CHANNEL_DISP_MISSED_NOTIFIER",
        20: "ROBUST_CHANNEL_MPEG_ERROR_SW_METHOD",
        21: "ROBUST_CHANNEL_ME_ERROR_SW_METHOD",
        22: "ROBUST_CHANNEL_VP_ERROR_SW_METHOD",
        23: "ROBUST_CHANNEL_RC_LOGGING_ENABLED",
        24: "ROBUST_CHANNEL_GR_SEMAPHORE_TIMEOUT",
        26: "ROBUST_CHANNEL_FIFO_ERROR_FBISTATE_TIMEOUT",
        27: "ROBUST_CHANNEL_VP_ERROR",
        28: "ROBUST_CHANNEL_VP2_ERROR",
        29: "ROBUST_CHANNEL_BSP_ERROR",
        30: "ROBUST_CHANNEL_BAD_ADDR_ACCESS",
        33: "ROBUST_CHANNEL_SEC_ERROR",
        34: "ROBUST_CHANNEL_MSVLD_ERROR",
        35: "ROBUST_CHANNEL_MSPDEC_ERROR",
        36: "ROBUST_CHANNEL_MSPPP_ERROR",
        42: "ROBUST_CHANNEL_VIC_ERROR",
        47: "ROBUST_CHANNEL_NVENC0_ERROR",
        49: "SILENT_RUNNING_CONSTANT_LEVEL_SET_BY_REGISTRY",
        50: "SILENT_RUNNING_LEVEL_TRANSITION_DUE_TO_RC_ERROR",
        51: "SILENT_RUNNING_STRESS_TEST_FAILURE",
        52: "SILENT_RUNNING_LEVEL_TRANS_DUE_TO_TEMP_RISE",
        53: "SILENT_RUNNING_TEMP_REDUCED_CLOCKING",
        55: "SILENT_RUNNING_TEMPERATURE_READ_ERROR",
        56: "DISPLAY_CHANNEL_EXCEPTION",
        57: "FB_LINK_TRAINING_FAILURE_ERROR",
        58: "FB_MEMORY_ERROR",
        59: "PMU_ERROR",
        61: "PMU_BREAKPOINT",
        65: "ROBUST_CHANNEL_NVENC1_ERROR",
        73: "ROBUST_CHANNEL_NVENC2_ERROR",
        81: "ROBUST_CHANNEL_VGA_SUBSYSTEM_ERROR",
        87: "NVTELEMETRY_DRIVER_REPORT",
        90: "LTC_ERROR",
        91: "RESERVED_XID",
        108: "NVLINK_REMOTE_TRANSLATION_ERROR",
        111: "BUNDLE_ERROR_EVENT",
        112: "DISP_SUPERVISOR_ERROR",
        113: "DP_LT_FAILURE",
        114: "HEAD_RG_UNDERFLOW",
        115: "CORE_CHANNEL_REGS",
        116: "WINDOW_CHANNEL_REGS",
        117: "CURSOR_CHANNEL_REGS",
        118: "HEAD_REGS",
        122: "SPI_PMU_RPC_READ_FAIL",
        123: "SPI_PMU_RPC_WRITE_FAIL",
        124: "SPI_PMU_RPC_ERASE_FAIL",
        125: "INFOROM_FS_ERROR",
        138: "ROBUST_CHANNEL_DLA_ERROR",
    }
)
_UNUSED_BUCKET_EXCEPTIONS = {108: "IGNORE"}


def _build() -> dict[int, XidEntry]:
    entries: dict[int, XidEntry] = {}
    for code, mnemonic, description, bucket in _IN_USE:
        entries[code] = XidEntry(code, mnemonic, description, resolution_of_bucket(bucket), bucket)
    for code, (mnemonic, description, resolution) in _NO_BUCKET.items():
        entries[code] = XidEntry(code, mnemonic, description, resolution)
    for code, mnemonic in _UNUSED.items():
        bucket = _UNUSED_BUCKET_EXCEPTIONS.get(code, "CONTACT_SUPPORT")
        description = "not used on Ampere and newer GPUs (older GPUs: NVIDIA's archived catalog)"
        entries[code] = XidEntry(code, mnemonic, description, resolution_of_bucket(bucket), bucket, in_use=False)
    return dict(sorted(entries.items()))


XID_CATALOG: Mapping[int, XidEntry] = MappingProxyType(_build())


def lookup_xid(code: int) -> XidEntry | None:
    return XID_CATALOG.get(code)


@cache
def default_fatal_xids() -> frozenset[int]:
    """The XIDs that make a GPU unhealthy by default (their resolution is in `UNHEALTHY_RESOLUTIONS`)."""
    return frozenset(code for code, entry in XID_CATALOG.items() if entry.unhealthy)


def describe_xid(code: int) -> str:
    """'XID 79: GPU has fallen off the bus', or 'XID 4242' when the catalogue does not know it."""
    entry = XID_CATALOG.get(code)
    return f"XID {code}: {entry.description}" if entry is not None else f"XID {code}"

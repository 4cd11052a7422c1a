"""The XID catalogue against facts read from NVIDIA's Xid catalog (literal values, not recomputed)."""

import pytest

from proto.health.xid_catalog import (
    UNHEALTHY_RESOLUTIONS,
    XID_CATALOG,
    Resolution,
    default_fatal_xids,
    describe_xid,
    lookup_xid,
    recovery_action_text,
    resolution_of_bucket,
)


@pytest.mark.parametrize(
    ("code", "mnemonic", "bucket", "resolution"),
    [
        (13, "ROBUST_CHANNEL_GR_EXCEPTION", "RESTART_APP", Resolution.RESTART_APPLICATION),
        (31, "ROBUST_CHANNEL_FIFO_ERROR_MMU_ERR_FLT", "RESTART_APP", Resolution.RESTART_APPLICATION),
        (43, "ROBUST_CHANNEL_RESETCHANNEL_VERIF_ERROR", "IGNORE", Resolution.NONE),
        (45, "ROBUST_CHANNEL_PREEMPTIVE_REMOVAL", "WORKFLOW_XID_45", Resolution.NONE),
        (48, "ROBUST_CHANNEL_GPU_ECC_DBE", "WORKFLOW_XID_48", Resolution.RESET_GPU),
        (54, "SILENT_RUNNING_PWR_REDUCED_CLOCKING", "CHECK_MECHANICALS", Resolution.CONTACT_SUPPORT),
        (63, "INFOROM_DRAM_RETIREMENT_EVENT", "IGNORE", Resolution.NONE),
        (64, "INFOROM_DRAM_RETIREMENT_FAILURE", "RESET_GPU", Resolution.RESET_GPU),
        (74, "NVLINK_ERROR", "WORKFLOW_NVLINK_ERR", Resolution.RESET_GPU),
        (79, "ROBUST_CHANNEL_GPU_HAS_FALLEN_OFF_THE_BUS", "RESTART_BM", Resolution.REBOOT_NODE),
        (92, "EXCESSIVE_SBE_INTERRUPTS", "IGNORE", Resolution.NONE),
        (94, "ROBUST_CHANNEL_CONTAINED_ERROR", "RESTART_APP", Resolution.RESTART_APPLICATION),
        (95, "ROBUST_CHANNEL_UNCONTAINED_ERROR", "RESET_GPU", Resolution.RESET_GPU),
        (119, "GSP_RPC_TIMEOUT", "RESET_GPU", Resolution.RESET_GPU),
        (142, "ROBUST_CHANNEL_NVENC3_ERROR", "CONTACT_SUPPORT", Resolution.CONTACT_SUPPORT),
        (151, "ROBUST_CHANNEL_KEY_ROTATION_ERROR", "RESTART_VM", Resolution.REBOOT_NODE),
        (154, "GPU_RECOVERY_ACTION_CHANGED", "XID_154", Resolution.RESET_GPU),
        (159, "ROBUST_CHANNEL_CHI_NON_DATA_ERROR", "CHECK_UVM", Resolution.RESET_GPU),
    ],
)
def test_entries_follow_nvidias_catalog(code, mnemonic, bucket, resolution):
    entry = lookup_xid(code)
    assert entry is not None
    assert (entry.code, entry.mnemonic, entry.nvidia_bucket, entry.resolution, entry.in_use) == (
        code, mnemonic, bucket, resolution, True)
    assert entry.description


def test_every_code_of_the_revision_is_there_and_nothing_else():
    assert sorted(XID_CATALOG) == list(range(1, 173))
    assert lookup_xid(173) is None
    assert lookup_xid(0) is None


def test_unused_codes_keep_nvidias_contact_support():
    for code in (1, 9, 58, 61, 90, 111, 138):
        entry = XID_CATALOG[code]
        assert (entry.in_use, entry.nvidia_bucket, entry.resolution) == (False, "CONTACT_SUPPORT", Resolution.CONTACT_SUPPORT)
    assert XID_CATALOG[108].resolution is Resolution.NONE  # the one unused code NVIDIA says to ignore


def test_entries_without_a_published_bucket_have_a_chosen_resolution():
    assert {c: XID_CATALOG[c].resolution for c in (162, 165, 167, 168, 171)} == {
        162: Resolution.NONE, 165: Resolution.NONE, 167: Resolution.RESET_GPU,
        168: Resolution.REBOOT_NODE, 171: Resolution.RESET_GPU,
    }
    assert XID_CATALOG[167].nvidia_bucket == ""


def test_default_fatal_xids_are_the_unhealthy_buckets():
    assert {Resolution.RESET_GPU, Resolution.REBOOT_NODE, Resolution.CONTACT_SUPPORT} == UNHEALTHY_RESOLUTIONS
    in_use = sorted(c for c in default_fatal_xids() if XID_CATALOG[c].in_use)
    assert in_use == [46, 48, 54, 62, 64, 74, 78, 79, 95, 109, 110, 119, 120, 136, 140, 142, 143,
                      144, 145, 146, 147, 148, 149, 150, 151, 154, 155, 156, 158, 159, 166, 167, 168, 169, 170, 171, 172]
    for benign in (13, 31, 43, 45, 63, 92, 94, 108):
        assert benign not in default_fatal_xids()


def test_bucket_names_map_onto_five_resolutions():
    assert resolution_of_bucket("RESTART_BM") is Resolution.REBOOT_NODE
    assert resolution_of_bucket("IGNORE") is Resolution.NONE
    with pytest.raises(KeyError):
        resolution_of_bucket("REBOOT_EVERYTHING")


def test_texts():
    assert [recovery_action_text(r) for r in Resolution] == [
        "no action needed", "restart the application", "reset the GPU", "reboot the node", "contact support"]
    assert describe_xid(79) == "XID 79: GPU has fallen off the bus"
    assert describe_xid(4242) == "XID 4242"
    assert Resolution("reset_gpu") is Resolution.RESET_GPU

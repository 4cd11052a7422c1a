"""NVML's GPU recovery action (the driver's own word on what a GPU needs) as a `Resolution`.

R570 and newer drivers answer `nvmlDeviceGetFieldValues` for the field
`NVML_FI_DEV_GET_GPU_RECOVERY_ACTION` with an `nvmlDeviceGpuRecoveryAction_t`
(nvml.h); older ones answer NotSupported, which is normal. The agent reads it
with every sample (`GpuSample.recovery_action`); the health rule
(`proto.health.gpu_rule`) makes a GPU whose driver asks for a reset or a
reboot unhealthy, with that action in its message.
"""

from __future__ import annotations

from proto.health.xid_catalog import Resolution

__all__ = ["RECOVERY_ACTIONS", "recovery_action_name", "resolution_of_recovery_action"]

# nvmlDeviceGpuRecoveryAction_t -> (NVML's name, our Resolution)
RECOVERY_ACTIONS: dict[int, tuple[str, Resolution]] = {
    0: ("NONE", Resolution.NONE),
    1: ("GPU_RESET", Resolution.RESET_GPU),
    2: ("NODE_REBOOT", Resolution.REBOOT_NODE),
    # drain peer-to-peer traffic: the GPU is usable again once its P2P users are restarted
    3: ("DRAIN_P2P", Resolution.RESTART_APPLICATION),
    4: ("DRAIN_AND_RESET", Resolution.RESET_GPU),
    # the NVLink fabric's IMEX domain needs recovering: an operator's job, not a node's
    5: ("RECOVER_IMEX_DOMAIN", Resolution.CONTACT_SUPPORT),
    # a reset of the GPU's PCIe bus: what a GPU reset does, one level down
    6: ("BUS_RESET", Resolution.RESET_GPU),
    7: ("SYSTEM_REBOOT", Resolution.REBOOT_NODE),
}


def resolution_of_recovery_action(code: int | None) -> Resolution | None:
    """The Resolution the driver's recovery action calls for; None when unset or unknown (a newer driver's value)."""
    if code is None:
        return None
    entry = RECOVERY_ACTIONS.get(int(code))
    return entry[1] if entry is not None else None


def recovery_action_name(code: int) -> str:
    entry = RECOVERY_ACTIONS.get(int(code))
    return entry[0] if entry is not None else f"UNKNOWN_{int(code)}"

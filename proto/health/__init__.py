"""GPU health shared by the agent and the aggregator: the XID catalogue and the one rule deciding a GPU's health.

- `xid_catalog`: every XID NVIDIA documents, its mnemonic, a one-line
  description and the recovery it needs (`Resolution`), and which XIDs make a
  GPU unhealthy by default;
- `gpu_rule`: from the typed readings (`proto.telemetry.v1.readings`) and a
  node's recent health events to the GPU problems (`GpuProblem`) that make a
  GPU unhealthy.

Both are pure: no I/O, no clock (the time is passed in).
"""

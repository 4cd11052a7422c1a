"""Quarantine with a budget: taint (and optionally cordon) nodes whose GPUs need a reset or a reboot, lift it when healthy.

- `config`: the mode and the budget from the environment (`AIOS_QUARANTINE`, ...);
- `plan`: pure: which nodes to quarantine, release, hold or report over budget;
- `store`: the current state and the history of actions in SQLite;
- `kube`: the Node writes (taint, cordon) and the Events;
- `controller`: judging with the shared health rule, the pre-checks, applying, reporting.

docs/gpu-health.md is the operators' description.
"""

#!/bin/sh
# Drop-in for the operators' guide's `sh ./gpu_info.sh`: write this node's
# gpu.aios/info annotation once, read through NVML (no nvidia-smi, jq or
# kubectl). Where the agent DaemonSet runs, the annotation is kept true
# continuously and this is not needed.
# NODE_NAME defaults to this host's name; KUBECONFIG is honoured.
set -eu
: "${NODE_NAME:=$(hostname)}"
export NODE_NAME
exec aios-agent annotate --once "$@"

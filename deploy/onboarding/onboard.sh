#!/bin/sh
# Drop-in for the operators' guide's onboarding script:
#   ./onboard.sh cluster.json                          write <cluster_id>_populated.json only
#   ./onboard.sh cluster.json --onboard --api-url URL  ... and register the cluster
# Node data comes from the aggregator (AIOS_AGGREGATOR_ADDR, AIOS_TOKEN) or,
# where none answers, from the Kubernetes API.
set -eu
exec aios-aggregator onboard "$@"

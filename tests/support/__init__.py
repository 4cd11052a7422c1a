"""Helpers shared by many tests (and the benchmarks), one home each.

- `net.free_port`: a loopback port nobody listens on
- `waiting.wait_for`: poll until a condition holds, failing with what was awaited
- `served_app.ServedApp`: a FastAPI app on a real uvicorn server in a thread
- `policy_packages`: policy packages written as folders, zips and tars; an HTTP stand-in
- `telemetry`: the aggregator (thread or process) and agent processes, readings builders
- `kube_api`: kmock as the Kubernetes API server
- `addons_kube`: kmock taught server-side apply and dry runs (the add-on tests)
- `hostfs`: a fake host root (/proc, /sys) for the host collector
- `cgroups`: literal /proc/<pid>/cgroup files of pod containers (each runtime, cgroup v1 and v2)
- `pod_resources`: a kubelet pod-resources v1 server on a unix socket
- `stability`: in-process registry, node states and a webhook stand-in for stability tests
- `onboarding_data`: the onboarding examples' nodes and documents
- `scripted_random`: a `random.Random` that answers a fixed script
- `readonly_guard`: runs the agent and reports writes outside /tmp

The fake NVML (`tests/fakenvml/`) and the metrics fixtures (`tests/metrics_fixtures/`)
stay beside this package: each is a pytest plugin or fixture set of its own.
"""

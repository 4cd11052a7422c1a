"""The line `aios-agent run` logs on a healthy start (pure)."""

from agent.commands.run import startup_summary
from agent.kube.client import NodeIdentity
from agent.stream.client import StreamConfig
from proto.telemetry.v1.readings import MIB, HostInventory, NodeInventory


def test_a_cpu_node_with_the_annotator_on_says_why_there_are_no_gpus():
    inventory = NodeInventory("n1", "worker-1", HostInventory("worker-1", "6.1", "Debian 12", 16, 8, 64_000 * MIB, 0),
                              nvml_status="library not found")
    line = startup_summary(StreamConfig("agg.controllers.svc:7001", "n1", agent_version="1.2.3", interval_s=10.0),
                           "worker-1", NodeIdentity(node_name="worker-1", node_id="n1", id_source="label"), inventory,
                           annotating="on (Node worker-1)", credential="shared token", metrics_port=9402)
    assert line == ("agent 1.2.3 on node worker-1 (id n1, from its nodeID label): no GPUs (library not found), "
                    "16 vCPU; streaming every 10 s to agg.controllers.svc:7001 with its shared token; "
                    "annotator on (Node worker-1); "
                    "metrics and /healthz on port 9402")

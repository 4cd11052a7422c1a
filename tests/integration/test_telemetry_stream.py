"""Agents streaming to a real aggregator process over loopback gRPC.

The aggregator is `aios-aggregator serve` in a subprocess on a SQLite file;
agents are `aios-agent run` subprocesses (host collector on this machine, the
fake NVML for GPUs) and, where the test must know exactly what was sent and
acknowledged, the real `TelemetryStream` in this process.
"""

from __future__ import annotations

import math
import signal
import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agent.stream.client import StreamConfig, TelemetryStream
from proto.telemetry.v1 import convert
from proto.telemetry.v1 import telemetry_pb2 as pb
from proto.telemetry.v1 import telemetry_pb2_grpc as pb_grpc
from proto.telemetry.v1.readings import HealthEvent
from tests.fakenvml.presets import a100_80gb, h100_sxm
from tests.support.telemetry import (
    TOKEN,
    AgentProcess,
    AggregatorProcess,
    AggregatorThread,
    RawStream,
    get_node,
    inventory,
    list_nodes,
    query_stub,
    sample,
)
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def aggregator(tmp_path):
    agg = AggregatorProcess(tmp_path).start()
    yield agg
    agg.stop()


def _stream(address: str, node_id: str, gpus: int = 2, **config) -> TelemetryStream:
    cfg = StreamConfig(address=address, node_id=node_id, cluster_id="test-cluster", agent_version="test",
                       token=TOKEN, backoff_initial_s=0.05, backoff_max_s=0.5,
                       interval_s=config.pop("interval_s", 0.2), **config)
    stream = TelemetryStream(cfg, inventory(node_id, gpus))
    stream.start()
    return stream


def _hello(node_id: str, gpus: int = 2, instance: str = "inst-1") -> bytes:
    return pb.AgentMessage(
        seq=0,
        hello=pb.Hello(node_id=node_id, cluster_id="test-cluster", agent_version="raw", agent_instance=instance,
                       inventory=convert.inventory_to_pb(inventory(node_id, gpus)), interval_s=0.2),
    ).SerializeToString()


def _sample_msg(seq: int, n: int | None = None, gpus: int = 2) -> pb.AgentMessage:
    return pb.AgentMessage(seq=seq, sample=convert.sample_to_pb(sample(n if n is not None else seq, gpus)))


# ---------------------------------------------------------------- tests


def test_samples_arrive_in_order_acknowledged_and_queries_show_what_was_sent(aggregator):
    raw = RawStream(aggregator.address)
    sent = [_sample_msg(seq) for seq in range(1, 6)]
    event = HealthEvent("xid", 1_764_400_005.0, gpu_index=1, gpu_uuid="GPU-q-1", xid=31, message="mmu fault")
    sent.append(pb.AgentMessage(seq=21, health=convert.health_to_pb(event)))  # a jump forward is fine
    replies, code, _ = raw.exchange([_hello("q")] + [m.SerializeToString() for m in sent])
    raw.close()
    assert code == grpc.StatusCode.OK
    acks = [r.ack.acked_seq for r in replies if r.WhichOneof("body") == "ack"]
    assert [r for r in replies if r.WhichOneof("body") == "refusal"] == []
    assert acks == sorted(acks) and acks[-1] == 21

    # seq must increase on a stream: going back is refused, naming both numbers (issue 13: seq ranges)
    raw = RawStream(aggregator.address)
    replies, code, details = raw.exchange([_hello("q")] + [_sample_msg(s).SerializeToString() for s in (22, 7)])
    raw.close()
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "seq: 7 is not above 22" in details
    assert [(r.refusal.seq) for r in replies if r.WhichOneof("body") == "refusal"] == [7]
    detail = get_node(aggregator.address, "q")
    assert detail.summary.node_name == "q-name"
    assert convert.inventory_from_pb(detail.inventory) == inventory("q")
    assert convert.sample_from_pb(detail.latest_sample) == sample(22)
    assert [convert.health_from_pb(e) for e in detail.health_events] == [event]

    # in order: a fresh agent instance sends 1..30, and the latest is the 30th
    raw = RawStream(aggregator.address)
    samples = [_sample_msg(s, 100 + s).SerializeToString() for s in range(1, 31)]
    replies, code, _ = raw.exchange([_hello("q", instance="inst-2"), *samples])
    raw.close()
    assert code == grpc.StatusCode.OK
    assert [r.ack.acked_seq for r in replies if r.WhichOneof("body") == "ack"][-1] == 30
    detail = get_node(aggregator.address, "q")
    assert convert.sample_from_pb(detail.latest_sample) == sample(130)
    assert detail.summary.status == pb.NODE_STATUS_HEALTHY
    assert detail.summary.cpu_percent == 30.0  # sample(130): 130 % 100
    assert detail.summary.gpu_utilization_pct == pytest.approx((30 + 31) / 2)

    channel, stub, md = query_stub(aggregator.address)
    summary = stub.GetClusterSummary(pb.ClusterSummaryRequest(), metadata=md, timeout=5)
    channel.close()
    assert (summary.cluster_id, summary.nodes_total, summary.gpus_total, summary.gpu_memory_total_mb) == (
        "test-cluster", 1, 2, 2 * 81920)
    assert (summary.vcpus_total, summary.memory_total_mb, summary.samples_received) == (32, 257_000, 5 + 1 + 30)


def test_dropped_samples_are_counted_from_every_kind_of_message(tmp_path):
    # the agent reports samples it dropped on whatever it sends next: a sample, a health event or an inventory
    server = AggregatorThread(tmp_path)
    try:
        event = HealthEvent("xid", 1_764_400_005.0, gpu_index=1, gpu_uuid="GPU-d-1", xid=31)
        sent = [
            pb.AgentMessage(seq=1, sample=convert.sample_to_pb(sample(1)), dropped_samples=1),
            pb.AgentMessage(seq=2, health=convert.health_to_pb(event), dropped_samples=2),
            pb.AgentMessage(seq=3, inventory=convert.inventory_to_pb(inventory("d", gpus=3)), dropped_samples=4),
        ]
        raw = RawStream(server.address)
        replies, code, _ = raw.exchange([_hello("d"), *(m.SerializeToString() for m in sent)])
        raw.close()
        assert code == grpc.StatusCode.OK
        assert [r.ack.acked_seq for r in replies if r.WhichOneof("body") == "ack"][-1] == 3
        assert not [r for r in replies if r.WhichOneof("body") == "refusal"]
        state = server.aggregator.registry.get("d")
        # 1 + 2 + 4: a missing count names the message kind that lost it (5: inventory, 3: health, 6: sample)
        assert state is not None and state.dropped_samples == 7
        assert len(state.inventory.gpus) == 3 and [e.xid for e in state.health_events] == [31]
    finally:
        server.close()


def test_watch_nodes_streams_joins_and_health_events(aggregator):
    channel, stub, md = query_stub(aggregator.address)
    changes = []
    ended = []  # how the watch ended, checked below: an assert in the thread would only warn
    call = stub.WatchNodes(pb.WatchNodesRequest(), metadata=md)

    def collect():
        try:
            for change in call:
                changes.append(change)
        except grpc.RpcError as e:
            ended.append(e.code())

    reader = threading.Thread(target=collect, daemon=True)
    reader.start()
    # the subscription is live once a node joining shows up in it
    raw = RawStream(aggregator.address)
    probes = iter(range(1000))
    wait_for(lambda: raw.exchange([_hello(f"w0-{next(probes)}")]) and changes, what="watch live")
    raw.close()
    stream = _stream(aggregator.address, "w")
    try:
        lost = HealthEvent("gpu_lost", 1_764_400_001.0, gpu_index=0, nvml_error="NVML_ERROR_GPU_IS_LOST")
        stream.send_sample(sample(1, events=(lost,)))
        wait_for(lambda: any(c.kind == pb.NodeChange.KIND_HEALTH for c in changes), what="health change")
        kinds = [c.kind for c in changes if c.node.node_id == "w"]
        assert kinds[0] == pb.NodeChange.KIND_JOINED
        health = next(c for c in changes if c.kind == pb.NodeChange.KIND_HEALTH)
        assert health.health.kind == "gpu_lost" and health.health.gpu_index == 0
        wait_for(lambda: any(c.kind == pb.NodeChange.KIND_STATUS and c.node.status == pb.NODE_STATUS_UNHEALTHY
                             for c in changes), what="unhealthy status change")
    finally:
        call.cancel()
        reader.join(10)
        channel.close()
        stream.stop()
    assert ended == [grpc.StatusCode.CANCELLED]  # the watch ran until the test cancelled it


def test_wrong_or_missing_token_is_refused_and_health_needs_none(aggregator):
    raw = RawStream(aggregator.address, token="wrong")
    replies, code, details = raw.exchange([_hello("intruder"), _sample_msg(1).SerializeToString()])
    raw.close()
    assert code == grpc.StatusCode.UNAUTHENTICATED and replies == []
    channel = grpc.insecure_channel(aggregator.address)
    stub = pb_grpc.TelemetryQueryStub(channel)
    for metadata in ((), (("authorization", "Bearer nope"),), (("authorization", TOKEN),)):
        with pytest.raises(grpc.RpcError) as err:
            stub.ListNodes(pb.ListNodesRequest(), metadata=metadata, timeout=5)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    channel.close()
    assert "intruder" not in list_nodes(aggregator.address)


def _nan_sample(seq):
    msg = _sample_msg(seq)
    msg.sample.gpus[1].power_draw_w = math.nan
    return msg


def _negative_rate(seq):
    msg = _sample_msg(seq)
    msg.sample.host.disk_read_bytes_per_s = -5.0
    return msg


def _unknown_gpu(seq):
    msg = _sample_msg(seq)
    msg.sample.gpus[1].index = 7
    return msg


def _other_node_inventory(seq):
    return pb.AgentMessage(seq=seq, inventory=convert.inventory_to_pb(inventory("someone-else")))


def _oversized(seq):
    msg = _sample_msg(seq)
    msg.sample.collectors.add(name="host", success=False, duration_s=0.1, error="x" * 300_000)
    return msg


@pytest.mark.parametrize(
    "make_bad, expected",
    [
        (_nan_sample, "sample.gpus[1].power_draw_w: nan is not a finite number"),
        (_negative_rate, "sample.host.disk_read_bytes_per_s: -5.0 is negative"),
        (_unknown_gpu, "sample.gpus[1].index: GPU index 7 is not in the node's inventory"),
        (_other_node_inventory, "does not match the hello's node id 'bad'"),
        (_oversized, "over the 262144-byte limit"),
    ],
    ids=["nan", "negative", "unknown-gpu", "node-mismatch", "oversized"],
)
def test_bad_messages_are_refused_while_other_agents_carry_on(aggregator, make_bad, expected):
    good = _stream(aggregator.address, "good")
    try:
        good.send_sample(sample(1))
        assert good.wait_acked(1, 10)
        raw = RawStream(aggregator.address)
        replies, code, details = raw.exchange(
            [_hello("bad"), _sample_msg(1).SerializeToString(), make_bad(2).SerializeToString(),
             _sample_msg(3, 99).SerializeToString()])
        raw.close()
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert expected in details
        refusal = [r.refusal for r in replies if r.WhichOneof("body") == "refusal"]
        assert [r.seq for r in refusal] == [2] and expected in refusal[0].reason
        # the bad node keeps what it sent before the refusal, nothing of it or after it
        detail = get_node(aggregator.address, "bad")
        assert convert.sample_from_pb(detail.latest_sample) == sample(1)
        assert convert.inventory_from_pb(detail.inventory) == inventory("bad")
        # the well-behaved agent carries on
        seq = good.send_sample(sample(2))
        assert good.wait_acked(seq, 10)
        assert convert.sample_from_pb(get_node(aggregator.address, "good").latest_sample) == sample(2)
    finally:
        good.stop()


def test_garbage_bytes_and_a_stream_without_hello_are_refused(aggregator):
    raw = RawStream(aggregator.address)
    replies, code, details = raw.exchange([b"\xff\xff\xff\xff not protobuf"])
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "malformed message" in details
    replies, code, details = raw.exchange([_sample_msg(1).SerializeToString()])
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "before hello" in details
    raw.close()
    assert list_nodes(aggregator.address) == {}


def test_agent_cut_off_goes_stale_then_healthy_again(tmp_path):
    agg = AggregatorProcess(tmp_path, extra_args=("--stale-after", "3")).start()
    agent = AgentProcess(tmp_path, "cut", agg.address, interval_s=0.2)
    try:
        wait_for(lambda: list_nodes(agg.address).get("cut") and list_nodes(agg.address)["cut"].status == pb.NODE_STATUS_HEALTHY,
                 what="agent healthy")
        agent.proc.send_signal(signal.SIGSTOP)  # cut off: no messages, connection left hanging
        wait_for(lambda: list_nodes(agg.address)["cut"].status == pb.NODE_STATUS_STALE, what="node stale")
        agent.proc.send_signal(signal.SIGCONT)
        wait_for(lambda: list_nodes(agg.address)["cut"].status == pb.NODE_STATUS_HEALTHY, what="node healthy again")
    finally:
        agent.stop()
        agg.stop()


def test_aggregator_sigkilled_under_load_loses_nothing_acknowledged(tmp_path, fake_nvml):
    fake_nvml.configure(gpus=[a100_80gb(0), h100_sxm(1)], driver_version="550.54.15", cuda_driver_version="12.4")
    agg = AggregatorProcess(tmp_path).start()
    agents = [
        AgentProcess(tmp_path, "gpu-node", agg.address, interval_s=0.2, env=fake_nvml.env),
        AgentProcess(tmp_path, "cpu-node", agg.address, interval_s=0.2),
    ]
    probe = _stream(agg.address, "probe", buffer_limit=100_000)
    events: dict[int, HealthEvent] = {}
    sent_samples = []
    stop_sending = threading.Event()

    def load() -> None:
        n = 0
        while not stop_sending.is_set():
            n += 1
            if n % 25 == 0:
                event = HealthEvent("xid", 1_764_400_000.0 + n, gpu_index=n % 2, xid=13, message=f"event {n}")
                events[probe.send_health(event)] = event
            sent_samples.append(probe.send_sample(sample(n)))
            time.sleep(0.01)

    sender = threading.Thread(target=load)
    sender.start()
    try:
        wait_for(lambda: len(list_nodes(agg.address)) == 3, what="three nodes")
        fake_nvml.inject_xid(1, 79)  # a real agent's health event, before the kill
        wait_for(lambda: any(e.xid == 79 for e in get_node(agg.address, "gpu-node", 50).health_events), what="xid 79")
        wait_for(lambda: probe.stats().acked_seq > max(events, default=0) > 0 and len(events) >= 3, what="probe acks")
        # the gpu-node's event must be on disk before the kill (the registry shows it before the commit)
        wait_for(lambda: 79 in _stored_xids(agg, "gpu-node"), what="xid 79 committed")
        agg.kill()
        acked_at_kill = probe.stats().acked_seq
        acked_events = {seq: e for seq, e in events.items() if seq <= acked_at_kill}
        wait_for(lambda: not probe.stats().connected, what="the probe noticing the outage")
        # the agents keep sampling into their buffers while it is down
        wait_for(lambda: probe.stats().last_seq > acked_at_kill + 10, what="samples buffered during the outage")
        restarted_at = time.time()
        agg.start()
        wait_for(lambda: probe.stats().connected, what="the probe reconnected")  # still sending meanwhile
        stop_sending.set()
        sender.join()
        last = probe.stats().last_seq
        assert probe.wait_acked(last, 20), probe.stats()

        nodes = list_nodes(agg.address)
        assert set(nodes) == {"gpu-node", "cpu-node", "probe"}
        probe_detail = get_node(agg.address, "probe", 50)
        stored = [convert.health_from_pb(e) for e in probe_detail.health_events]
        assert all(e in stored for e in acked_events.values())
        assert sorted(stored, key=lambda e: e.timestamp) == sorted(events.values(), key=lambda e: e.timestamp)
        # every sample counted exactly once, the ones buffered during the outage included
        channel, stub, md = query_stub(agg.address)
        detail_state = stub.GetNode(pb.GetNodeRequest(node_id="probe"), metadata=md, timeout=5)
        channel.close()
        assert convert.sample_from_pb(detail_state.latest_sample) == sample(len(sent_samples))
        assert _samples_received(agg, "probe") == len(sent_samples)
        # the subprocess agents reconnected and report again; the GPU event survived
        for agent in agents:
            wait_for(lambda agent=agent: list_nodes(agg.address)[agent.node_id].last_seen > restarted_at + 0.5,
                     what=f"{agent.node_id} back")
        gpu_detail = get_node(agg.address, "gpu-node", 50)
        assert any(e.kind == "xid" and e.xid == 79 and e.gpu_index == 1 for e in gpu_detail.health_events)
        assert [g.name for g in gpu_detail.inventory.gpus] == ["NVIDIA A100-SXM4-80GB", "NVIDIA H100 80GB HBM3"]
        assert gpu_detail.summary.status == pb.NODE_STATUS_UNHEALTHY  # xid 79: fell off the bus
    finally:
        stop_sending.set()
        sender.join()
        probe.stop()
        stats = [a.stop() for a in agents]
        agg.stop()
    for s in stats:
        assert s["refused"] == 0 and s["dropped_samples"] == 0 and s["connects"] >= 2
        assert s["acked_seq"] == s["last_seq"]  # everything they sent, acknowledged


def _stored_xids(agg: AggregatorProcess, node_id: str) -> list[int]:
    import contextlib
    import sqlite3

    with contextlib.closing(sqlite3.connect(f"file:{agg.db}?mode=ro", uri=True)) as conn:
        rows = conn.execute("SELECT xid FROM telemetry_health_events WHERE node_id = ? AND kind = 'xid'", (node_id,))
        return [xid for (xid,) in rows]


def _samples_received(agg: AggregatorProcess, node_id: str) -> int:
    import sqlite3

    with sqlite3.connect(agg.db) as conn:
        return conn.execute("SELECT samples_received FROM telemetry_node_state WHERE node_id = ?", (node_id,)).fetchone()[0]


def test_tls_with_a_given_certificate(tmp_path):
    import shutil
    import subprocess

    from aggregator.telemetry.query_client import QueryClient, QueryClientError

    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True)
    agg = AggregatorProcess(tmp_path, extra_args=("--tls-cert", str(cert), "--tls-key", str(key))).start()
    stream = _stream(agg.address, "tls-node", tls_ca=cert)
    try:
        seq = stream.send_sample(sample(1))
        assert stream.wait_acked(seq, 15)
        with QueryClient(agg.address, token=TOKEN, tls_ca=cert) as client:
            assert [n.node_id for n in client.list_nodes()] == ["tls-node"]
        with (
            QueryClient(agg.address, token=TOKEN, timeout_s=3) as plaintext,
            pytest.raises(QueryClientError, match="UNAVAILABLE"),
        ):
            plaintext.list_nodes()
    finally:
        stream.stop()
        agg.stop()


def test_the_aggregator_instructs_agents_to_a_new_interval(tmp_path):
    agg = AggregatorProcess(tmp_path, extra_args=("--agent-interval", "2.5")).start()
    got = []
    cfg = StreamConfig(address=agg.address, node_id="told", token=TOKEN, interval_s=10.0,
                       backoff_initial_s=0.05, backoff_max_s=0.5)
    stream = TelemetryStream(cfg, inventory("told"), on_instruction=got.append)
    stream.start()
    try:
        wait_for(lambda: got, what="an instruction")
        assert got[0].interval_s == 2.5
        assert stream._hello().hello.interval_s == 2.5  # the next hello says so too
    finally:
        stream.stop()
        agg.stop()


def test_cli_nodes_and_node_print_through_the_query_service(aggregator):
    import subprocess
    import sys

    from tests.support.telemetry import ROOT, base_env

    stream = _stream(aggregator.address, "cli-node", interval_s=60.0)
    try:
        event = HealthEvent("xid", time.time(), gpu_index=1, xid=79, message="fell off the bus")
        stream.send_sample(sample(42, events=(event,)))
        assert stream.wait_acked(stream.stats().last_seq, 10)

        def cli(*args, token=TOKEN):
            env = base_env(AIOS_AGGREGATOR_ADDR=aggregator.address, AIOS_TOKEN=token)
            return subprocess.run([sys.executable, "-m", "aggregator.cli", *args], cwd=ROOT, env=env,
                                  capture_output=True, text=True, timeout=30)

        table = cli("nodes")
        assert table.returncode == 0, table.stderr
        header, row = table.stdout.splitlines()
        assert header.split()[:3] == ["NODE", "NAME", "STATUS"]
        assert row.split()[:7] == ["cli-node", "cli-node-name", "unhealthy", "2", "163840", "42.0", "42.5"]
        detail = cli("node", "cli-node-name")  # by name works too
        assert detail.returncode == 0, detail.stderr
        assert "status:      unhealthy, 1 open problem(s)" in detail.stdout
        assert "xid gpu 1 xid 79 fell off the bus" in detail.stdout
        missing = cli("node", "nowhere")
        assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr
        refused = cli("nodes", token="wrong")
        assert refused.returncode == 1 and "UNAUTHENTICATED" in refused.stderr
    finally:
        stream.stop()


def test_reflection_lists_the_services_to_an_authenticated_caller(aggregator):
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    channel, _, md = query_stub(aggregator.address)
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    (reply,) = list(stub.ServerReflectionInfo(iter([request]), metadata=md, timeout=5))
    names = {s.name for s in reply.list_services_response.service}
    assert {"aios.telemetry.v1.TelemetryIngest", "aios.telemetry.v1.TelemetryQuery", "grpc.health.v1.Health"} <= names
    with pytest.raises(grpc.RpcError) as err:
        list(stub.ServerReflectionInfo(iter([request]), timeout=5))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    channel.close()

"""ParserClient against a parser stand-in on loopback: wrapping, answers, retries."""

import socket

import pytest

from aggregator.onboarding.errors import ParserFailed, ParserRefused, ParserUnreachable
from aggregator.onboarding.parser_client import ParserClient
from tests.integration.parser_standin import ParserStandIn
from tests.support.net import free_port
from tests.support.onboarding_data import ENTRY_A, ENTRY_B, ENTRY_D, TOTALS_ABC, expected_document
from tests.support.scripted_random import ScriptedRandom

pytestmark = pytest.mark.integration


@pytest.fixture
def parser():
    standin = ParserStandIn()
    yield standin
    standin.close()


def test_create_cluster_posts_the_wrapped_spec(parser):
    document = expected_document([ENTRY_A, ENTRY_B], {**TOTALS_ABC})
    # totals of A+B, written by hand
    document.update({"gpus": {"count": 2, "memory": 30720}, "vcpus": {"count": 48}, "memory": 193108,
                     "swap": 2047, "storage": {"disks": 3, "size": 3300384},
                     "network": {"interfaces": 3, "txBandwidth": 51000, "rxBandwidth": 51000}})
    answer = ParserClient(parser.url).create_cluster(document)
    assert parser.problems == []
    assert answer.status == 200
    assert answer.body == {"success": True, "task_id": "task-1", "result": {"path": "/api/createCluster"}}
    assert answer.text == '{"success": true, "task_id": "task-1", "result": {"path": "/api/createCluster"}}'
    assert parser.bodies("/api/createCluster") == [
        {"header": {"templateUri": "Parser/V1", "parameters": {}}, "body": {"spec": {"values": document}}}
    ]


def test_add_node_sends_cluster_id_and_node_data(parser):
    ParserClient(parser.url).add_node("cluster-eu-1", ENTRY_D, tags=["late"], node_metadata={"rack": "R2"})
    assert parser.problems == []
    [body] = parser.bodies("/api/addNode")
    assert body["body"]["spec"]["values"] == {
        "clusterId": "cluster-eu-1", "nodeData": {**ENTRY_D, "tags": ["late"], "nodeMetadata": {"rack": "R2"}},
    }


def test_a_refusal_carries_the_parsers_message_and_is_not_retried(parser):
    parser.mode = "refuse"
    sleeps = []
    with pytest.raises(ParserRefused) as caught:
        ParserClient(parser.url, sleep=sleeps.append).add_node("c", ENTRY_D)
    assert caught.value.message == "add_cluster pre-check: region eu-west-9 is closed to new clusters"
    assert caught.value.status == 400
    assert len(parser.requests) == 1 and sleeps == []


def test_a_server_failure_is_reported_and_not_retried(parser):
    parser.mode = "fail"
    with pytest.raises(ParserFailed) as caught:
        ParserClient(parser.url, sleep=lambda s: None).add_node("c", ENTRY_D)
    assert caught.value.status == 500
    assert caught.value.message == "HTTP 500: database is locked"
    assert len(parser.requests) == 1


def test_network_failure_is_retried_then_reported():
    port = free_port()  # nobody listens there
    sleeps = []
    with pytest.raises(ParserUnreachable) as caught:
        ParserClient(f"http://127.0.0.1:{port}", attempts=3, backoff_s=0.5, sleep=sleeps.append,
                     rng=ScriptedRandom(1.0)).add_node("c", ENTRY_D)
    assert sleeps == [0.5, 1.0]
    assert "no answer after 3 attempts" in str(caught.value)


def test_a_timeout_counts_as_a_network_failure():
    with socket.socket() as listener:  # accepts, never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        client = ParserClient(f"http://127.0.0.1:{listener.getsockname()[1]}", timeout_s=0.2, attempts=2,
                              sleep=lambda s: None)
        with pytest.raises(ParserUnreachable):
            client.add_node("c", ENTRY_D)


def test_the_url_must_be_http():
    with pytest.raises(ValueError):
        ParserClient("parser.example.org:8080")

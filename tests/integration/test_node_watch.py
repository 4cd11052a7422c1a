"""NodeWatcher against kmock with the official client: deletions seen by the watch or by a re-list,
nothing removed by the first list or by an empty re-list, and retries after a refused list."""

import random
import threading

import pytest

from aggregator.kube_client import load_kube_client
from aggregator.telemetry.node_watch import KubeNode, NodeWatcher, kube_node_from, registry_matches
from tests.support.kube_api import kube_api  # noqa: F401 - fixture
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


def node(name, node_id=None):
    labels = {"nodeID": node_id} if node_id else {}
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}}


def lists_answered(kube_api):
    return [r for r in kube_api.requests("GET") if "watch=true" not in str(r.url)]


class Seen:
    def __init__(self):
        self.deleted: list[KubeNode] = []
        self.listed: list[list[KubeNode]] = []
        self._lock = threading.Lock()

    def on_deleted(self, kube):
        with self._lock:
            self.deleted.append(kube)

    def on_listed(self, nodes):
        self.listed.append(sorted(nodes, key=lambda n: n.name))


@pytest.fixture
def core(kube_api):
    from kubernetes import client

    api_client = load_kube_client(str(kube_api.kubeconfig), env={})
    yield client.CoreV1Api(api_client)
    api_client.close()


def watcher(core, seen, **kwargs):
    options = {"backoff_initial_s": 0.05, "backoff_max_s": 0.2, "request_timeout_s": 5, "rng": random.Random(1),
               **kwargs}
    return NodeWatcher(core, on_deleted=seen.on_deleted, on_listed=seen.on_listed, **options)


def test_a_watched_deletion_is_reported_and_the_first_list_deletes_nothing(kube_api, core):
    core.create_node(node("gpu-1", "id-1"))
    core.create_node(node("gpu-2"))
    seen = Seen()
    w = watcher(core, seen).start()
    try:
        wait_for(lambda: seen.listed, what="the first list")
        assert seen.listed == [[KubeNode("gpu-1", "id-1"), KubeNode("gpu-2", "gpu-2")]]
        core.create_node(node("gpu-3", "id-3"))
        wait_for(lambda: any(n.name == "gpu-3" for n in w.known()), what="gpu-3 seen by the watch")
        assert seen.deleted == []
        core.delete_node("gpu-1")
        wait_for(lambda: seen.deleted, what="the deletion")
        assert seen.deleted == [KubeNode("gpu-1", "id-1")]
    finally:
        w.close()
    assert not w._thread.is_alive()


def test_a_deletion_the_watch_missed_is_found_by_the_relist(kube_api, core):
    core.create_node(node("gpu-1", "id-1"))
    core.create_node(node("gpu-2", "id-2"))
    seen = Seen()
    # kmock ignores timeoutSeconds: the client's read timeout (1 + 0.5 s) ends each watch
    w = watcher(core, seen, watch_timeout_s=1, request_timeout_s=0.5).start()
    try:
        wait_for(lambda: w.lists == 1, what="the first list")
        kube_api.delete_node("gpu-2")  # in the emulator's store only: no watch event, as if missed
        wait_for(lambda: seen.deleted, what="the re-list noticing gpu-2")
        assert seen.deleted == [KubeNode("gpu-2", "id-2")]
        assert w.lists >= 2 and seen.listed == [[KubeNode("gpu-1", "id-1"), KubeNode("gpu-2", "id-2")]]
    finally:
        w.close()


def test_an_empty_relist_removes_nothing(kube_api, core):
    core.create_node(node("gpu-1", "id-1"))
    seen = Seen()
    w = watcher(core, seen, watch_timeout_s=1, request_timeout_s=0.5).start()
    try:
        wait_for(lambda: w.lists == 1, what="the first list")
        kube_api.delete_node("gpu-1")  # the API now answers an empty list
        wait_for(lambda: len(lists_answered(kube_api)) >= 3, what="re-lists answered")
        assert seen.deleted == []
        assert w.known() == [KubeNode("gpu-1", "id-1")]
    finally:
        w.close()


def test_forbidden_list_is_retried(kube_api, core):
    from tests.support.kube_api import forbidden

    core.create_node(node("gpu-1"))
    kube_api.emulator.refusals["GET"] = forbidden("list", user="system:serviceaccount:controllers:aios-aggregator")
    seen = Seen()
    w = watcher(core, seen).start()
    try:
        wait_for(lambda: len(kube_api.requests("GET")) >= 3, what="retries of the refused list")
        assert seen.listed == []
        del kube_api.emulator.refusals["GET"]
        wait_for(lambda: seen.listed, what="the list once allowed")
        assert seen.listed == [[KubeNode("gpu-1", "gpu-1")]]
    finally:
        w.close()


def test_node_identity_and_registry_matching():
    assert kube_node_from({"metadata": {"name": "gpu-7", "labels": {"nodeID": " n-7 "}}}) == KubeNode("gpu-7", "n-7")
    assert kube_node_from({"metadata": {"name": "gpu-8", "labels": None}}) == KubeNode("gpu-8", "gpu-8")
    assert kube_node_from({"metadata": {}}) is None
    entries = [("n-7", "gpu-7-host"), ("other", "gpu-8"), ("gpu-9", ""), ("x", "y")]
    assert registry_matches(KubeNode("gpu-7", "n-7"), entries) == ["n-7"]
    assert registry_matches(KubeNode("gpu-8", "gpu-8"), entries) == ["other"]
    assert registry_matches(KubeNode("gpu-9", "gpu-9"), entries) == ["gpu-9"]
    assert registry_matches(KubeNode("gpu-0", "gpu-0"), entries) == []

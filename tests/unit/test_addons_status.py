"""Readiness and its reasons from literal API objects; the install plan from live vs dry run."""

from __future__ import annotations

from aggregator.addons.plan import plan_change
from aggregator.addons.status import addon_status, object_status

LABELS = {"app.kubernetes.io/name": "container-registry", "addons.aios/name": "container-registry"}


def deployment(**status) -> dict:
    return {"kind": "Deployment", "metadata": {"name": "container-registry", "generation": 2},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app.kubernetes.io/name": "container-registry"}}},
            "status": status}


READY = {"observedGeneration": 2, "replicas": 1, "updatedReplicas": 1, "readyReplicas": 1, "availableReplicas": 1}


def test_a_deployment_is_ready_when_its_controller_saw_the_spec_and_all_replicas_are_available():
    assert object_status(deployment(**READY)).ready
    assert object_status(deployment(**READY)).state == "1/1 ready"
    stale = object_status(deployment(**dict(READY, observedGeneration=1)))
    assert not stale.ready and stale.state == "1/1 ready (update not yet seen by its controller)"
    rolling = object_status(deployment(**dict(READY, updatedReplicas=0, availableReplicas=1)))
    assert not rolling.ready and rolling.state == "1/1 ready, 0 updated"
    assert not object_status(deployment()).ready  # no status at all yet


def test_a_not_ready_deployment_says_why_from_conditions_pods_and_warning_events():
    obj = deployment(observedGeneration=2, replicas=1, updatedReplicas=1, unavailableReplicas=1, conditions=[
        {"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable",
         "message": "Deployment does not have minimum availability."},
        {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated", "message": "progressing"}])
    pod = {"metadata": {"name": "container-registry-6f7c9-x2x4q", "labels": LABELS}, "status": {
        "phase": "Pending", "containerStatuses": [{"name": "registry", "state": {"waiting": {
            "reason": "ImagePullBackOff", "message": 'Back-off pulling image "registry:2.8.3"'}}}]}}
    other_pod = {"metadata": {"name": "assets-registry-1", "labels": {"app.kubernetes.io/name": "assets-registry"}},
                 "status": {"containerStatuses": [{"name": "x", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}}
    events = [
        {"type": "Warning", "reason": "Failed", "count": 3, "lastTimestamp": "2026-01-01T10:00:05Z",
         "message": 'Failed to pull image "registry:2.8.3": not found',
         "involvedObject": {"kind": "Pod", "name": "container-registry-6f7c9-x2x4q"}},
        {"type": "Normal", "reason": "Pulling", "lastTimestamp": "2026-01-01T10:00:06Z", "message": "Pulling image",
         "involvedObject": {"kind": "Pod", "name": "container-registry-6f7c9-x2x4q"}},
        {"type": "Warning", "reason": "Failed", "lastTimestamp": "2026-01-01T10:00:07Z", "message": "not ours",
         "involvedObject": {"kind": "Pod", "name": "assets-registry-1"}},
    ]
    state = object_status(obj, [pod, other_pod], events)
    assert not state.ready and state.state == "0/1 ready"
    assert state.problems == (
        "MinimumReplicasUnavailable: Deployment does not have minimum availability.",
        'pod container-registry-6f7c9-x2x4q container registry: ImagePullBackOff: Back-off pulling image "registry:2.8.3"',
        'event on pod/container-registry-6f7c9-x2x4q: Failed: Failed to pull image "registry:2.8.3": not found (x3)',
    )


def test_a_statefulset_and_a_pending_claim_with_its_normal_event():
    sts = {"kind": "StatefulSet", "metadata": {"name": "assets-registry-mongodb", "generation": 1},
           "spec": {"replicas": 1}, "status": {"observedGeneration": 1, "updatedReplicas": 1, "readyReplicas": 1}}
    assert object_status(sts).ready
    claim = {"kind": "PersistentVolumeClaim", "metadata": {"name": "data-assets-registry-mongodb-0"},
             "status": {"phase": "Pending"}}
    events = [{"type": "Normal", "reason": "WaitForFirstConsumer", "lastTimestamp": "2026-01-01T10:00:00Z",
               "message": "waiting for first consumer to be created before binding",
               "involvedObject": {"kind": "PersistentVolumeClaim", "name": "data-assets-registry-mongodb-0"}}]
    state = object_status(claim, events=events)
    assert (state.ready, state.state) == (False, "Pending")
    assert state.problems == ("event on persistentvolumeclaim/data-assets-registry-mongodb-0: WaitForFirstConsumer: "
                              "waiting for first consumer to be created before binding",)
    assert object_status(dict(claim, status={"phase": "Bound"})).ready


def test_an_addon_is_ready_only_when_every_object_is_and_workloads_come_first():
    objects = [{"kind": "Service", "metadata": {"name": "s"}}, deployment(**READY)]
    status = addon_status("container-registry", "aios-addons", objects)
    assert status.ready and [o.kind for o in status.objects] == ["Deployment", "Service"]
    assert not addon_status("container-registry", "aios-addons", []).ready
    assert not addon_status("x", "ns", [deployment()]).ready


def test_the_plan_compares_what_the_server_has_with_what_it_would_have():
    rendered = {"kind": "ConfigMap", "metadata": {"name": "s"}, "data": {"A": "2"}}
    live = {"kind": "ConfigMap", "metadata": {"name": "s", "resourceVersion": "5", "uid": "u",
                                               "managedFields": [{"manager": "aios-addons"}]}, "data": {"A": "1"}}
    assert plan_change(rendered, None, None).action == "create"
    same = dict(live, metadata=dict(live["metadata"], resourceVersion="6"))
    assert plan_change(rendered, live, same).action == "unchanged"
    change = plan_change(rendered, live, dict(live, data={"A": "2"}))
    assert change.action == "configure" and change.label == "configmap/s"
    assert "-  A: '1'\n+  A: '2'\n" in change.diff

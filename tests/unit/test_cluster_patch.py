"""`$set` with dotted paths, the cluster document's type check, and lenient-only-for-trailing-commas JSON."""

import pytest

from aggregator.cluster.patch import ClusterPatchError, apply_set, cluster_document_problems
from aggregator.web.json_body import BodyError, parse_json_body

DOC = {
    "id": "cluster-123",
    "regionId": "eu-1",
    "config": {"policyExecutionMode": "local"},
    "nodes": {"count": 1, "nodeData": [{"id": "n1"}]},
    "clusterMetadata": {"name": "c", "creator": "old@example.com"},
    "tags": ["a"],
}


def test_set_replaces_values_creates_missing_objects_and_keeps_the_rest():
    updated = apply_set(DOC, {"clusterMetadata.creator": "new@example.com", "regionId": "us-west-2",
                              "config.urlMap.api": "http://x", "tags": ["b", "c"]})
    assert updated["clusterMetadata"] == {"name": "c", "creator": "new@example.com"}
    assert updated["regionId"] == "us-west-2"
    assert updated["config"] == {"policyExecutionMode": "local", "urlMap": {"api": "http://x"}}
    assert updated["tags"] == ["b", "c"]
    assert DOC["clusterMetadata"]["creator"] == "old@example.com"  # input untouched


def test_a_path_through_a_non_object_is_refused_naming_it():
    with pytest.raises(ClusterPatchError, match=r"'tags\.0'.*'tags', which is a list"):
        apply_set(DOC, {"tags.0": "x"})
    with pytest.raises(ClusterPatchError, match=r"'regionId', which is a string"):
        apply_set(DOC, {"regionId.name": "x"})


@pytest.mark.parametrize(
    "changes, message",
    [
        ({}, "names no field"),
        ({"a..b": 1}, "empty segment"),
        ({"$set": {"a": 1}}, "operators are not accepted"),
        ({"clusterMetadata": {}, "clusterMetadata.name": "x"}, "would conflict"),
        (["regionId"], "must be a JSON object"),
    ],
)
def test_malformed_updates(changes, message):
    with pytest.raises(ClusterPatchError, match=message):
        apply_set(DOC, changes)


def test_type_check_names_each_problem():
    assert cluster_document_problems(DOC) == []
    broken = dict(DOC, config=[], tags="x", nodes={"nodeData": [1], "count": "2"})
    del broken["regionId"]
    assert cluster_document_problems(broken) == [
        "regionId: required",
        "config: must be object, got list",
        "tags: must be list, got string",
        "nodes.nodeData[0]: must be object, got number",
        "nodes.count: must be an integer, got string",
    ]
    assert cluster_document_problems(dict(DOC, config={"policyExecutionMode": "cloud"})) == [
        "config.policyExecutionMode: must be 'local' or 'remote', got 'cloud'"
    ]


def test_json_body_accepts_only_trailing_commas_beyond_strict_json():
    assert parse_json_body(b'{"tags": ["a", "b", ], "s": "x, ]",}') == {"tags": ["a", "b"], "s": "x, ]"}
    with pytest.raises(BodyError, match="line 2 column 7"):
        parse_json_body(b'{"a": 1,\n "b": }')
    with pytest.raises(BodyError, match="must be a JSON object, not list"):
        parse_json_body(b"[1]")
    with pytest.raises(BodyError, match="empty"):
        parse_json_body(b"  ")

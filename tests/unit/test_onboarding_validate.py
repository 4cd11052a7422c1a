"""Validation of the operator's config.json: every problem, with its JSON path."""

import json

import pytest

from aggregator.onboarding.errors import ConfigInvalid
from aggregator.onboarding.validate import load_config, normalise_config, parse_config_text, validate_config
from tests.support.onboarding_data import SAMPLE_CONFIG_TEXT


def messages(document):
    return [str(p) for p in validate_config(document)]


def sample():
    return json.loads(SAMPLE_CONFIG_TEXT)


def test_the_operators_sample_with_nodesData_is_accepted_and_written_as_nodeData(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(SAMPLE_CONFIG_TEXT)
    config = load_config(path)
    assert config["nodes"] == {"nodeData": []}
    assert config["siteNotes"] == {"rack": "R12", "floor": 3}  # unknown fields kept
    assert config["config"]["stabilityChecker"]["parameters"] == {"min_healthy": 2}


def test_nodesData_entries_move_to_nodeData():
    doc = sample()
    doc["nodes"] = {"nodesData": [{"id": "x"}], "extra": 1}
    assert normalise_config(doc)["nodes"] == {"nodeData": [{"id": "x"}], "extra": 1}
    assert doc["nodes"] == {"nodesData": [{"id": "x"}], "extra": 1}  # the input is not changed


def test_every_missing_required_field_is_listed():
    assert messages({}) == [
        "id: missing", "regionId: missing", "clusterMetadata: missing", "config: missing", "nodes: missing",
    ]


def test_wrong_types_are_named_with_their_paths():
    doc = sample()
    doc["nodes"] = []
    doc["clusterMetadata"] = "acme"
    doc["id"] = 42
    doc["regionId"] = None
    doc["tags"] = ["gpu", 3]
    doc["reputation"] = "high"
    assert messages(doc) == [
        "id: expected a string, got a number",
        "regionId: expected a string, got null",
        "clusterMetadata: expected an object, got a string",
        "nodes: expected an object, got an array",
        "reputation: expected a number, got a string",
        "tags[1]: expected a string, got a number",
    ]


def test_config_section_fields():
    doc = sample()
    doc["config"] = {
        "policyExecutionMode": "cloud",
        "useGateway": "yes",
        "stabilityChecker": {"policyRuleURI": 7, "parameters": []},
        "actionsPolicyMap": {"add_node": "p:1.0-stable", "remove_node": 5},
        "publicHostname": ["a"],
    }
    assert messages(doc) == [
        "config.publicHostname: expected a string, got an array",
        "config.useGateway: expected a boolean, got a string",
        "config.policyExecutionMode: expected one of local, remote, got 'cloud'",
        "config.stabilityChecker.policyRuleURI: expected a string, got a number",
        "config.stabilityChecker.parameters: expected an object, got an array",
        "config.actionsPolicyMap.remove_node: expected a string, got a number",
    ]


def test_stability_checker_needs_its_rule_uri():
    doc = sample()
    doc["config"]["stabilityChecker"] = {"parameters": {}}
    assert messages(doc) == ["config.stabilityChecker.policyRuleURI: missing"]


def test_node_lists():
    doc = sample()
    doc["nodes"] = {"nodesData": {"a": 1}}
    assert messages(doc) == ["nodes.nodesData: expected an array, got an object"]
    doc["nodes"] = {"nodeData": [{"id": "a"}, "b"], "nodesData": [{"id": "c"}], "count": -1}
    assert messages(doc) == [
        "nodes.nodeData[1]: expected an object, got a string",
        "nodes: both nodeData and nodesData hold entries; keep one (nodeData)",
        "nodes.count: must not be negative",
    ]


def test_id_is_usable_as_a_file_name():
    doc = sample()
    doc["id"] = "../etc"
    assert messages(doc) == ["id: must not contain '/' or be '.' or '..'"]
    doc["id"] = "  "
    assert messages(doc) == ["id: must not be empty"]


def test_not_an_object_at_all():
    assert messages([1, 2]) == ["(document): expected an object, got an array"]


def test_invalid_json_names_line_and_column():
    with pytest.raises(ConfigInvalid) as caught:
        parse_config_text('{\n  "id": "c1",\n  "regionId": "r" "x"\n}', source="cluster.json")
    assert [str(p) for p in caught.value.problems] == [
        "cluster.json: invalid JSON at line 3, column 19: Expecting ',' delimiter"
    ]


def test_missing_file(tmp_path):
    with pytest.raises(ConfigInvalid) as caught:
        load_config(tmp_path / "nope.json")
    assert str(caught.value) == f"{tmp_path / 'nope.json'}: no such file"

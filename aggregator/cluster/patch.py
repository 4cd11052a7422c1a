"""Pure pieces of a cluster data update: `$set` with dotted paths, and the document's type check.

`apply_set` follows MongoDB `$set`: each key is a dotted path, its value
replaces what is there, missing objects on the way are created. A path that
runs through something that is not an object (a list, a string, ...) is
refused, as are two paths where one is a prefix of the other (ambiguous),
a path of more than `MAX_PATH_SEGMENTS` segments, and a path whose value
would nest the document deeper than the strict-JSON depth limit
(docs/limits.md), so every stored document can be read back.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from aggregator.strict_json import MAX_DEPTH, depth_of

__all__ = [
    "MAX_PATH_SEGMENTS",
    "ClusterPatchError",
    "InvalidClusterDocument",
    "apply_set",
    "cluster_document_problems",
    "validate_set",
]

MAX_PATH_SEGMENTS = 32


class ClusterPatchError(ValueError):
    """The update itself is malformed (bad path, conflicting paths, path through a non-object)."""


class InvalidClusterDocument(ValueError):
    """The document after the update is not a valid cluster document."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("the cluster document would be invalid: " + "; ".join(problems))


def _type_name(value: Any) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number" if isinstance(value, (int, float)) else type(value).__name__
    )


def validate_set(changes: Any) -> dict[str, Any]:
    """The `{dotted.path: value}` object, checked; ClusterPatchError says what is wrong."""
    if not isinstance(changes, dict):
        raise ClusterPatchError(f"the body must be a JSON object of field paths to values, not {_type_name(changes)}")
    if not changes:
        raise ClusterPatchError("the body names no field to update")
    for path, value in changes.items():
        shown = repr(path) if len(path) <= 80 else repr(path[:77] + "...")
        if path.startswith("$"):
            raise ClusterPatchError(f"{shown}: operators are not accepted; send the fields to set")
        parts = path.split(".")
        if len(parts) > MAX_PATH_SEGMENTS:
            raise ClusterPatchError(f"{shown}: the field path has {len(parts)} segments; at most {MAX_PATH_SEGMENTS}")
        if any(part == "" for part in parts):
            raise ClusterPatchError(f"{shown}: empty segment in the field path")
        if len(parts) + depth_of(value) > MAX_DEPTH:
            raise ClusterPatchError(
                f"{shown}: the value would be nested deeper than {MAX_DEPTH} levels in the document"
            )
    for path in changes:  # every proper prefix, not only sorted neighbours ("a", "a-x", "a.b")
        parts = path.split(".")
        for end in range(1, len(parts)):
            shorter = ".".join(parts[:end])
            if shorter in changes:
                raise ClusterPatchError(f"updating {path!r} would conflict with updating {shorter!r}")
    return changes


def apply_set(document: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """A new document with every change applied (the input is not modified)."""
    result = copy.deepcopy(dict(document))
    for path, value in validate_set(changes).items():
        parts = path.split(".")
        node: Any = result
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None and part not in node:
                child = node[part] = {}
            elif not isinstance(child, dict):
                where = ".".join(parts[: depth + 1])
                raise ClusterPatchError(
                    f"{path!r}: cannot set a field inside {where!r}, which is a {_type_name(child)}, not an object"
                )
            node = child
        node[parts[-1]] = copy.deepcopy(value)
    return result


_REQUIRED = {"id": str, "regionId": str, "config": dict, "nodes": dict, "clusterMetadata": dict}
_OPTIONAL = {"tags": list}


def cluster_document_problems(document: Any) -> list[str]:
    """What makes `document` unusable as a cluster document; empty when it is fine."""
    if not isinstance(document, dict):
        return [f"the document must be an object, not {_type_name(document)}"]
    problems: list[str] = []
    for key, kind in _REQUIRED.items():
        if key not in document:
            problems.append(f"{key}: required")
        elif not isinstance(document[key], kind):
            problems.append(f"{key}: must be {_type_name(kind())}, got {_type_name(document[key])}")
    for key, kind in _OPTIONAL.items():
        if key in document and not isinstance(document[key], kind):
            problems.append(f"{key}: must be {_type_name(kind())}, got {_type_name(document[key])}")
    if isinstance(document.get("id"), str) and not document["id"].strip():
        problems.append("id: must not be empty")
    nodes = document.get("nodes")
    if isinstance(nodes, dict):
        node_data = nodes.get("nodeData")
        if node_data is not None:
            if not isinstance(node_data, list):
                problems.append(f"nodes.nodeData: must be list, got {_type_name(node_data)}")
            else:
                problems.extend(
                    f"nodes.nodeData[{i}]: must be object, got {_type_name(entry)}"
                    for i, entry in enumerate(node_data)
                    if not isinstance(entry, dict)
                )
        count = nodes.get("count")
        if count is not None and (isinstance(count, bool) or not isinstance(count, int)):
            problems.append(f"nodes.count: must be an integer, got {_type_name(count)}")
    config = document.get("config")
    if isinstance(config, dict):
        mode = config.get("policyExecutionMode")
        if mode is not None and mode not in ("local", "remote"):
            problems.append(f"config.policyExecutionMode: must be 'local' or 'remote', got {mode!r}")
        for key in ("stabilityChecker", "actionsPolicyMap", "urlMap"):
            if key in config and not isinstance(config[key], dict):
                problems.append(f"config.{key}: must be object, got {_type_name(config[key])}")
        checker = config.get("stabilityChecker")
        if isinstance(checker, dict):
            if "policyRuleURI" in checker and not isinstance(checker["policyRuleURI"], str):
                problems.append("config.stabilityChecker.policyRuleURI: must be string")
            if "parameters" in checker and not isinstance(checker["parameters"], dict):
                problems.append("config.stabilityChecker.parameters: must be object")
    return problems

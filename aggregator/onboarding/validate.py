"""Validation of the operator's config.json (docs/network-formats.md §2).

Every problem is reported, each with the JSON path it is about
(`nodes: expected an object`, `config.stabilityChecker.policyRuleURI: expected
a string`), so the operator fixes the file in one pass. Fields we do not know
are kept as they are: the network's other services may read them.

The known variant: the sample file ships `"nodes": {"nodesData": []}` while
every consumer reads `nodes.nodeData`. Both are accepted; `normalise_config`
always writes `nodeData`.
"""

from __future__ import annotations

import copy
import json
import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aggregator.onboarding.errors import ConfigInvalid

__all__ = [
    "REQUIRED_FIELDS",
    "ConfigProblem",
    "load_config",
    "normalise_config",
    "parse_config_text",
    "validate_config",
]

REQUIRED_FIELDS = ("id", "regionId", "config", "nodes", "clusterMetadata")
EXECUTION_MODES = ("local", "remote")


@dataclass(frozen=True)
class ConfigProblem:
    path: str  # JSON path, e.g. "config.stabilityChecker.policyRuleURI"; "(document)" for the whole
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


# JSON type names as the operator knows them; bool is not a number here
def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, numbers.Number):
        return "a number"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _is(value: Any, kind: str) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "object":
        return isinstance(value, dict)
    if kind == "array":
        return isinstance(value, list)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "number":
        return isinstance(value, numbers.Number) and not isinstance(value, bool)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    raise ValueError(kind)


_ARTICLE = {"string": "a string", "object": "an object", "array": "an array",
            "boolean": "a boolean", "number": "a number", "integer": "an integer"}


class _Checker:
    def __init__(self) -> None:
        self.problems: list[ConfigProblem] = []

    def add(self, path: str, message: str) -> None:
        self.problems.append(ConfigProblem(path, message))

    def typed(self, parent: dict, key: str, path: str, kind: str, *, required: bool) -> bool:
        """True when parent[key] exists and has the kind; records the problem otherwise."""
        if key not in parent:
            if required:
                self.add(path, "missing")
            return False
        value = parent[key]
        if value is None and not required:
            return False  # an explicit null for an optional field reads as "not set"
        if not _is(value, kind):
            self.add(path, f"expected {_ARTICLE[kind]}, got {_json_type(value)}")
            return False
        return True


def parse_config_text(text: str, source: str = "config.json") -> Any:
    """json.loads, with a syntax error turned into a ConfigInvalid naming line and column."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigInvalid(
            [ConfigProblem(source, f"invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}")]
        ) from e


def validate_config(document: Any) -> list[ConfigProblem]:
    """Every problem of a parsed config.json; an empty list means usable."""
    check = _Checker()
    if not isinstance(document, dict):
        check.add("(document)", f"expected an object, got {_json_type(document)}")
        return check.problems

    if check.typed(document, "id", "id", "string", required=True) and not document["id"].strip():
        check.add("id", "must not be empty")
    elif isinstance(document.get("id"), str) and ("/" in document["id"] or document["id"] in (".", "..")):
        # the id names the output file <id>_populated.json
        check.add("id", "must not contain '/' or be '.' or '..'")
    check.typed(document, "regionId", "regionId", "string", required=True)
    check.typed(document, "clusterMetadata", "clusterMetadata", "object", required=True)
    if check.typed(document, "config", "config", "object", required=True):
        _check_config_section(check, document["config"])
    if check.typed(document, "nodes", "nodes", "object", required=True):
        _check_nodes_section(check, document["nodes"])

    check.typed(document, "status", "status", "string", required=False)
    check.typed(document, "reputation", "reputation", "number", required=False)
    if check.typed(document, "tags", "tags", "array", required=False):
        for i, tag in enumerate(document["tags"]):
            if not isinstance(tag, str):
                check.add(f"tags[{i}]", f"expected a string, got {_json_type(tag)}")
    return check.problems


def _check_config_section(check: _Checker, config: dict) -> None:
    for key in ("policyExecutorId", "publicHostname"):
        check.typed(config, key, f"config.{key}", "string", required=False)
    for key in ("useGateway", "allowExternalNodes"):
        check.typed(config, key, f"config.{key}", "boolean", required=False)
    for key in ("customPolicySystem", "urlMap"):
        check.typed(config, key, f"config.{key}", "object", required=False)
    if (
        check.typed(config, "policyExecutionMode", "config.policyExecutionMode", "string", required=False)
        and config["policyExecutionMode"] not in EXECUTION_MODES
    ):
        check.add(
            "config.policyExecutionMode",
            f"expected one of {', '.join(EXECUTION_MODES)}, got {config['policyExecutionMode']!r}",
        )
    if check.typed(config, "stabilityChecker", "config.stabilityChecker", "object", required=False):
        checker = config["stabilityChecker"]
        check.typed(checker, "policyRuleURI", "config.stabilityChecker.policyRuleURI", "string", required=True)
        check.typed(checker, "parameters", "config.stabilityChecker.parameters", "object", required=False)
    if check.typed(config, "actionsPolicyMap", "config.actionsPolicyMap", "object", required=False):
        for action, uri in config["actionsPolicyMap"].items():
            if not isinstance(uri, str):
                check.add(f"config.actionsPolicyMap.{action}", f"expected a string, got {_json_type(uri)}")


def _check_nodes_section(check: _Checker, nodes: dict) -> None:
    present = [key for key in ("nodeData", "nodesData") if key in nodes and nodes[key] is not None]
    for key in present:
        if check.typed(nodes, key, f"nodes.{key}", "array", required=False):
            for i, entry in enumerate(nodes[key]):
                if not isinstance(entry, dict):
                    check.add(f"nodes.{key}[{i}]", f"expected an object, got {_json_type(entry)}")
    if len(present) == 2 and nodes["nodeData"] and nodes["nodesData"]:
        check.add("nodes", "both nodeData and nodesData hold entries; keep one (nodeData)")
    if check.typed(nodes, "count", "nodes.count", "integer", required=False) and nodes["count"] < 0:
        check.add("nodes.count", "must not be negative")


def normalise_config(document: dict) -> dict:
    """A deep copy in the consumers' shape: `nodes.nodeData`, never `nodesData`.

    Call on a document `validate_config` accepted.
    """
    result = copy.deepcopy(document)
    nodes = result["nodes"]
    variant = nodes.pop("nodesData", None)
    if not nodes.get("nodeData"):
        nodes["nodeData"] = variant or []
    return result


def load_config(path: str | Path) -> dict:
    """Read, parse, validate and normalise; raises ConfigInvalid listing every problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise ConfigInvalid([ConfigProblem(str(path), "no such file")]) from e
    except UnicodeDecodeError as e:
        raise ConfigInvalid([ConfigProblem(str(path), f"not UTF-8 text (byte {e.start})")]) from e
    except OSError as e:
        raise ConfigInvalid([ConfigProblem(str(path), f"cannot read: {e.strerror}")]) from e
    document = parse_config_text(text, source=str(path))
    problems = validate_config(document)
    if problems:
        raise ConfigInvalid(problems)
    return normalise_config(document)

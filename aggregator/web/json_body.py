"""Parsing request bodies as strict JSON, with errors that say where.

The rules are `aggregator/strict_json.py`'s (no NaN/Infinity, no lone
surrogates, depth and integer-digit limits, named by JSON path). One
leniency: a trailing comma before `]` or `}` is accepted, because the
operators' guide's own `curl` example for the cluster update has one
(`"tags": ["ai-cluster", "llm", "datacenter-grade-1", ]`) and operators copy it.

Cost: linear in the body and done by C code (the json module, `re`), so a
16 MB body takes a fraction of a second and the caller can run it in a thread
(`aggregator.web.app.read_json_body` does for large bodies).
"""

from __future__ import annotations

import json
import re
from typing import Any

from aggregator import strict_json

__all__ = ["BodyError", "parse_json_body", "strip_trailing_commas"]

# a JSON string (kept as it is) or a comma whose next non-blank character closes a container
_STRING_OR_TRAILING_COMMA = re.compile(r'("[^"\\]*(?:\\.[^"\\]*)*")|,(?=[ \t\r\n]*[\]}])', re.S)


class BodyError(ValueError):
    """The body is not the JSON the endpoint needs."""


def strip_trailing_commas(text: str) -> str:
    """`text` without commas that directly precede `]`/`}` (outside strings); one regex pass in C."""
    return _STRING_OR_TRAILING_COMMA.sub(r"\1", text)


def parse_json_body(raw: bytes, *, want_object: bool = True) -> Any:
    if not raw.strip():
        raise BodyError("the request body is empty; a JSON object is expected")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BodyError(f"the request body is not UTF-8 (byte {exc.start})") from exc
    try:
        try:
            value = strict_json.loads(text)
        except json.JSONDecodeError as strict_error:
            try:
                value = strict_json.loads(strip_trailing_commas(text))
            except json.JSONDecodeError:
                raise BodyError(
                    f"invalid JSON body: {strict_error.msg} at line {strict_error.lineno} column {strict_error.colno}"
                ) from strict_error
    except strict_json.StrictJsonError as exc:
        raise BodyError(f"request body {exc.path}: {exc.problem}") from exc
    if want_object and not isinstance(value, dict):
        raise BodyError(f"the request body must be a JSON object, not {type(value).__name__}")
    return value


"""Parsing request bodies as JSON, with errors that say where.

One leniency: a trailing comma before `]` or `}` is accepted, because the
operators' guide's own `curl` example for the cluster update has one
(`"tags": ["ai-cluster", "llm", "datacenter-grade-1", ]`) and operators copy it.
Nothing else outside strict JSON is accepted.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["BodyError", "parse_json_body", "strip_trailing_commas"]


class BodyError(ValueError):
    """The body is not the JSON the endpoint needs."""


def strip_trailing_commas(text: str) -> str:
    """`text` without commas that directly precede `]`/`}` (outside strings)."""
    out: list[str] = []
    in_string = escaped = False
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if in_string:
            out.append(ch)
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
            out.append(ch)
        elif ch == ",":
            j = i + 1
            while j < n and text[j] in " \t\r\n":
                j += 1
            if j >= n or text[j] not in "]}":
                out.append(ch)
        else:
            out.append(ch)
        i += 1
    return "".join(out)


def parse_json_body(raw: bytes, *, want_object: bool = True) -> Any:
    if not raw.strip():
        raise BodyError("the request body is empty; a JSON object is expected")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BodyError(f"the request body is not UTF-8 (byte {exc.start})") from exc
    try:
        value = json.loads(text)
    except json.JSONDecodeError as strict_error:
        try:
            value = json.loads(strip_trailing_commas(text))
        except json.JSONDecodeError:
            raise BodyError(
                f"invalid JSON body: {strict_error.msg} at line {strict_error.lineno} column {strict_error.colno}"
            ) from strict_error
    if want_object and not isinstance(value, dict):
        raise BodyError(f"the request body must be a JSON object, not {type(value).__name__}")
    return value

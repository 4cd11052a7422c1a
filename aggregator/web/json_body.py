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
# a cheap first look: no such comma anywhere (strings included) means nothing to strip
_MAYBE_TRAILING_COMMA = re.compile(r",[ \t\r\n]*[\]}]")


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
    # Each pass below is one C call holding the GIL for its length (~10-15 ms per MB):
    # a body that may have trailing commas is stripped first and parsed once, not
    # parsed, failed at its last byte, stripped and parsed again.
    lenient = _MAYBE_TRAILING_COMMA.search(text) is not None
    try:
        try:
            value = strict_json.loads(strip_trailing_commas(text) if lenient else text)
        except json.JSONDecodeError as first:
            raise BodyError(_syntax_message(_error_as_sent(text) if lenient else first)) from first
    except strict_json.StrictJsonError as exc:
        raise BodyError(f"request body {exc.path}: {exc.problem}") from exc
    if want_object and not isinstance(value, dict):
        raise BodyError(f"the request body must be a JSON object, not {type(value).__name__}")
    return value



def _error_as_sent(text: str) -> json.JSONDecodeError:
    """Where the body as sent is wrong (not the copy without trailing commas)."""
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        return exc
    return json.JSONDecodeError("not JSON", text, 0)  # not reached: the stripped copy failed, so did this


def _syntax_message(error: json.JSONDecodeError) -> str:
    return f"invalid JSON body: {error.msg} at line {error.lineno} column {error.colno}"

"""Strict JSON at every edge: what is parsed, stored and sent is JSON any reader can read back.

Refused, with the JSON path of the offending value (`$.tags[0]`):
- NaN, Infinity and -Infinity (not JSON), and numbers that overflow a double (`1e400`);
- strings or keys holding a lone UTF-16 surrogate (`"\\ud800"`: not encodable as UTF-8);
- integers with more than `MAX_INT_DIGITS` digits;
- nesting deeper than `MAX_DEPTH` (objects and arrays; the top-level value is depth 1).

The limits are documented in docs/limits.md. Everything here runs in C on the
common path (the standard `json` module and `re`): a walk over the value in
Python happens only to name the path once something is already known to be
wrong, so cost stays linear in the size and bounded by the body limits.
"""

from __future__ import annotations

import json
import math
import re
from array import array
from collections.abc import Iterator
from itertools import accumulate
from typing import Any

__all__ = [
    "MAX_DEPTH",
    "MAX_INT_DIGITS",
    "StrictJsonError",
    "depth_of",
    "dumps",
    "format_path",
    "loads",
]

MAX_DEPTH = 64
MAX_INT_DIGITS = 40  # room for 128-bit integers (39 digits); SQLite itself holds 19

_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
# bytes.translate tables: keep only brackets, then openers -> +1 and closers -> -1 (signed bytes)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_BRACKET_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
# ... and one that folds every byte into digit / exponent / sign / other, to spot number
# literals that may be out of range (long digit runs, 3-digit exponents) with `in`
_NUMBER_SHAPE = bytes(
    ord("0") if chr(b).isdigit() and b < 128 else ord("e") if b in b"eE" else ord("+") if b in b"+-" else ord(" ")
    for b in range(256)
)
_LONG_RUN = b"0" * (MAX_INT_DIGITS + 1)


class StrictJsonError(ValueError):
    """The value is not strict JSON within the limits; `path` says where (`$` is the top)."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


def format_path(parts: tuple) -> str:
    out = ["$"]
    for part in parts:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif part.isidentifier():
            out.append(f".{part}")
        else:
            out.append(f"[{json.dumps(part)}]")
    return "".join(out)


def _bracket_depth(data: bytes) -> int:
    brackets = data.translate(None, _NOT_BRACKETS)
    if not brackets:
        return 0
    return max(accumulate(array("b", brackets.translate(_BRACKET_STEPS))))


def _may_hold_odd_numbers(data: bytes) -> bool:
    """Whether some number literal may be over the digit limit or overflow a double (strings count too)."""
    shape = data.translate(_NUMBER_SHAPE)
    return _LONG_RUN in shape or b"e000" in shape or b"e+000" in shape


def _nesting_exceeds(text: str) -> bool:
    """Whether JSON text nests deeper than MAX_DEPTH; C-speed passes only.

    Counting every bracket is an upper bound (brackets inside strings count
    too) and costs a few milliseconds per megabyte; only text over the limit
    by that count pays for stripping its strings and counting again.
    """
    if _bracket_depth(text.encode("utf-8", "surrogatepass")) <= MAX_DEPTH:
        return False
    return _bracket_depth(_STRING.sub("", text).encode("utf-8", "surrogatepass")) > MAX_DEPTH


# ------------------------------------------------------------ locating a problem


class _Bad:
    """Stands in for a value the strict parser refuses, so a walk can find its path."""

    __slots__ = ("problem",)

    def __init__(self, problem: str) -> None:
        self.problem = problem


def _lenient_int(text: str) -> Any:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        return _Bad(f"an integer of {digits} digits is over the {MAX_INT_DIGITS}-digit limit")
    return int(text)


def _lenient_float(text: str) -> Any:
    value = float(text)
    return value if math.isfinite(value) else _Bad(f"{text} is out of range for a JSON number")


def _lenient_constant(name: str) -> Any:
    return _Bad(f"{name} is not JSON")


def _walk(value: Any) -> Iterator[tuple[tuple, Any, int]]:
    """(path, value, depth) of every value, depth-first, keys included as values."""
    stack: list[tuple[tuple, Any, int]] = [((), value, 1)]
    while stack:
        path, item, depth = stack.pop()
        yield path, item, depth
        if isinstance(item, dict):
            children = list(item.items())
            for key, child in reversed(children):
                stack.append(((*path, key), child, depth + 1))
                stack.append(((*path, key), key, depth))  # the key itself, checked as a string
        elif isinstance(item, list):
            for index in range(len(item) - 1, -1, -1):
                stack.append(((*path, index), item[index], depth + 1))


def _problem_of(item: Any, depth: int) -> str | None:
    if depth > MAX_DEPTH and isinstance(item, (dict, list)):
        return f"nested deeper than {MAX_DEPTH} levels"
    if isinstance(item, _Bad):
        return item.problem
    if isinstance(item, str):
        try:
            item.encode("utf-8")
        except UnicodeEncodeError as exc:
            return f"holds a lone surrogate (\\u{ord(item[exc.start]):04x}), which is not valid Unicode"
        return None
    if isinstance(item, bool) or item is None:
        return None
    if isinstance(item, int):
        if item.bit_length() > 140 or len(str(abs(item))) > MAX_INT_DIGITS:
            return f"an integer of more than {MAX_INT_DIGITS} digits is over the limit"
        return None
    if isinstance(item, float):
        return None if math.isfinite(item) else f"{item} is not a finite number"
    if isinstance(item, (dict, list)):
        return None
    return f"a {type(item).__name__} is not JSON data"


def _locate(value: Any) -> StrictJsonError | None:
    for path, item, depth in _walk(value):
        problem = _problem_of(item, depth)
        if problem is not None:
            return StrictJsonError(format_path(path), problem)
    return None


def _locate_too_deep(text: str) -> StrictJsonError:
    """The path where nesting first passes MAX_DEPTH in (syntactically plausible) JSON text."""
    stack: list[list] = []  # [kind, key or index]
    pending_key: str | None = None
    token = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{},:]', re.S)
    for match in token.finditer(text):
        tok = match.group()
        if tok in "[{":
            if stack and stack[-1][0] == "{" and pending_key is not None:
                stack[-1][1] = pending_key
            stack.append([tok, 0 if tok == "[" else None])
            pending_key = None
            if len(stack) > MAX_DEPTH:
                return StrictJsonError(format_path(tuple(s[1] for s in stack[:-1] if s[1] is not None)),
                                       f"nested deeper than {MAX_DEPTH} levels")
        elif tok in "]}":
            if stack:
                stack.pop()
        elif tok == ",":
            if stack and stack[-1][0] == "[":
                stack[-1][1] += 1
        elif tok == ":":
            if stack and stack[-1][0] == "{" and pending_key is not None:
                stack[-1][1] = pending_key
        else:
            try:
                pending_key = json.loads(tok)
            except ValueError:
                pending_key = tok
    return StrictJsonError("$", f"nested deeper than {MAX_DEPTH} levels")


# ------------------------------------------------------------ the API


def _refuse_int(text: str) -> int:
    if len(text) > MAX_INT_DIGITS and len(text.lstrip("-")) > MAX_INT_DIGITS:  # the first test is the cheap one
        raise _Refused
    return int(text)


def _refuse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused
    return value


def _refuse_constant(name: str) -> Any:
    raise _Refused


class _Refused(Exception):
    pass


def _strict_parse(text: str) -> Any:
    try:
        return json.loads(text, parse_int=_refuse_int, parse_float=_refuse_float, parse_constant=_refuse_constant)
    except _Refused:
        lenient = json.loads(
            text, parse_int=_lenient_int, parse_float=_lenient_float, parse_constant=_lenient_constant
        )
        raise _locate(lenient) or StrictJsonError("$", "not strict JSON") from None


def loads(text: str) -> Any:
    """Parse strict JSON within the limits; `json.JSONDecodeError` for bad syntax, else StrictJsonError.

    The plain C parser does the work; a second pass with number hooks runs
    only when the text shows NaN/Infinity or a number literal that may be
    out of range (hooks cost a Python call per number).
    """
    if _nesting_exceeds(text):
        raise _locate_too_deep(text)
    data = text.encode("utf-8", "surrogatepass")
    try:
        if b"NaN" in data or b"Infinity" in data or _may_hold_odd_numbers(data):
            value = _strict_parse(text)
        else:
            value = json.loads(text)
    except RecursionError:  # the bracket count was fooled by malformed strings: still too deep
        raise StrictJsonError("$", f"nested deeper than {MAX_DEPTH} levels") from None
    if _SURROGATE_ESCAPE.search(text):
        found = _locate(value)
        if found is not None:
            raise found
    return value


def dumps(value: Any, *, sort_keys: bool = True, indent: int | None = None) -> str:
    """Encode `value` as strict JSON within the limits, or raise StrictJsonError naming the path."""
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False, sort_keys=sort_keys, indent=indent)
        data = text.encode("utf-8")
    except (ValueError, TypeError, RecursionError, UnicodeEncodeError):
        raise _locate(value) or StrictJsonError("$", "not JSON data") from None
    if _LONG_RUN in data.translate(_NUMBER_SHAPE) or _nesting_exceeds(text):
        found = _locate(value)
        if found is not None:
            raise found
    return text


def depth_of(value: Any) -> int:
    """How deep `value` nests (a scalar is 0, `{}`/`[]` is 1); stops counting past MAX_DEPTH + 1."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        if depth > MAX_DEPTH:
            return deepest
        stack.extend((child, depth + 1) for child in children)
    return deepest

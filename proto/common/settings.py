"""Numbers from the environment, checked once the same way everywhere.

Every numeric setting names itself and its value when it is refused
(`AIOS_X='ten': not a number of seconds`), so an operator reading a pod's
log knows which line of the manifest to fix. An empty value counts as unset.
NaN and infinities fail the range check like any value out of range.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

__all__ = ["number_setting"]

D = TypeVar("D")


def number_setting(
    env: Mapping[str, str],
    name: str,
    default: D,
    *,
    low: float,
    high: float,
    low_exclusive: bool = False,
    whole: bool = False,
    unit: str = "",
    error: type[ValueError] = ValueError,
) -> float | int | D:
    """`env[name]` as a number within [low, high] (or (low, high] when `low_exclusive`), else `default`."""
    raw = str(env.get(name, "") or "").strip()
    if not raw:
        return default
    of_unit = f" of {unit}" if unit else ""
    try:
        value: float | int = int(raw) if whole else float(raw)
    except ValueError as exc:
        raise error(f"{name}={raw!r}: not a {'whole number' if whole else 'number'}{of_unit}") from exc
    above_low = value > low if low_exclusive else value >= low
    if not (above_low and value <= high):
        unit_text = f" {unit}" if unit else ""
        if low_exclusive:
            raise error(f"{name}={raw!r}: must be > {low:g} and <= {high:g}{unit_text}")
        raise error(f"{name}={raw!r}: must be between {low:g} and {high:g}{unit_text}")
    return value

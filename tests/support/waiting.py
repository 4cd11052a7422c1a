"""Waiting for something to happen, bounded: the tests' one polling loop."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout_s: float = 15.0, what: str = "condition", every_s: float = 0.05) -> T:
    """Poll until `predicate()` is truthy and return its value; fail naming `what` after `timeout_s`.

    An exception from `predicate` counts as "not yet" (a server still starting) and is
    named in the failure if the time runs out.
    """
    deadline = time.monotonic() + timeout_s
    last_error: BaseException | None = None
    while True:
        try:
            value = predicate()
        except Exception as e:  # noqa: BLE001 - not ready yet; reported if it never gets there
            last_error = e
        else:
            if value:
                return value
        if time.monotonic() > deadline:
            detail = f" (last error: {last_error!r})" if last_error is not None else ""
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}{detail}")
        time.sleep(every_s)

"""The policy package's exceptions: one base the callers catch, a few kinds under it."""

from __future__ import annotations

__all__ = ["PolicyConfigError", "PolicyError", "PolicyLoadError", "PolicyRaised"]


class PolicyError(Exception):
    """A policy could not be loaded or did not produce a usable result.

    `reason` is the text shown to the operator (also `str(error)`).
    """

    def __init__(self, reason: str, *, missing_module: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.missing_module = missing_module  # the module an import lacked, when that was the reason


class PolicyLoadError(PolicyError):
    """The package could not be resolved, fetched, extracted, installed or imported."""


class PolicyConfigError(PolicyError):
    """The execution settings are inconsistent (e.g. remote mode without an executor)."""


class PolicyRaised(PolicyError):
    """The policy's own code raised (or answered something unusable); its worker and state are kept.

    `policy_message` is the policy's own error (`KeyError: 'x' (function.py line 3 in management)`).
    """

    def __init__(self, reason: str, policy_message: str = "") -> None:
        super().__init__(reason)
        self.policy_message = policy_message or reason

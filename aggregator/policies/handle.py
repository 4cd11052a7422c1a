"""What callers hold: a loaded policy, whichever way it runs."""

from __future__ import annotations

import abc

__all__ = ["PolicyHandle"]


class PolicyHandle(abc.ABC):
    """A loaded policy. Every method raises `PolicyError` (with `.reason`) on failure."""

    #: the policy rule URI, or None for a package given by path/URL
    uri: str | None
    #: "local" or "remote"
    mode: str
    #: what it was loaded from (URI, URL, path), for messages
    label: str

    @abc.abstractmethod
    def eval(self, input_data: dict, parameters: dict | None = None) -> dict:
        """Evaluate; `parameters` override the loaded ones key by key for this call."""

    @abc.abstractmethod
    def management(self, action: str, data: dict) -> dict:
        """Call the policy's `management(action, data)`."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the worker or connection; idempotent."""

    def __enter__(self) -> PolicyHandle:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

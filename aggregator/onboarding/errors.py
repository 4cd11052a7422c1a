"""The onboarding package's exceptions: one base, one class per kind of failure."""

from __future__ import annotations

__all__ = [
    "ConfigInvalid",
    "NodeSourceUnavailable",
    "OnboardingError",
    "ParserError",
    "ParserFailed",
    "ParserRefused",
    "ParserUnreachable",
]


class OnboardingError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigInvalid(OnboardingError):
    """The operator's config.json is not usable; `problems` lists every reason."""

    def __init__(self, problems: list) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(str(p) for p in self.problems))


class NodeSourceUnavailable(OnboardingError):
    """Neither the aggregator nor the Kubernetes API could tell us the nodes."""


class ParserError(OnboardingError):
    """The network's parser did not accept a request."""


class ParserRefused(ParserError):
    """A normal refusal (HTTP 400 or `success: false`): `message` is the parser's own words."""

    def __init__(self, message: str, status: int, body: str) -> None:
        self.message = message
        self.status = status
        self.body = body
        super().__init__(message)


class ParserFailed(ParserError):
    """The parser answered with an error (HTTP 5xx, or an answer we cannot read)."""

    def __init__(self, message: str, status: int | None, body: str) -> None:
        self.message = message
        self.status = status
        self.body = body
        super().__init__(message)


class ParserUnreachable(ParserError):
    """No answer at all after every retry (connection refused, timeout, DNS)."""

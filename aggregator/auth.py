"""Bearer-token authentication shared by the aggregator's gRPC and HTTP sides.

Tokens come from `AIOS_TOKEN` or, as a Kubernetes Secret mounted as a file,
`AIOS_TOKEN_FILE` (one token per line, so a token can be rotated by listing
the old and the new one for a while).
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

__all__ = ["AuthError", "bearer_token", "load_tokens", "token_matches"]


class AuthError(Exception):
    """The caller did not present a valid token."""


def load_tokens(env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    env = os.environ if env is None else env
    tokens: list[str] = []
    if env.get("AIOS_TOKEN"):
        tokens.append(env["AIOS_TOKEN"].strip())
    path = env.get("AIOS_TOKEN_FILE")
    if path:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise AuthError(f"AIOS_TOKEN_FILE={path}: cannot read: {exc.strerror}") from exc
        tokens.extend(line.strip() for line in text.splitlines() if line.strip())
    return tuple(tokens)


def token_matches(presented: str, accepted: Iterable[str]) -> bool:
    """Constant-time comparison against every accepted token."""
    presented_bytes = presented.encode()
    matched = False
    for token in accepted:
        # no early exit: the time taken does not tell which token was close
        matched |= hmac.compare_digest(presented_bytes, token.encode())
    return matched


def bearer_token(header_value: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None."""
    if not header_value:
        return None
    scheme, _, token = header_value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()

"""Bearer tokens of the aggregator's gRPC and HTTP sides: who may write, who may only read.

Two kinds of token (loaded by the one rule in `proto.common.tokens`):
- write tokens, `AIOS_TOKEN` / `AIOS_TOKEN_FILE` (Secret key `token`): every call;
- read tokens, `AIOS_READ_TOKEN` / `AIOS_READ_TOKEN_FILE` (Secret key `read-token`):
  reading calls only, for the network's callers; a write with one is refused (403 /
  PERMISSION_DENIED), not treated as unauthenticated.
Each file may list several tokens, one per line (rotation: old and new for a while).
"""

from __future__ import annotations

import hmac
import os
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TextIO

from proto.common.tokens import TokenFileError, tokens_from_env

__all__ = [
    "AccessTokens",
    "AuthError",
    "Role",
    "TokenSource",
    "bearer_token",
    "ensure_token_file",
    "load_access_tokens",
    "load_read_tokens",
    "load_tokens",
    "operator_token",
    "token_matches",
    "tokens_from_env",
]

AuthError = TokenFileError  # a token file that is named but cannot be read


class Role(Enum):
    READ = "read"
    WRITE = "write"


@dataclass(frozen=True, repr=False)
class AccessTokens:
    """The tokens a server accepts, by what they allow."""

    write: tuple[str, ...]
    read: tuple[str, ...] = ()

    def __repr__(self) -> str:  # a logged config must not carry a secret
        return f"AccessTokens(write=<{len(self.write)}>, read=<{len(self.read)}>)"

    def __bool__(self) -> bool:
        return bool(self.write or self.read)

    def role_of(self, presented: str | None) -> Role | None:
        """What `presented` allows (write wins), or None; constant time over all tokens."""
        if presented is None:
            return None
        can_write = token_matches(presented, self.write)
        can_read = token_matches(presented, self.read)
        if can_write:
            return Role.WRITE
        return Role.READ if can_read else None


TokenSource = AccessTokens | Callable[[], AccessTokens]


def load_tokens(env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The write tokens: `AIOS_TOKEN`, then the lines of `AIOS_TOKEN_FILE`."""
    return tokens_from_env(env, value_var="AIOS_TOKEN", file_var="AIOS_TOKEN_FILE")


def operator_token(explicit: str | None, warn: TextIO, env: Mapping[str, str] | None = None) -> str | None:
    """The token a command-line client sends: `--token`, else the first write token.

    An unreadable `AIOS_TOKEN_FILE` is a warning, not an exit: the call then goes without a
    token and the aggregator's UNAUTHENTICATED answer says what is missing.
    """
    if explicit:
        return str(explicit)
    try:
        tokens = load_tokens(env)
    except AuthError as e:
        print(f"warning: {e}", file=warn)
        return None
    return tokens[0] if tokens else None


def load_read_tokens(env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The read-only tokens: `AIOS_READ_TOKEN`, then the lines of `AIOS_READ_TOKEN_FILE`."""
    return tokens_from_env(env, value_var="AIOS_READ_TOKEN", file_var="AIOS_READ_TOKEN_FILE")


def load_access_tokens(env: Mapping[str, str] | None = None) -> AccessTokens:
    return AccessTokens(write=load_tokens(env), read=load_read_tokens(env))


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


def ensure_token_file(path: Path, *, mode: int = 0o440) -> str:
    """The token in `path`, created first (random, `mode`) when there is none.

    For a token two processes share without anyone typing it (the aggregator and
    its policy runner): either may start first, and the loser of a race reads the
    winner's token, since the file appears whole (written aside, then hard-linked
    into place, which fails when it exists). The parent folder is created 0750 so
    only the file's owner and group can reach it.
    """
    path = Path(path)
    if not path.parent.exists():
        path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
    if not path.exists():
        staged = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(32) + "\n")
            try:
                os.link(staged, path)
            except FileExistsError:
                pass  # the other side won: use its token
        finally:
            staged.unlink(missing_ok=True)
    tokens = tokens_from_env({"AIOS_TOKEN_FILE": str(path)})
    if not tokens:
        raise AuthError(f"{path}: the token file is empty")
    return tokens[0]

"""Bearer tokens from the environment: one rule for the agent and the aggregator.

A token is given either as a value (`AIOS_TOKEN`) or as a file (`AIOS_TOKEN_FILE`,
a mounted Kubernetes Secret), one token per line, so a token can be rotated by
listing the old and the new one for a while. The value comes first, then the
file's lines; blank lines are skipped. A caller that sends a token sends the
first; a server accepts them all. The same rule holds for the read-only token
(`AIOS_READ_TOKEN` / `AIOS_READ_TOKEN_FILE`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

__all__ = ["TokenFileError", "read_token_file", "tokens_from_env"]


class TokenFileError(Exception):
    """A token file that is named but cannot be read."""


def read_token_file(path: str | os.PathLike[str], *, variable: str = "token file") -> tuple[str, ...]:
    """The non-blank lines of `path`, stripped; `TokenFileError` naming `variable` and the path."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise TokenFileError(f"{variable}={os.fspath(path)}: cannot read: {exc.strerror or exc}") from exc
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def tokens_from_env(
    env: Mapping[str, str] | None = None, *, value_var: str = "AIOS_TOKEN", file_var: str = "AIOS_TOKEN_FILE"
) -> tuple[str, ...]:
    """`value_var`'s value, then the lines of the file `file_var` names (empty values count as unset)."""
    env = os.environ if env is None else env
    tokens: list[str] = []
    value = (env.get(value_var) or "").strip()
    if value:
        tokens.append(value)
    path = (env.get(file_var) or "").strip()
    if path:
        tokens.extend(read_token_file(path, variable=file_var))
    return tuple(tokens)

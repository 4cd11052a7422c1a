"""What the agent proves itself with to the aggregator, read afresh at each connect.

In a cluster: the pod's projected ServiceAccount token (audience
`aios-aggregator`, rotated by the kubelet), at `AIOS_SA_TOKEN_FILE`, default
`/var/run/secrets/aios/identity/token` when that file exists. The aggregator
verifies it with a TokenReview and binds the stream to the node the pod runs
on, so one agent cannot speak for another node.

Elsewhere (`make run`, tests without a cluster): the shared token,
`AIOS_TOKEN` or the first line of `AIOS_TOKEN_FILE` (`proto.common.tokens`).

Both are read at each connect, so a rotated file needs no restart.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from proto.common.tokens import TokenFileError, read_token_file, tokens_from_env

__all__ = ["DEFAULT_SA_TOKEN_FILE", "AgentCredentials", "TokenFileError", "credentials_from_env"]

DEFAULT_SA_TOKEN_FILE = Path("/var/run/secrets/aios/identity/token")


@dataclass(frozen=True)
class AgentCredentials:
    sa_token_file: Path | None = None  # set: the Kubernetes identity; else the shared token
    env: Mapping[str, str] | None = None  # where AIOS_TOKEN / AIOS_TOKEN_FILE are read

    @property
    def kind(self) -> str:
        return f"ServiceAccount token {self.sa_token_file}" if self.sa_token_file else "shared token"

    def current(self) -> str | None:
        """The token to send now; `TokenFileError` when its file cannot be read."""
        if self.sa_token_file is not None:
            lines = read_token_file(self.sa_token_file, variable="AIOS_SA_TOKEN_FILE")
            if not lines:
                raise TokenFileError(f"AIOS_SA_TOKEN_FILE={self.sa_token_file}: the file is empty")
            return lines[0]
        tokens = tokens_from_env(self.env)
        return tokens[0] if tokens else None


def credentials_from_env(env: Mapping[str, str] | None = None, *, default_sa_file: Path = DEFAULT_SA_TOKEN_FILE
                         ) -> AgentCredentials:
    """`AIOS_SA_TOKEN_FILE` when set, else the default projected path when it exists, else the shared token."""
    env = os.environ if env is None else env
    named = (env.get("AIOS_SA_TOKEN_FILE") or "").strip()
    if named:
        return AgentCredentials(sa_token_file=Path(named), env=env)
    if default_sa_file.is_file():
        return AgentCredentials(sa_token_file=default_sa_file, env=env)
    return AgentCredentials(sa_token_file=None, env=env)

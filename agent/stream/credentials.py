"""The bearer token the agent presents to the aggregator, read at each connect.

`AIOS_TOKEN` (a literal), else the first line of `AIOS_TOKEN_FILE`: in a
cluster, key `token` of Secret `aios-token`, mounted from an optional Secret
volume. The aggregator creates that Secret on its first start, and the
kubelet fills the volume a minute or two later, so a missing file is a wait,
not an error: the stream says what it waits for and retries with its backoff.
Reading it at each connect also follows a rotated Secret without a restart.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MAX_TOKEN_CHARS", "BearerToken", "TokenUnavailable"]

MAX_TOKEN_CHARS = 4096  # a token is tens of characters; a bigger first line is not one
_SECRET = "Secret aios-token, key token"


class TokenUnavailable(Exception):
    """No token can be read now; the message says what is awaited."""


@dataclass(frozen=True)
class BearerToken:
    value: str | None = None  # AIOS_TOKEN
    path: Path | None = None  # AIOS_TOKEN_FILE

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> BearerToken:
        env = os.environ if env is None else env
        value = env.get("AIOS_TOKEN", "").strip() or None
        path = env.get("AIOS_TOKEN_FILE", "").strip()
        return cls(value, Path(path) if path else None)

    @property
    def configured(self) -> bool:
        return self.value is not None or self.path is not None

    def current(self) -> str | None:
        """The token to send now (None: none configured); TokenUnavailable while the file is missing or unusable."""
        if self.value is not None:
            return self.value
        if self.path is None:
            return None
        try:
            text = self.path.read_text()
        except FileNotFoundError as exc:
            raise TokenUnavailable(
                f"waiting for the token file {self.path} ({_SECRET}: the aggregator creates it on its first "
                "start, the kubelet mounts it a minute or two later)"
            ) from exc
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise TokenUnavailable(f"cannot read the token file {self.path}: {reason}") from exc
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if not lines:
            raise TokenUnavailable(f"the token file {self.path} is empty ({_SECRET})")
        if len(lines[0]) > MAX_TOKEN_CHARS:
            raise TokenUnavailable(f"the token file {self.path}: its first line is over {MAX_TOKEN_CHARS} characters")
        return lines[0]

"""The cluster's shared tokens as a Kubernetes Secret the aggregator creates on its first start.

So that `kubectl apply -k deploy/` needs only the cluster id (and the image),
nobody types a token: at start, when `AIOS_TOKEN_SECRET` names the Secret and
no token is configured otherwise (its mounted file is not there yet), the
aggregator reads that Secret through the API, and creates it when it is
missing, with two keys (docs/operators.md):

- `token`: writes (and reads); what the agents present in `token` mode and
  what operators put in `Authorization: Bearer ...`;
- `read-token`: a read-only token for the network's callers of the HTTP reads.

Each key holds one token per line (the aggregator accepts every line, clients
send the first), so a rotation can list the new and the old one for a while.
The pods mount the Secret as an optional volume; the kubelet fills it a minute
or two after the Secret appears, and the agents and the policy runner wait for
the file. RBAC: `get` on this one Secret (resourceNames), `create` on secrets
in the namespace (a create has no name to check against; docs/rbac.md).
"""

from __future__ import annotations

import base64
import binascii
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "MAX_TOKENS",
    "MAX_TOKEN_CHARS",
    "READ_TOKEN_KEY",
    "TOKEN_KEY",
    "TokenSecret",
    "TokenSecretError",
    "ensure_token_secret",
    "new_token",
]

log = logging.getLogger(__name__)

TOKEN_KEY = "token"
READ_TOKEN_KEY = "read-token"
MAX_TOKENS = 16  # lines per key: the current token and a few being rotated out
MAX_TOKEN_CHARS = 4096


class TokenSecretError(Exception):
    """The Secret cannot be read or created, or holds no usable token; the message says which and why."""


@dataclass(frozen=True)
class TokenSecret:
    namespace: str
    name: str
    tokens: tuple[str, ...]  # key `token`
    read_tokens: tuple[str, ...]  # key `read-token` (empty when the Secret has none)
    created: bool  # this call created it


def new_token() -> str:
    return secrets.token_urlsafe(32)  # 256 random bits


def _tokens(data: dict | None, key: str, where: str, *, required: bool) -> tuple[str, ...]:
    raw = (data or {}).get(key)
    if raw is None:
        if required:
            raise TokenSecretError(f"{where} has no key {key!r}")
        return ()
    try:
        text = base64.b64decode(raw, validate=True).decode("utf-8")
    except (binascii.Error, ValueError) as exc:  # UnicodeDecodeError is a ValueError
        raise TokenSecretError(f"{where}: key {key!r} is not base64 of UTF-8 text") from exc
    lines = tuple(line.strip() for line in text.splitlines() if line.strip())
    if required and not lines:
        raise TokenSecretError(f"{where}: key {key!r} is empty")
    if len(lines) > MAX_TOKENS:
        raise TokenSecretError(f"{where}: key {key!r} holds {len(lines)} lines, more than {MAX_TOKENS} tokens")
    for number, line in enumerate(lines, 1):
        if len(line) > MAX_TOKEN_CHARS:
            raise TokenSecretError(f"{where}: key {key!r} line {number} is over {MAX_TOKEN_CHARS} characters")
    return lines


def _from_secret(secret: Any, namespace: str, name: str, *, created: bool) -> TokenSecret:
    where = f"Secret {namespace}/{name}"
    data = secret.data if secret is not None else None
    return TokenSecret(namespace, name, _tokens(data, TOKEN_KEY, where, required=True),
                       _tokens(data, READ_TOKEN_KEY, where, required=False), created)


def _api_failure(exc: Exception, verb: str, namespace: str, name: str) -> TokenSecretError:
    status = getattr(exc, "status", None)
    if status == 403:
        return TokenSecretError(
            f"forbidden to {verb} Secret {namespace}/{name}: grant the aggregator's service account "
            f"'get' on secrets named {name!r} and 'create' on secrets in namespace {namespace!r} "
            "(deploy/aggregator/aggregator-rbac.yaml, docs/rbac.md), or create the Secret yourself"
        )
    if status is not None:
        return TokenSecretError(f"cannot {verb} Secret {namespace}/{name}: {status} {getattr(exc, 'reason', '')}")
    return TokenSecretError(f"cannot {verb} Secret {namespace}/{name}: the API server is unreachable: {exc}")


def ensure_token_secret(
    core_v1: Any,
    namespace: str,
    name: str,
    *,
    token_factory: Callable[[], str] = new_token,
    request_timeout_s: float = 10.0,
) -> TokenSecret:
    """The Secret's tokens, creating the Secret (keys `token`, `read-token`) when it does not exist."""
    found = _read(core_v1, namespace, name, request_timeout_s)
    if found is not None:
        return found
    try:
        return _create(core_v1, namespace, name, token_factory, request_timeout_s)
    except _CreatedMeanwhile:  # another start won the race: theirs is the one
        log.info("Secret %s/%s was created meanwhile; reading it", namespace, name)
        found = _read(core_v1, namespace, name, request_timeout_s)
        if found is None:
            raise TokenSecretError(f"Secret {namespace}/{name} exists (409 on create) but reads as missing (404)") from None
        return found


class _CreatedMeanwhile(Exception):
    pass


def _read(core_v1: Any, namespace: str, name: str, request_timeout_s: float) -> TokenSecret | None:
    from kubernetes import client  # late: only a cluster needs it

    try:
        return _from_secret(core_v1.read_namespaced_secret(name, namespace, _request_timeout=request_timeout_s),
                            namespace, name, created=False)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise _api_failure(exc, "read", namespace, name) from exc
    except TokenSecretError:
        raise
    except Exception as exc:  # urllib3's connection errors come in several classes
        raise _api_failure(exc, "read", namespace, name) from exc


def _create(core_v1: Any, namespace: str, name: str, token_factory: Callable[[], str],
            request_timeout_s: float) -> TokenSecret:
    from kubernetes import client

    token, read_token = token_factory(), token_factory()
    body = client.V1Secret(
        metadata=client.V1ObjectMeta(
            name=name, namespace=namespace,
            labels={"app.kubernetes.io/part-of": "aios", "app.kubernetes.io/managed-by": "aios-aggregator"},
        ),
        type="Opaque",
        # data, not stringData: the same bytes whatever the API server does with stringData
        data={TOKEN_KEY: base64.b64encode(f"{token}\n".encode()).decode(),
              READ_TOKEN_KEY: base64.b64encode(f"{read_token}\n".encode()).decode()},
    )
    try:
        core_v1.create_namespaced_secret(namespace, body, _request_timeout=request_timeout_s)
    except client.ApiException as exc:
        if exc.status == 409:
            raise _CreatedMeanwhile from exc
        raise _api_failure(exc, "create", namespace, name) from exc
    except Exception as exc:  # urllib3's connection errors come in several classes
        raise _api_failure(exc, "create", namespace, name) from exc
    log.info("created Secret %s/%s (keys %r and %r); the pods that mount it see it within a minute or two",
             namespace, name, TOKEN_KEY, READ_TOKEN_KEY)
    return TokenSecret(namespace, name, (token,), (read_token,), created=True)

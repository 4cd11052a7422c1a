"""What a policy source names: a policy rule URI (looked up in the policy DB) or a package location.

The policy DB answers `GET {POLICY_DB_URL}/policy/{uri}` with
`{"success": true, "data": {"code", "policy_settings", "policy_parameters", ...}}`.
Settings and parameters given by the caller override the stored ones key by
key (a shallow merge: a caller's key replaces the stored value whole).
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass, field

from aggregator.policies.errors import PolicyLoadError
from aggregator.policies.fetch import is_package_location
from aggregator.policies.http_json import HttpJsonError, request_json

__all__ = ["ResolvedSource", "is_policy_rule_uri", "lookup_policy", "resolve_source"]

# {name}:{version}-{release_tag}; names are dotted (aiosv1.policies.x.add-node:v0.0.12-stable)
_URI = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]*:[A-Za-z0-9._\-]+$")


@dataclass(frozen=True)
class ResolvedSource:
    uri: str | None  # None for a package given by location
    location: str  # URL or path of the package
    settings: dict = field(default_factory=dict)
    parameters: dict = field(default_factory=dict)


def is_policy_rule_uri(source: str) -> bool:
    return bool(_URI.match(source))


def lookup_policy(uri: str, *, policy_db_url: str, timeout_s: float) -> dict:
    """The policy DB's `data` object for `uri`."""
    if not policy_db_url:
        raise PolicyLoadError(f"policy {uri}: POLICY_DB_URL is not set, cannot resolve a policy rule URI")
    url = f"{policy_db_url.rstrip('/')}/policy/{urllib.parse.quote(uri, safe=':')}"
    try:
        answer = request_json("GET", url, timeout_s=timeout_s)
    except HttpJsonError as exc:
        raise PolicyLoadError(f"policy {uri}: policy DB lookup failed: {exc}") from exc
    if not isinstance(answer, dict) or not answer.get("success"):
        message = answer.get("message") or answer.get("error") if isinstance(answer, dict) else None
        raise PolicyLoadError(f"policy {uri}: policy DB refused: {message or answer!r}")
    data = answer.get("data")
    if not isinstance(data, dict):
        raise PolicyLoadError(f"policy {uri}: policy DB answer has no 'data' object")
    if not isinstance(data.get("code"), str) or not data["code"]:
        raise PolicyLoadError(f"policy {uri}: policy DB record has no 'code' (package URL or path)")
    for key in ("policy_settings", "policy_parameters"):
        if data.get(key) is not None and not isinstance(data[key], dict):
            raise PolicyLoadError(f"policy {uri}: policy DB record's {key!r} is not an object")
    return data


def resolve_source(
    source: str,
    *,
    settings: dict | None,
    parameters: dict | None,
    policy_db_url: str,
    timeout_s: float,
) -> ResolvedSource:
    if not isinstance(source, str) or not source.strip():
        raise PolicyLoadError("policy source is empty")
    source = source.strip()
    if is_package_location(source):
        return ResolvedSource(None, source, dict(settings or {}), dict(parameters or {}))
    if not is_policy_rule_uri(source):
        raise PolicyLoadError(
            f"{source!r} is neither a policy rule URI (name:version-release_tag), a URL, nor an existing path"
        )
    record = lookup_policy(source, policy_db_url=policy_db_url, timeout_s=timeout_s)
    return ResolvedSource(
        uri=source,
        location=record["code"],
        settings={**(record.get("policy_settings") or {}), **(settings or {})},
        parameters={**(record.get("policy_parameters") or {}), **(parameters or {})},
    )

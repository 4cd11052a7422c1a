"""Recording an add-on's URL in the cluster document's `config.urlMap`, through the aggregator.

The change goes through `PATCH /clusters/update/<id>`, the path every cluster data update takes,
so the `update_cluster` pre-check decides on it like on any other (`aggregator/cluster/update.py`);
a refusal comes back as `UpdateRefused` with the aggregator's message, and nothing is stored.
`url_map_change` and `url_map_removal` are the pure parts: the `$set` to send, or None when the
document already says so (a second install sends nothing).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

__all__ = [
    "AggregatorError",
    "AggregatorUnreachable",
    "ClusterDocumentClient",
    "ClusterUnknown",
    "UpdateRefused",
    "url_map_change",
    "url_map_removal",
]

MAX_ANSWER_BYTES = 16 * 1024 * 1024


class AggregatorError(Exception):
    """The aggregator answered with an error; `str()` carries its message."""


class AggregatorUnreachable(AggregatorError):
    pass


class ClusterUnknown(AggregatorError):
    pass


class UpdateRefused(AggregatorError):
    """403: the `update_cluster` pre-check (or the token) refused the change."""


def _url_map(document: Mapping[str, Any]) -> Mapping[str, Any]:
    config = document.get("config")
    url_map = config.get("urlMap") if isinstance(config, Mapping) else None
    return url_map if isinstance(url_map, Mapping) else {}


def url_map_change(document: Mapping[str, Any], key: str, url: str) -> dict[str, str] | None:
    """The `$set` recording `url` under `config.urlMap.<key>`, or None when it is already there."""
    if _url_map(document).get(key) == url:
        return None
    return {f"config.urlMap.{key}": url}


def url_map_removal(document: Mapping[str, Any], key: str) -> dict[str, Any] | None:
    """The `$set` that leaves `key` out of `config.urlMap` (the map without it), or None."""
    current = _url_map(document)
    if key not in current:
        return None
    return {"config.urlMap": {k: v for k, v in current.items() if k != key}}


class ClusterDocumentClient:
    """`GET /clusters/read/<id>` and `PATCH /clusters/update/<id>` of one aggregator."""

    def __init__(self, base_url: str, *, token: str | None, timeout_s: float = 30.0) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"the aggregator URL must start with http:// or https://, got {base_url!r}")
        self._base = base_url.rstrip("/")
        self._token = token
        self._timeout_s = timeout_s

    def _request(self, method: str, path: str, body: Any = None) -> dict:
        headers = {"Accept": "application/json"}
        if self._token:  # reads too: an aggregator may require the token for them
            headers["Authorization"] = f"Bearer {self._token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self._base + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self._timeout_s) as answer:
                status, raw = answer.status, answer.read(MAX_ANSWER_BYTES + 1)
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read(MAX_ANSWER_BYTES + 1)
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise AggregatorUnreachable(f"{method} {self._base}{path}: the aggregator could not be reached: {reason}") from e
        try:
            parsed = json.loads(raw[:MAX_ANSWER_BYTES])
        except ValueError:
            parsed = None
        message = parsed.get("message") if isinstance(parsed, dict) else None
        where = f"{method} {path}"
        if status == 404:
            raise ClusterUnknown(f"{where}: {message or 'not found'}")
        if status == 401:
            raise AggregatorError(f"{where}: {message or 'HTTP 401'} (pass --token, or set AIOS_TOKEN / AIOS_TOKEN_FILE)")
        if status == 403:
            raise UpdateRefused(message or "HTTP 403")
        if status != 200 or not isinstance(parsed, dict) or parsed.get("success") is not True \
                or not isinstance(parsed.get("data"), dict):
            raise AggregatorError(f"{where}: HTTP {status}: {message or raw[:200]!r}")
        return parsed["data"]

    def read(self, cluster_id: str) -> dict:
        return self._request("GET", f"/clusters/read/{urllib.parse.quote(cluster_id, safe='')}")

    def update(self, cluster_id: str, changes: Mapping[str, Any]) -> dict:
        """The stored document after the update; `UpdateRefused` when the pre-check says no."""
        return self._request("PATCH", f"/clusters/update/{urllib.parse.quote(cluster_id, safe='')}", dict(changes))

"""A small JSON-over-HTTP client (urllib) for the policy DB and the remote executor."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping

__all__ = ["HttpJsonError", "request_json"]


class HttpJsonError(Exception):
    """The request failed or the answer was not JSON; the message says which.

    `status` is the HTTP status when the server answered (None: no answer), and
    `answer` its JSON body when it had one.
    """

    def __init__(self, message: str, *, status: int | None = None, answer: object = None) -> None:
        super().__init__(message)
        self.status = status
        self.answer = answer


def request_json(
    method: str, url: str, body: object = None, *, timeout_s: float, headers: Mapping[str, str] | None = None
) -> object:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    request.add_header("Accept", "application/json")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        detail = ""
        answer = None
        try:
            answer = json.loads(exc.read() or b"null")
            if isinstance(answer, dict):
                detail = str(answer.get("message") or answer.get("error") or "")
        except (ValueError, OSError):
            pass
        raise HttpJsonError(
            f"{method} {url}: HTTP {exc.code}" + (f": {detail}" if detail else ""), status=exc.code, answer=answer
        ) from exc
    except urllib.error.URLError as exc:
        raise HttpJsonError(f"{method} {url}: {exc.reason}") from exc
    except (TimeoutError, OSError) as exc:
        raise HttpJsonError(f"{method} {url}: {exc}") from exc
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise HttpJsonError(f"{method} {url}: the answer is not JSON") from exc

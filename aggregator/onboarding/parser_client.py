"""Client of the network's parser API (docs/network-formats.md §3).

Every request carries the parser's wrapped spec, never a bare document:
`{"header": {"templateUri": "Parser/V1", "parameters": {}}, "body": {"spec": {"values": ...}}}`.

Answers: 200 `{"success": true, ...}` is success; 400 (or `success: false`)
is a refusal, a normal answer whose message must reach the operator
verbatim (`ParserRefused`); 5xx or an unreadable answer is `ParserFailed`.
Only network failures (connection refused/reset, timeout, DNS) are retried:
re-sending a refused or failed request would not change the answer.
"""

from __future__ import annotations

import json
import logging
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from aggregator.onboarding.errors import ParserFailed, ParserRefused, ParserUnreachable
from proto.common.backoff import backoff_delay

__all__ = ["TEMPLATE_URI", "ParserAnswer", "ParserClient", "wrap_spec"]

log = logging.getLogger(__name__)

TEMPLATE_URI = "Parser/V1"


def wrap_spec(values: dict) -> dict:
    return {"header": {"templateUri": TEMPLATE_URI, "parameters": {}}, "body": {"spec": {"values": values}}}


@dataclass(frozen=True)
class ParserAnswer:
    status: int
    body: dict  # the parsed answer
    text: str  # the answer as received, to print verbatim


class ParserClient:
    def __init__(
        self,
        api_url: str,
        *,
        timeout_s: float = 30.0,
        attempts: int = 3,
        backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        token: str | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if not api_url.startswith(("http://", "https://")):
            raise ValueError(f"API URL must start with http:// or https://, got {api_url!r}")
        self.api_url = api_url.rstrip("/")
        self._timeout_s = timeout_s
        self._attempts = max(1, attempts)
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._rng = rng or random.Random()  # jitter: many clusters retry one parser API
        self._sleep = sleep
        self._token = token

    def create_cluster(self, document: dict) -> ParserAnswer:
        return self._post("/api/createCluster", wrap_spec(document))

    def add_node(self, cluster_id: str, node_data: dict, *, tags: list[str] | None = None,
                 node_metadata: dict | None = None) -> ParserAnswer:
        data = dict(node_data)
        if tags is not None:
            data["tags"] = list(tags)
        if node_metadata is not None:
            data["nodeMetadata"] = dict(node_metadata)
        return self._post("/api/addNode", wrap_spec({"clusterId": cluster_id, "nodeData": data}))

    # ------------------------------------------------------------ transport

    def _post(self, path: str, payload: dict) -> ParserAnswer:
        url = self.api_url + path
        data = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        last_error = ""
        for attempt in range(1, self._attempts + 1):
            request = urllib.request.Request(url, data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self._timeout_s) as response:
                    return self._read_success(response.status, response.read())
            except urllib.error.HTTPError as e:
                return self._raise_for_answer(e.code, e.read())
            except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
                reason = getattr(e, "reason", e)
                last_error = f"{type(reason).__name__}: {reason}" if str(reason) else type(reason).__name__
                log.warning("POST %s: attempt %d/%d failed: %s", url, attempt, self._attempts, last_error)
                if attempt < self._attempts:
                    rand = self._rng.random
                    self._sleep(backoff_delay(attempt - 1, self._backoff_s, self._max_backoff_s, jitter="equal", rand=rand))
        raise ParserUnreachable(f"POST {url}: no answer after {self._attempts} attempts ({last_error})")

    @staticmethod
    def _decode(raw: bytes) -> tuple[str, object]:
        text = raw.decode("utf-8", errors="replace")
        try:
            return text, json.loads(text)
        except ValueError:
            return text, None

    def _read_success(self, status: int, raw: bytes) -> ParserAnswer:
        text, body = self._decode(raw)
        if not isinstance(body, dict):
            raise ParserFailed(f"HTTP {status}: the answer is not a JSON object", status, text)
        if body.get("success") is False:
            raise ParserRefused(str(body.get("message", text)), status, text)
        if body.get("success") is not True:
            raise ParserFailed(f"HTTP {status}: the answer does not say success", status, text)
        return ParserAnswer(status, body, text)

    def _raise_for_answer(self, status: int, raw: bytes):
        text, body = self._decode(raw)
        # 400 and `success: false` are the parser's refusals; 404, 401, ... mean a
        # wrong URL or credentials, not a verdict on the cluster
        if status == 400 or (isinstance(body, dict) and body.get("success") is False):
            message = body.get("message") if isinstance(body, dict) else None
            raise ParserRefused(str(message) if message is not None else text, status, text)
        error = body.get("error") if isinstance(body, dict) else None
        raise ParserFailed(f"HTTP {status}: {error if error is not None else text}", status, text)

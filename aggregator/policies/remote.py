"""Remote execution: the network's policy executor runs the policy by its URI.

`POST {POLICY_EXECUTOR_HOST_URL}/executor/{executor_id}/execute_policy` with
`{"policy_rule_uri", "input_data", "parameters"}`; the answer's `data` is the
result. The executor has no management call (docs/network-formats.md §4), so
`management` is refused with a clear reason.
"""

from __future__ import annotations

import urllib.parse

from aggregator.policies.errors import PolicyError
from aggregator.policies.handle import PolicyHandle
from aggregator.policies.http_json import HttpJsonError, request_json

__all__ = ["RemotePolicy"]


class RemotePolicy(PolicyHandle):
    mode = "remote"

    def __init__(
        self, uri: str, *, executor_host_url: str, executor_id: str, parameters: dict | None, timeout_s: float
    ) -> None:
        self.uri = uri
        self.label = uri
        self.executor_id = executor_id
        self.url = (
            f"{executor_host_url.rstrip('/')}/executor/{urllib.parse.quote(executor_id, safe='')}/execute_policy"
        )
        self._parameters = dict(parameters or {})
        self._timeout_s = timeout_s
        self._closed = False

    def eval(self, input_data: dict, parameters: dict | None = None) -> dict:
        if self._closed:
            raise PolicyError(f"policy {self.uri}: handle is closed")
        body = {
            "policy_rule_uri": self.uri,
            "input_data": input_data,
            "parameters": {**self._parameters, **(parameters or {})},
        }
        try:
            answer = request_json("POST", self.url, body, timeout_s=self._timeout_s)
        except HttpJsonError as exc:
            raise PolicyError(f"policy {self.uri}: remote executor {self.executor_id}: {exc}") from exc
        except (TypeError, ValueError) as exc:
            raise PolicyError(f"policy {self.uri}: the input is not JSON-serializable: {exc}") from exc
        if not isinstance(answer, dict):
            raise PolicyError(f"policy {self.uri}: remote executor answered {type(answer).__name__}, not an object")
        if answer.get("success") is False:
            raise PolicyError(
                f"policy {self.uri}: remote executor {self.executor_id}: "
                f"{answer.get('message') or answer.get('error') or 'failed'}"
            )
        result = answer.get("data")
        if not isinstance(result, dict):
            raise PolicyError(f"policy {self.uri}: remote executor's answer has no 'data' object")
        return result

    def management(self, action: str, data: dict) -> dict:
        raise PolicyError(
            f"policy {self.uri}: management calls are not available in remote execution mode"
        )

    def close(self) -> None:
        self._closed = True

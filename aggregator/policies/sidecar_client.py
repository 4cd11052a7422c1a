"""A `PolicyHandle` whose policy runs in the pod's policy-runner sidecar.

The aggregator's container sends every evaluation and management call to the
sidecar (`AIOS_POLICY_SIDECAR_URL`); the sidecar's own environment decides
local or remote execution, which is what the operators' `kubectl patch` of
container index 1 changes. Each handle has its own id, so two handles on the
same policy keep separate state, as two local handles would.

The sidecar answers a policy's failure as `{"success": false, "message",
"policy_error": true, "error_kind"}`; that becomes the same `PolicyError`
subclass a local handle raises. Anything else (refused connection, timeout,
401, an answer that is not the sidecar's) becomes
`PolicyError("policy runner unreachable: ...")` or says what went wrong.
"""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

from aggregator.auth import AuthError, ensure_token_file
from aggregator.policies.config import PolicyConfig
from aggregator.policies.errors import PolicyConfigError, PolicyError, PolicyLoadError, PolicyRaised
from aggregator.policies.handle import PolicyHandle
from aggregator.policies.http_json import HttpJsonError, request_json

__all__ = ["ERROR_KINDS", "SidecarPolicy"]

# error_kind on the wire -> the exception raised here
ERROR_KINDS: dict[str, type[PolicyError]] = {
    "load": PolicyLoadError,
    "config": PolicyConfigError,
    "run": PolicyError,
    "raised": PolicyRaised,
}

_MARGIN_S = 10.0  # the sidecar's own limits fire first, so its reason reaches the caller


class SidecarPolicy(PolicyHandle):
    def __init__(
        self,
        source: str,
        *,
        settings: dict | None,
        parameters: dict | None,
        config: PolicyConfig,
    ) -> None:
        if not config.sidecar_url:
            raise PolicyConfigError("a sidecar policy handle needs the sidecar's URL (AIOS_POLICY_SIDECAR_URL)")
        self.source = source
        self.label = source
        self.uri = None  # set from the sidecar's answer at start()
        self.mode = "sidecar"  # until the sidecar says how it runs the policy
        self.handle_id = uuid.uuid4().hex
        self._base_url = config.sidecar_url.rstrip("/")
        self._settings = dict(settings or {})
        self._parameters = dict(parameters or {})
        self._token = config.sidecar_token
        self._token_file = config.sidecar_token_file
        # a call may restart a failed worker (a load) before it runs
        self._call_timeout_s = max(config.call_timeout_s + config.load_timeout_s, config.http_timeout_s) + _MARGIN_S
        self._open_timeout_s = (
            config.download_timeout_s + config.http_timeout_s + config.pip_timeout_s + config.load_timeout_s + _MARGIN_S
        )
        self._closed = False
        self._lock = threading.Lock()

    # --- the PolicyHandle API ---------------------------------------------

    def start(self) -> None:
        """Have the sidecar load the policy now, so a broken package fails at open time."""
        data = self._post("/policies/open", {}, timeout_s=self._open_timeout_s, what="open")
        if isinstance(data, dict):
            self.mode = str(data.get("mode") or self.mode)
            self.uri = data.get("uri") if isinstance(data.get("uri"), str) else None
            self.label = str(data.get("label") or self.label)

    def eval(self, input_data: dict, parameters: dict | None = None) -> dict:
        body = {"input_data": input_data, "eval_parameters": parameters}
        return self._result(self._post("/policies/eval", body, timeout_s=self._call_timeout_s, what="eval"), "eval")

    def management(self, action: str, data: dict) -> dict:
        body = {"action": action, "data": data}
        what = f"management {action!r}"
        return self._result(self._post("/policies/management", body, timeout_s=self._call_timeout_s, what=what), what)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            self._post("/policies/close", {}, timeout_s=self._call_timeout_s, what="close", closing=True)
        except PolicyError:
            pass  # the sidecar is gone or restarted: nothing of ours is left there

    # --- the wire ----------------------------------------------------------

    def _current_token(self) -> str:
        """The runner's own token: its shared file (created when the runner has not yet),
        re-read per call, else `AIOS_POLICY_SIDECAR_TOKEN`."""
        if self._token_file:
            try:
                return ensure_token_file(Path(self._token_file))
            except (OSError, AuthError) as exc:
                raise PolicyError(f"policy {self.label}: cannot read the policy runner's token: {exc}") from exc
        if not self._token:
            raise PolicyError(
                f"policy {self.label}: no token for the policy runner "
                "(set AIOS_POLICY_SIDECAR_TOKEN_FILE or AIOS_POLICY_SIDECAR_TOKEN)")
        return self._token

    def _post(self, path: str, extra: dict, *, timeout_s: float, what: str, closing: bool = False):
        if self._closed and not closing:
            raise PolicyError(f"policy {self.label}: handle is closed")
        body = {
            "handle_id": self.handle_id,
            "source": self.source,
            "settings": self._settings,
            "parameters": self._parameters,
            **extra,
        }
        headers = {"Authorization": f"Bearer {self._current_token()}"}
        url = f"{self._base_url}{path}"
        try:
            answer = request_json("POST", url, body, timeout_s=timeout_s, headers=headers)
        except HttpJsonError as exc:
            raise self._error_from(exc, what) from exc
        except (TypeError, ValueError) as exc:
            raise PolicyError(f"policy {self.label}: the {what} input is not JSON-serializable: {exc}") from exc
        if not isinstance(answer, dict) or answer.get("success") is not True:
            raise PolicyError(f"policy {self.label}: the policy runner's answer to {what} is not a success object")
        return answer.get("data")

    def _error_from(self, exc: HttpJsonError, what: str) -> PolicyError:
        answer = exc.answer if isinstance(exc.answer, dict) else {}
        if answer.get("policy_error") is True and isinstance(answer.get("message"), str):
            kind = ERROR_KINDS.get(str(answer.get("error_kind")), PolicyError)
            if kind is PolicyRaised:
                policy_message = answer.get("policy_message")
                return PolicyRaised(answer["message"], policy_message if isinstance(policy_message, str) else "")
            return kind(answer["message"])  # the sidecar's reason already names the policy
        if exc.status is None:
            return PolicyError(f"policy runner unreachable: {exc}")
        if exc.status == 401:
            return PolicyError(f"policy {self.label}: the policy runner refused our token: {exc}")
        return PolicyError(f"policy {self.label}: the policy runner failed the {what} call: {exc}")

    def _result(self, data, what: str) -> dict:
        if not isinstance(data, dict):
            raise PolicyError(f"policy {self.label}: the policy runner's {what} answer has no 'data' object")
        return data

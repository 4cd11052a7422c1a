"""Local execution: a `PolicyHandle` backed by a replaceable worker process.

The worker keeps the policy instance and its `context`, so stateful policies
keep their state across calls, also across an exception the policy's own code
raises (that is the policy's answer: `PolicyRaised`, e.g. an unknown management
action). When the worker itself fails (timeout, crash, the memory limit,
sys.exit) it is killed and the next call starts a fresh one, which builds a
fresh instance: a process in that state cannot be trusted to hold it.
"""

from __future__ import annotations

import threading

from aggregator.policies.errors import PolicyError, PolicyLoadError, PolicyRaised
from aggregator.policies.handle import PolicyHandle
from aggregator.policies.worker import WorkerFailure, WorkerProcess, WorkerSpec

__all__ = ["LocalPolicy"]


class LocalPolicy(PolicyHandle):
    mode = "local"

    def __init__(
        self,
        spec: WorkerSpec,
        *,
        uri: str | None,
        call_timeout_s: float,
        load_hint: str = "",
    ) -> None:
        self.spec = spec
        self.uri = uri
        self.label = spec.label
        self.call_timeout_s = call_timeout_s
        self._load_hint = load_hint  # appended to import errors (e.g. "installing is off")
        self._lock = threading.Lock()
        self._worker: WorkerProcess | None = None
        self._closed = False

    @property
    def parameters(self) -> dict:
        return dict(self.spec.parameters)

    def start(self) -> None:
        """Start the worker now so a package that cannot load fails at open time."""
        with self._lock:
            self._ensure_worker()

    def _ensure_worker(self) -> WorkerProcess:
        if self._closed:
            raise PolicyError(f"policy {self.label}: handle is closed")
        if self._worker is None:
            worker = WorkerProcess(self.spec)
            try:
                worker.start()
            except PolicyError as exc:
                worker.kill()
                reason = exc.reason
                if exc.missing_module and self._load_hint:
                    reason = f"{reason} ({self._load_hint})"
                raise PolicyLoadError(reason) from exc
            self._worker = worker
        return self._worker

    def _call(self, message: dict, what: str):
        with self._lock:
            worker = self._ensure_worker()
            try:
                reply = worker.request(message, timeout_s=self.call_timeout_s, what=what)
            except WorkerFailure:
                self._worker = None  # already killed; the next call starts a fresh one
                raise
            if reply.get("ok"):
                return reply.get("result")
            if reply.get("replace", True):
                worker.kill()
                self._worker = None
            error = str(reply.get("error"))
            reason = f"policy {self.label}: {what} failed: {error}"
            if reply.get("raised") and not reply.get("replace", True):
                raise PolicyRaised(reason, error)
            raise PolicyError(reason)

    def eval(self, input_data: dict, parameters: dict | None = None) -> dict:
        merged = {**self.spec.parameters, **(parameters or {})}
        return self._call({"op": "eval", "parameters": merged, "input_data": input_data}, "eval")

    def management(self, action: str, data: dict) -> dict:
        return self._call({"op": "management", "action": action, "data": data}, f"management {action!r}")

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._worker is not None:
                self._worker.stop()
                self._worker = None

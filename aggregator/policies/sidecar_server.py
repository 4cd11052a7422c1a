"""The policy runner: the aggregator pod's sidecar that runs every policy.

It lives in the pod's container index 1, whose `env` the operators' `kubectl
patch` rewrites, so its `PolicyConfig.from_env()` is where
`POLICY_EXECUTION_MODE` / `POLICY_SYSTEM_EXECUTOR_ID` take effect. The
aggregator's container reaches it through `SidecarPolicy`.

Routes (all but `/healthz` need the runner's own bearer token, which grants
nothing on the aggregator; the port is reachable from the pod network because
the kubelet probes it; `/healthz` answers 200 while the runner serves and
lists what keeps policies from running under `problems`: see `runner_health`):

    GET  /healthz
    POST /policies/open        {handle_id?, source, settings?, parameters?}
    POST /policies/eval        {... , input_data, eval_parameters?}
    POST /policies/management  {... , action, data}
    POST /policies/close       {handle_id?, source, settings?, parameters?}

Answers: `{"success": true, "data": ...}`; a policy's failure (load, config,
exception, timeout, crash, bad result) is 422 with `"policy_error": true` and
`"error_kind"` so callers can tell it from a transport failure.

Handles are kept per (handle_id, source, settings, parameters): a stateful
policy keeps its state between calls. Handles left idle longer than
`idle_close_s` are closed (their owner may have restarted without closing
them); the next call opens a fresh one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from aggregator.policies.config import PolicyConfig
from aggregator.policies.errors import PolicyConfigError, PolicyError, PolicyLoadError, PolicyRaised
from aggregator.policies.handle import PolicyHandle
from aggregator.web.base import ApiError, Tokens, install_error_handlers, read_json_body, require_token

__all__ = ["DEFAULT_IDLE_CLOSE_S", "HandleRegistry", "PolicyKey", "create_sidecar_app", "error_kind"]

log = logging.getLogger(__name__)

DEFAULT_IDLE_CLOSE_S = 6 * 3600.0
# a stability input is ~1 KB per node; the aggregator's own 16 MB body limit would cap it near 16k nodes
MAX_REQUEST_BYTES = 256 * 1024 * 1024

Opener = Callable[[str, dict, dict], PolicyHandle]  # (source, settings, parameters) -> handle


def _canonical(value: dict) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class PolicyKey:
    handle_id: str
    source: str
    settings_json: str
    parameters_json: str

    @classmethod
    def of(cls, handle_id: str, source: str, settings: dict, parameters: dict) -> PolicyKey:
        return cls(handle_id, source, _canonical(settings), _canonical(parameters))

    @property
    def settings(self) -> dict:
        return json.loads(self.settings_json)

    @property
    def parameters(self) -> dict:
        return json.loads(self.parameters_json)


@dataclass(eq=False)
class _Entry:
    load_lock: threading.Lock
    last_used: float
    handle: PolicyHandle | None = None
    in_flight: int = 0


class HandleRegistry:
    """Open policy handles by key; opens on first use, closes on request, when idle, at shutdown."""

    def __init__(
        self, opener: Opener, *, clock: Callable[[], float] = time.monotonic, idle_close_s: float = DEFAULT_IDLE_CLOSE_S
    ) -> None:
        self._opener = opener
        self._clock = clock
        self._idle_close_s = idle_close_s
        self._entries: dict[PolicyKey, _Entry] = {}
        self._lock = threading.Lock()  # guards _entries and the entries' counters

    def __len__(self) -> int:
        with self._lock:
            return sum(1 for entry in self._entries.values() if entry.handle is not None)

    @contextlib.contextmanager
    def use(self, key: PolicyKey) -> Iterator[PolicyHandle]:
        """The key's handle (opened now if needed) for the length of one call."""
        self.close_idle()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                entry = self._entries[key] = _Entry(threading.Lock(), self._clock())
            entry.in_flight += 1
        try:
            with entry.load_lock:  # one open per key even when calls race
                if entry.handle is None:
                    entry.handle = self._opener(key.source, key.settings, key.parameters)
            yield entry.handle
        finally:
            orphan = None
            with self._lock:
                entry.in_flight -= 1
                entry.last_used = self._clock()
                registered = self._entries.get(key) is entry
                if registered and entry.handle is None and entry.in_flight == 0:
                    del self._entries[key]  # a failed open leaves nothing behind
                elif not registered and entry.in_flight == 0:
                    orphan, entry.handle = entry.handle, None  # closed while we were opening it
            if orphan is not None:
                orphan.close()

    def close(self, key: PolicyKey) -> bool:
        with self._lock:
            entry = self._entries.pop(key, None)
        if entry is None or entry.handle is None:
            return False
        entry.handle.close()
        return True

    def close_idle(self) -> int:
        if self._idle_close_s <= 0:
            return 0
        cutoff = self._clock() - self._idle_close_s
        with self._lock:
            idle = [k for k, e in self._entries.items() if e.in_flight == 0 and e.last_used < cutoff]
            closing = [self._entries.pop(k) for k in idle]
        for key, entry in zip(idle, closing):
            if entry.handle is not None:
                log.info("closing policy %s (handle %s): idle for over %.0f s", key.source, key.handle_id, self._idle_close_s)
                entry.handle.close()
        return len(closing)

    def close_all(self) -> None:
        with self._lock:
            closing = list(self._entries.values())
            self._entries.clear()
        for entry in closing:
            if entry.handle is not None:
                entry.handle.close()


def error_kind(exc: PolicyError) -> str:
    if isinstance(exc, PolicyLoadError):
        return "load"
    if isinstance(exc, PolicyConfigError):
        return "config"
    if isinstance(exc, PolicyRaised):
        return "raised"
    return "run"


class _PolicyFailed(Exception):
    """A policy error to answer as 422 with `policy_error`."""

    def __init__(self, error: PolicyError) -> None:
        super().__init__(error.reason)
        self.error = error


# --- request bodies ------------------------------------------------------------


def _object(body: dict, name: str, *, required: bool = False) -> dict:
    value = body.get(name)
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        what = "is required" if value is None else f"must be a JSON object, not {type(value).__name__}"
        raise ApiError(400, f"{name}: {what}")
    return value


def _string(body: dict, name: str, *, required: bool = True) -> str:
    value = body.get(name, None if required else "")
    if not isinstance(value, str) or (required and not value.strip()):
        raise ApiError(400, f"{name}: a non-empty string is required")
    return value.strip()


def _key(body: dict) -> PolicyKey:
    return PolicyKey.of(
        _string(body, "handle_id", required=False),
        _string(body, "source"),
        _object(body, "settings"),
        _object(body, "parameters"),
    )


def _describe(handle: PolicyHandle) -> dict:
    return {"mode": handle.mode, "uri": handle.uri, "label": handle.label}


# --- the app -------------------------------------------------------------------


def create_sidecar_app(
    *,
    registry: HandleRegistry,
    tokens: Tokens,
    config: PolicyConfig | None,
    sandbox: dict | None = None,
    health: Callable[[], dict] | None = None,
) -> FastAPI:
    """The policy runner's app. `config` (None: unusable settings) and `sandbox` (what the policy
    sandbox enforces here, `aggregator.policies.sandbox.probe`) are only shown on /healthz, the
    registry's opener uses the config; `health()` adds the runner's readiness (`runner_health`)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        await run_in_threadpool(registry.close_all)

    app = FastAPI(
        title="AIOS policy runner",
        lifespan=lifespan,
        dependencies=[Depends(require_token(tokens, open_paths=frozenset({"/healthz"})))],
    )
    install_error_handlers(app)

    @app.exception_handler(_PolicyFailed)
    async def _policy_failed(request: Request, exc: _PolicyFailed) -> JSONResponse:
        body = {"success": False, "message": exc.error.reason, "policy_error": True, "error_kind": error_kind(exc.error)}
        if isinstance(exc.error, PolicyRaised):
            body["policy_message"] = exc.error.policy_message
        return JSONResponse(body, status_code=422)

    def run(key: PolicyKey, call: Callable[[PolicyHandle], Any]) -> Any:
        try:
            with registry.use(key) as handle:
                return call(handle)
        except PolicyError as exc:
            raise _PolicyFailed(exc) from exc

    async def answer(key: PolicyKey, call: Callable[[PolicyHandle], Any]) -> dict:
        return {"success": True, "data": await run_in_threadpool(run, key, call)}

    @app.get("/healthz")
    def healthz() -> dict:
        # always 200 while serving (it is the liveness probe): what is wrong is in `problems`
        data: dict[str, Any] = {
            "mode": config.mode if config is not None else None,
            "executor_id": config.executor_id if config is not None else None,
            "open_policies": len(registry),
        }
        if sandbox is not None:
            # what an operator must know: which protections this machine does not give the policies
            data["sandbox"] = sandbox
            data["not_enforced"] = list(sandbox.get("not_enforced", ()))
        if health is not None:
            data.update(health())
        return {"success": True, "data": data}

    @app.post("/policies/open")
    async def open_(request: Request) -> dict:
        return await answer(_key(await read_json_body(request, max_bytes=MAX_REQUEST_BYTES)), _describe)

    @app.post("/policies/eval")
    async def eval_(request: Request) -> dict:
        body = await read_json_body(request, max_bytes=MAX_REQUEST_BYTES)
        key, input_data = _key(body), _object(body, "input_data", required=True)
        eval_parameters = _object(body, "eval_parameters") or None
        return await answer(key, lambda handle: handle.eval(input_data, eval_parameters))

    @app.post("/policies/management")
    async def management(request: Request) -> dict:
        body = await read_json_body(request, max_bytes=MAX_REQUEST_BYTES)
        key, action, data = _key(body), _string(body, "action"), _object(body, "data", required=True)
        return await answer(key, lambda handle: handle.management(action, data))

    @app.post("/policies/close")
    async def close(request: Request) -> dict:
        key = _key(await read_json_body(request, max_bytes=MAX_REQUEST_BYTES))
        return {"success": True, "data": {"closed": await run_in_threadpool(registry.close, key)}}

    return app

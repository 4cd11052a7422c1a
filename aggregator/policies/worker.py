"""One policy worker process, seen from the aggregator.

The policy's code never runs in the aggregator: a child process
(`_worker_child.py`, isolated interpreter, its own session) imports it,
keeps the `AIOSv1PolicyRule` instance and answers JSON lines. This side
enforces the time limit of every call, caps the reply size, and on any
failure kills the worker and everything it started (`sandbox.WorkerSandbox`)
and says why in a `WorkerFailure`. Before importing anything of the policy
the child confines itself as its sandbox plan says (limits, its own uid, no
network, reads and writes only where allowed: `sandbox/confine.py`).
"""

from __future__ import annotations

import collections
import io
import logging
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from aggregator import strict_json
from aggregator.policies.errors import PolicyError
from aggregator.policies.sandbox import SandboxLimits, WorkerSandbox

__all__ = ["WorkerFailure", "WorkerProcess", "WorkerSpec"]

log = logging.getLogger(__name__)

_CHILD = Path(__file__).with_name("_worker_child.py")
# never hand the aggregator's own secrets (or where they are) to operator code
_SECRET_ENV = frozenset({"AIOS_TOKEN", "AIOS_TOKEN_FILE", "AIOS_READ_TOKEN", "AIOS_READ_TOKEN_FILE",
                         "AIOS_POLICY_SIDECAR_TOKEN", "AIOS_POLICY_SIDECAR_TOKEN_FILE", "KUBECONFIG"})


class _JsonDataPickler(pickle.Pickler):
    """Pickles JSON-shaped data only: anything but dict/list/str/int/float/bool/None refused.

    The C pickler serialises the core types itself and asks `reducer_override`
    about everything else (a datetime, a dataclass, ...), which is refused. Sets,
    tuples, bytes and NaN take the pickler's fast path and are not refused here:
    a full walk to catch them would cost more than the pickling (0.2 s for a
    5,000-node input), and every input we send is built from JSON or for JSON.
    """

    def reducer_override(self, obj):
        raise TypeError(f"{type(obj).__name__} is not JSON data")


def encode_request(message: dict) -> bytes:
    """A length-prefixed pickle of JSON-shaped `message`, for the worker's stdin.

    Pickle, not JSON, in this direction only: the worker trusts the aggregator,
    and for a 5,000-node stability input pickling + unpickling takes about a
    third of json.dumps + json.loads and a quarter of the bytes. Replies come
    back as JSON lines: the aggregator never unpickles what a policy produced.
    """
    buffer = io.BytesIO()
    buffer.write(b"\0" * 8)
    _JsonDataPickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(message)
    data = buffer.getbuffer()
    struct.pack_into("!Q", data, 0, len(data) - 8)
    return bytes(data)


class WorkerFailure(PolicyError):
    """The worker timed out, died, or answered something unreadable; it must be replaced."""


@dataclass(frozen=True)
class WorkerSpec:
    label: str  # for messages and logs: the URI or package location
    code_dir: Path
    site_dir: Path | None = None
    settings: dict = field(default_factory=dict)
    parameters: dict = field(default_factory=dict)
    memory_limit_mb: int = 1024
    load_timeout_s: float = 60.0
    max_result_bytes: int = 64 * 1024 * 1024
    limits: SandboxLimits = field(default_factory=SandboxLimits)
    scratch_root: Path | None = None  # where its scratch folder is made (default: under the temp folder)


@dataclass(frozen=True)
class _Child:
    """A started worker: the process, its three pipes, the thread draining its stderr."""

    proc: subprocess.Popen[bytes]
    stdin: IO[bytes]
    stdout: IO[bytes]
    stderr: IO[bytes]
    stderr_thread: threading.Thread


def _spawn(spec: WorkerSpec, sandbox: WorkerSandbox) -> subprocess.Popen[bytes]:
    env = sandbox.env({k: v for k, v in os.environ.items() if k not in _SECRET_ENV})
    # -I ignores PYTHON* variables, PYTHONDONTWRITEBYTECODE included: -B, so that a package run
    # in place (the shipped default policies, in the source tree) gets no __pycache__ written
    return subprocess.Popen(
        [sys.executable, "-I", "-B", str(_CHILD), sandbox.plan_json()],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=spec.code_dir,
        env=env,
        start_new_session=True,  # its own process group: killed whole, children included
    )


class WorkerProcess:
    """One worker: `start()` spawns it and loads the policy, `stop()`/`kill()` end it."""

    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self._buffer = bytearray()
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=20)
        self._started: _Child | None = None
        self._sandbox: WorkerSandbox | None = None
        self._killed = False
        self.sandbox_report: dict = {}  # what the worker's confinement achieved (its answer to init)

    @property
    def _child(self) -> _Child:
        if self._started is None:
            raise WorkerFailure(f"policy {self.spec.label}: the worker was not started")
        return self._started

    def start(self) -> None:
        """Spawn the worker, import the policy and build its instance; WorkerFailure/PolicyError if that fails."""
        spec = self.spec
        sandbox = self._sandbox = WorkerSandbox.prepare(
            label=spec.label, memory_mb=int(spec.memory_limit_mb), limits=spec.limits,
            code_dir=spec.code_dir, site_dir=spec.site_dir, scratch_root=spec.scratch_root)
        try:
            proc = _spawn(spec, sandbox)
        except BaseException:
            sandbox.release()
            raise
        sandbox.started(proc.pid)  # into its cgroup before it is told to import anything
        if proc.stdin is None or proc.stdout is None or proc.stderr is None:  # pragma: no cover - PIPE always gives them
            proc.kill()
            raise WorkerFailure(f"policy {self.spec.label}: the worker's pipes are missing")
        drain = threading.Thread(
            target=self._drain_stderr, args=(proc, proc.stderr), name=f"policy-stderr-{proc.pid}", daemon=True
        )
        self._started = _Child(proc, proc.stdin, proc.stdout, proc.stderr, drain)
        os.set_blocking(proc.stdin.fileno(), False)
        drain.start()
        reply = self.request(
            {
                "op": "init",
                "code_dir": str(self.spec.code_dir),
                "site_dir": str(self.spec.site_dir) if self.spec.site_dir else None,
                "settings": self.spec.settings,
                "parameters": self.spec.parameters,
            },
            timeout_s=self.spec.load_timeout_s,
            what="loading the policy",
        )
        report = reply.get("sandbox")
        self.sandbox_report = report if isinstance(report, dict) else {}
        if not reply.get("ok"):
            self.kill()
            missing = reply.get("missing_module")
            raise PolicyError(
                f"policy {self.spec.label}: cannot load: {reply.get('error')}",
                missing_module=missing if isinstance(missing, str) else None,
            )

    def request(self, message: dict, *, timeout_s: float, what: str) -> dict:
        """Send one message, wait for its reply; WorkerFailure on timeout/crash/garbage."""
        deadline = time.monotonic() + timeout_s
        try:
            payload = encode_request(message)
        except (TypeError, ValueError) as exc:
            raise PolicyError(f"policy {self.spec.label}: the input is not JSON-serializable: {exc}") from exc
        self._write(payload, deadline, timeout_s, what)
        line = self._read_line(deadline, timeout_s, what)
        try:
            reply = strict_json.loads(line.decode("utf-8"))
        except strict_json.StrictJsonError as exc:
            # the policy answered something a reader could not read back (a lone surrogate, too deep):
            # its own fault, like an exception; the worker and its state stay
            where = "$" + exc.path.removeprefix("$.result")  # the path in the policy's answer, not the envelope
            return {"ok": False, "replace": False, "raised": True,
                    "error": f"the answer is not strict JSON at {where}: {exc.problem}"}
        except ValueError as exc:
            self.kill()
            raise WorkerFailure(f"policy {self.spec.label}: {what}: unreadable reply from the worker") from exc
        if not isinstance(reply, dict) or "ok" not in reply:
            self.kill()
            raise WorkerFailure(f"policy {self.spec.label}: {what}: malformed reply from the worker")
        return reply

    def _write(self, payload: bytes, deadline: float, timeout_s: float, what: str) -> None:
        fd = self._child.stdin.fileno()
        view = memoryview(payload)
        while view:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._fail(f"{what} did not finish within {timeout_s:g} s (input not taken); worker killed")
            _, writable, _ = select.select([], [fd], [], remaining)
            if not writable:
                continue
            try:
                written = os.write(fd, view)
            except BlockingIOError:
                continue
            except (BrokenPipeError, OSError):
                raise self._fail(f"{what}: {self._exit_description()}") from None
            view = view[written:]

    def _read_line(self, deadline: float, timeout_s: float, what: str) -> bytes:
        fd = self._child.stdout.fileno()
        while True:
            newline = self._buffer.find(b"\n")
            if newline >= 0:
                line = bytes(self._buffer[:newline])
                del self._buffer[: newline + 1]
                return line
            if len(self._buffer) > self.spec.max_result_bytes:
                raise self._fail(f"{what}: the result is larger than {self.spec.max_result_bytes} bytes; worker killed")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._fail(f"{what} did not finish within {timeout_s:g} s; worker killed")
            readable, _, _ = select.select([fd], [], [], remaining)
            if not readable:
                continue
            chunk = os.read(fd, 1024 * 1024)
            if not chunk:
                raise self._fail(f"{what}: {self._exit_description()}")
            self._buffer += chunk

    def _fail(self, reason: str) -> WorkerFailure:
        self.kill()
        return WorkerFailure(f"policy {self.spec.label}: {reason}")

    def _exit_description(self) -> str:
        child = self._child
        try:
            code = child.proc.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            return "the worker stopped answering"
        child.stderr_thread.join(timeout=1.0)
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = str(-code)
            text = f"the worker was killed by {name}"
            if -code == signal.SIGXCPU:
                text += f" (its CPU time limit of {self.spec.limits.cpu_s} s, AIOS_POLICY_CPU_S)"
        else:
            text = f"the worker exited with code {code}"
        last = next((line for line in reversed(self._stderr_tail) if line.strip()), "")
        return f"{text} (last output: {last})" if last else text

    def _drain_stderr(self, proc: subprocess.Popen[bytes], stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip()
            self._stderr_tail.append(line)
            log.info("policy %s [pid %d]: %s", self.spec.label, proc.pid, line)
        stream.close()

    def kill(self) -> None:
        """The worker and everything it started (its group, its tree, its uid, its cgroup)."""
        child, sandbox = self._started, self._sandbox
        if child is None or sandbox is None or self._killed:
            return
        self._killed = True
        # once reaped, its pid may be another process's: then only the uid and the cgroup are swept
        killed = sandbox.kill(child.proc.pid, tree=child.proc.returncode is None)
        if killed:
            log.info("policy %s: killed %d process(es) its worker had started", self.spec.label, killed)
        try:
            child.proc.wait(timeout=5.0)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL does not fail
            log.error("policy worker %d did not die after SIGKILL", child.proc.pid)
        for stream in (child.stdin, child.stdout):
            try:
                stream.close()
            except OSError:
                pass
        sandbox.release()

    def stop(self) -> None:
        """Ask politely (close its input), then make sure."""
        child = self._started
        if child is None:
            return
        try:
            child.stdin.close()
        except OSError:
            pass
        try:
            child.proc.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            pass
        self.kill()

"""The policy sandbox: what a worker process may touch, and how all of it ends.

`WorkerSandbox.prepare` gives one worker its own uid (when this process is
root; `uid_pool`), a scratch folder (the only place it may write), a cgroup
where one can be made (`cgroup`), and the plan it applies to itself before
importing the policy (`plan`, `confine`). `kill` ends the worker and
everything it started (`sweep`); `release` gives the uid and the folder back.
`probe` runs the same confinement once in a throwaway process and says what
this machine enforces (the policy runner's `/healthz`). docs/policy-sandbox.md
is the operators' view.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from aggregator.policies.sandbox.cgroup import WorkerCgroup, cgroup_parent
from aggregator.policies.sandbox.plan import SandboxLimits, WorkerPlan, parse_uid_range, worker_plan
from aggregator.policies.sandbox.sweep import kill_tree, kill_uid
from aggregator.policies.sandbox.uid_pool import UidLease, UidPool

__all__ = ["CONFINE_SCRIPT", "SandboxLimits", "WorkerSandbox", "parse_uid_range", "probe", "run_confined"]

log = logging.getLogger(__name__)

CONFINE_SCRIPT = Path(__file__).with_name("confine.py")
_CHILD_DIR = Path(__file__).resolve().parents[1]  # aggregator/policies: the worker's own program

_pools: dict[tuple[int, int], UidPool] = {}
_cgroup_parent: list[Path | None] = []
_shared_lock = threading.Lock()


def _pool(uids: tuple[int, int]) -> UidPool:
    with _shared_lock:
        if uids not in _pools:
            _pools[uids] = UidPool(*uids)
        return _pools[uids]


def _cgroups() -> Path | None:
    with _shared_lock:
        if not _cgroup_parent:
            _cgroup_parent.append(cgroup_parent())
        return _cgroup_parent[0]


def default_scratch_root() -> Path:
    return Path(tempfile.gettempdir()) / f"aios-policy-scratch-{os.geteuid()}"


class WorkerSandbox:
    """One worker's uid, scratch folder, cgroup and plan."""

    def __init__(self, plan: WorkerPlan, scratch: Path, lease: UidLease | None, cgroup: WorkerCgroup | None) -> None:
        self.plan = plan
        self.scratch = scratch
        self._lease = lease
        self.cgroup = cgroup
        self._released = False

    @classmethod
    def prepare(cls, *, label: str, memory_mb: int, limits: SandboxLimits, code_dir: Path, site_dir: Path | None,
                scratch_root: Path | None = None, extra_read: Sequence[Path] = (),
                extra_write: Sequence[Path] = ()) -> WorkerSandbox:
        lease = None
        if os.geteuid() == 0 and limits.worker_uids is not None:
            lease = _pool(limits.worker_uids).lease()
            if lease is None:
                log.warning("every policy worker uid in %s-%s is taken: this worker shares the server's uid",
                            *limits.worker_uids)
        root = Path(scratch_root) if scratch_root else default_scratch_root()
        root.mkdir(mode=0o711, parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix="worker-", dir=root))
        if lease is not None:
            for folder in (scratch, *extra_write):
                os.chown(folder, lease.uid, lease.uid)
        parent = _cgroups()
        cgroup = WorkerCgroup.create(parent, limits.max_processes) if parent is not None else None
        plan = worker_plan(label=label, memory_mb=memory_mb, limits=limits, code_dir=code_dir, site_dir=site_dir,
                           scratch=scratch, uid=lease.uid if lease else None, child_dir=_CHILD_DIR,
                           extra_read=extra_read, extra_write=extra_write)
        return cls(plan, scratch, lease, cgroup)

    @property
    def uid(self) -> int | None:
        return self._lease.uid if self._lease else None

    def plan_json(self) -> str:
        return json.dumps(self.plan.to_json(), separators=(",", ":"))

    def env(self, base: dict[str, str]) -> dict[str, str]:
        """The worker's environment: `base`, with its home and temp folder in its scratch folder."""
        scratch = str(self.scratch)
        return {**base, "HOME": scratch, "TMPDIR": scratch, "TMP": scratch, "TEMP": scratch,
                "AIOS_POLICY_SCRATCH": scratch}

    def started(self, pid: int) -> None:
        """Right after the worker starts, before it is told to import the policy."""
        if self.cgroup is not None and not self.cgroup.add(pid):
            self.cgroup.remove()
            self.cgroup = None

    def kill(self, pid: int, *, tree: bool = True) -> int:
        """End the worker `pid` and everything it started; the number of other processes killed.

        `tree=False` once the worker was reaped (its pid may belong to someone else now)."""
        killed = 0
        if self.cgroup is not None:
            others = [p for p in self.cgroup.pids() if p != pid]
            self.cgroup.kill()
            killed += len(others)
        if tree:
            killed += kill_tree(pid)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if self.uid is not None:
            killed += kill_uid(self.uid)
        return killed

    def release(self) -> None:
        """After `kill`: the uid, the cgroup and the scratch folder go."""
        if self._released:
            return
        self._released = True
        if self.cgroup is not None:
            self.cgroup.remove()
        shutil.rmtree(self.scratch, ignore_errors=True)
        if self._lease is not None:
            self._lease.release()


def run_confined(
    argv: Sequence[str], *, label: str, limits: SandboxLimits, cwd: Path, read: Sequence[Path], write: Path,
    env: dict[str, str], timeout_s: float, memory_mb: int = 0,
) -> subprocess.CompletedProcess[str]:
    """Run `argv` (pip installing a policy's requirements) under the sandbox: its own uid, reads
    where `read` says, writes only to `write` and a scratch folder; the network is allowed (it
    downloads) and files may be large. What it leaves running is killed; `write` is given back to
    this process's uid. `subprocess.TimeoutExpired` past `timeout_s`."""
    sandbox = WorkerSandbox.prepare(
        label=label, memory_mb=memory_mb, limits=replace(limits, max_file_mb=0, network_allowed=("*",)),
        code_dir=cwd, site_dir=None, scratch_root=write.parent, extra_read=read, extra_write=(write,))
    command = [sys.executable, "-I", str(CONFINE_SCRIPT), sandbox.plan_json(), "--", *argv]
    try:
        process = subprocess.Popen(command, cwd=cwd, env=sandbox.env(env), stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, start_new_session=True)
        sandbox.started(process.pid)
        try:
            out, err = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            sandbox.kill(process.pid)
            process.communicate()
            raise
        sandbox.kill(process.pid, tree=False)  # leftovers of its uid and its cgroup
        return subprocess.CompletedProcess(command, process.returncode, out, err)
    finally:
        if sandbox.uid is not None:
            _give_back(write)
        sandbox.release()


def _give_back(folder: Path) -> None:
    """What the confined command wrote becomes ours again (no worker uid may change it later)."""
    uid, gid = os.geteuid(), os.getegid()
    for root, dirs, files in os.walk(folder):
        for name in (root, *(os.path.join(root, n) for n in dirs + files)):
            with contextlib.suppress(OSError):
                os.lchown(name, uid, gid)


_probed: dict[tuple, dict] = {}


def probe(limits: SandboxLimits, *, scratch_root: Path | None = None, timeout_s: float = 30.0) -> dict:
    """What this machine enforces for a worker: the report of the confinement, applied in a
    throwaway process (cached per limits), plus how leftovers are swept."""
    key = (limits, str(scratch_root))
    if key in _probed:
        return _probed[key]
    with tempfile.TemporaryDirectory(prefix="aios-probe-") as code:
        os.chmod(code, 0o755)
        sandbox = WorkerSandbox.prepare(label="(probe)", memory_mb=0, limits=limits, code_dir=Path(code), site_dir=None,
                                        scratch_root=scratch_root)
        try:
            done = subprocess.run([sys.executable, "-I", str(CONFINE_SCRIPT), sandbox.plan_json()],
                                  capture_output=True, text=True, timeout=timeout_s, env=sandbox.env({}))
            try:
                report = json.loads(done.stdout.strip().splitlines()[-1])
            except (ValueError, IndexError):
                report = {"not_enforced": [f"the sandbox probe failed: {done.stderr.strip()[-300:]}"]}
            sweep = ["process tree"]
            if sandbox.uid is not None and report.get("uid") == sandbox.uid:
                sweep.insert(0, "worker uid")
            if sandbox.cgroup is not None:
                sweep.insert(0, "cgroup")
            report["kill_sweep"] = " + ".join(sweep)
            if len(sweep) == 1:
                report.setdefault("not_enforced", []).append(
                    "kill sweep: process tree only (daemons of a worker that exits by itself can outlive it)")
        finally:
            sandbox.release()  # the probe has exited; nothing of it is left to kill
    _probed[key] = report
    return report

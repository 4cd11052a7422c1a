"""Install a policy's `requirements.txt` into the policy's own folder.

`pip install --target <work>/site`, never into the aggregator's environment;
the worker puts that folder first on the policy's `sys.path`. pip runs
confined like a policy worker (`sandbox.run_confined`: its own uid, no token in
reach, writes only to its staging folder), since a setup.py is operator code too. Installed once
per requirements content (a hash file marks a finished install; a failed or
interrupted one leaves no site folder behind).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from aggregator.policies.errors import PolicyLoadError
from aggregator.policies.sandbox import SandboxLimits, run_confined

__all__ = ["REQUIREMENTS_FILE", "RequirementsError", "install_requirements"]

REQUIREMENTS_FILE = "requirements.txt"
_MARKER = ".aios-requirements.sha256"


class RequirementsError(PolicyLoadError):
    """pip could not install what the policy asks for."""


def _has_requirements(text: str) -> bool:
    return any(line.strip() and not line.strip().startswith("#") for line in text.splitlines())


def _local_paths(text: str, base: Path) -> list[Path]:
    """Folders of the local files and folders a requirements file names (wheels, `-e ./pkg`):
    the confined pip may read them."""
    found = []
    for line in text.splitlines():
        for word in line.split():
            if word.startswith("-") or "://" in word:
                continue
            candidate = (base / word).resolve() if not word.startswith("/") else Path(word)
            if candidate.exists():
                found.append(candidate if candidate.is_dir() else candidate.parent)
    return found


def install_requirements(
    code_dir: Path, work_dir: Path, *, enabled: bool = True, timeout_s: float = 300.0,
    limits: SandboxLimits | None = None,
) -> Path | None:
    """The folder holding the installed requirements, or None when there are none to use."""
    req = code_dir / REQUIREMENTS_FILE
    if not req.is_file():
        return None
    text = req.read_text(errors="replace")
    if not _has_requirements(text):
        return None
    site = work_dir / "site"
    digest = hashlib.sha256(text.encode()).hexdigest()
    marker = site / _MARKER
    if marker.is_file() and marker.read_text().strip() == digest:
        return site
    if not enabled:
        return None
    work_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".site-", dir=work_dir))
    os.chmod(staging, 0o755)  # the worker may run under a uid of its own: it reads, never writes, this
    command = [
        sys.executable, "-m", "pip", "install",
        "--target", str(staging),
        "--no-input", "--disable-pip-version-check", "--no-warn-script-location",
        "-r", str(req),
    ]
    # nothing secret for setup.py scripts either (the aggregator's tokens and where they are)
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PIP_USER", "PIP_PREFIX") and "TOKEN" not in k and k != "KUBECONFIG"}
    try:
        try:
            # confined like a worker (a setup.py is the policy author's code too), but with the network
            done = run_confined(command, label=f"{code_dir} requirements", limits=limits or SandboxLimits(),
                                cwd=code_dir, read=[code_dir, *_local_paths(text, code_dir)], write=staging,
                                env=env, timeout_s=timeout_s)
        except subprocess.TimeoutExpired as exc:
            raise RequirementsError(
                f"installing {req.name} took longer than {timeout_s:g} s"
            ) from exc
        if done.returncode != 0:
            tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-6:])
            raise RequirementsError(f"installing {req.name} failed (pip exit {done.returncode}): {tail}")
        (staging / _MARKER).write_text(digest)
        if site.exists():
            shutil.rmtree(site)
        os.replace(staging, site)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return site

"""What a policy worker does to itself before it imports the policy (standard library only).

Loaded by `_worker_child.py` from its file (the worker runs `python -I`, and
nothing of the aggregator's packages may be imported there). `apply(plan)`
takes the plan the parent built (`sandbox.plan.WorkerPlan.to_json`) and returns
a report of what took effect, so the parent can log it and the runner's
`/healthz` can say what is not enforced on this machine.

In this order, since each step needs what the next one takes away:
1. limits (RLIMIT_AS, CORE=0, NOFILE, FSIZE, CPU), and the worker becomes the
   subreaper of everything it starts (a double fork stays below it, so the
   parent's sweep finds it);
2. no network: a network namespace of its own (root, or an unprivileged user
   namespace where the kernel allows one);
3. a uid of its own (root only): where that uid cannot reach a folder the
   policy needs (the interpreter under /root, a test's private tmp), a mount
   namespace hides the blocking folder under an empty tmpfs holding only bind
   mounts of what is needed; then setgroups([]), setgid, setuid, RLIMIT_NPROC;
4. Landlock (Linux 5.13+): reads only beneath the interpreter, the policy's
   folders, system libraries, its scratch folder and its own /proc entry;
   writes only in the scratch folder; no TCP bind/connect (ABI 4+) unless
   the network is allowed; no signals or abstract unix sockets outside the
   worker's own processes (ABI 6+).
"""

import ctypes
import ctypes.util
import errno
import json
import os
import resource
import stat
import sys

PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38
PR_SET_CHILD_SUBREAPER = 36
CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 4096, 16384, 1 << 18

# landlock: the same syscall numbers on every architecture
SYS_LANDLOCK_CREATE_RULESET, SYS_LANDLOCK_ADD_RULE, SYS_LANDLOCK_RESTRICT_SELF = 444, 445, 446
LANDLOCK_CREATE_RULESET_VERSION = 1
LANDLOCK_RULE_PATH_BENEATH, LANDLOCK_RULE_NET_PORT = 1, 2
FS_EXECUTE, FS_WRITE_FILE, FS_READ_FILE, FS_READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
FS_REMOVE_DIR, FS_REMOVE_FILE, FS_MAKE_CHAR, FS_MAKE_DIR = 1 << 4, 1 << 5, 1 << 6, 1 << 7
FS_MAKE_REG, FS_MAKE_SOCK, FS_MAKE_FIFO, FS_MAKE_BLOCK, FS_MAKE_SYM = 1 << 8, 1 << 9, 1 << 10, 1 << 11, 1 << 12
FS_REFER, FS_TRUNCATE = 1 << 13, 1 << 14
NET_BIND_TCP, NET_CONNECT_TCP = 1 << 0, 1 << 1
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1 << 0, 1 << 1

_FILE_RIGHTS = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE  # what a rule on a file (not a folder) may carry

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _errno_text() -> str:
    return os.strerror(ctypes.get_errno())


def _prctl(option, arg):
    return _libc.prctl(option, ctypes.c_ulong(arg), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0))


# ---------------------------------------------------------------- 1. limits


def _limits(plan, report):
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    applied = {"core": 0}
    memory_mb = plan.get("memory_mb") or 0
    if memory_mb > 0:
        resource.setrlimit(resource.RLIMIT_AS, (memory_mb * 1024 * 1024,) * 2)
        applied["memory_mb"] = memory_mb
    for key, which in (("max_open_files", resource.RLIMIT_NOFILE), ("max_file_bytes", resource.RLIMIT_FSIZE)):
        value = plan.get(key) or 0
        if value > 0:
            resource.setrlimit(which, (value, value))
            applied[key] = value
    cpu = plan.get("cpu_s") or 0
    if cpu > 0:
        # soft: SIGXCPU ends it with a clear signal; hard a little later in case it is caught
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
        applied["cpu_s"] = cpu
    report["limits"] = applied
    if _prctl(PR_SET_CHILD_SUBREAPER, 1) == 0:
        report["subreaper"] = True


# ---------------------------------------------------------------- 2. network


def _write(path, text):
    with open(path, "w") as handle:
        handle.write(text)


def _no_network(report):
    if _libc.unshare(CLONE_NEWNET) == 0:
        report["network"] = "namespace"
        return
    first = _errno_text()
    if os.geteuid() != 0:
        uid, gid = os.getuid(), os.getgid()
        if _libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) == 0:
            try:
                _write("/proc/self/setgroups", "deny")
                _write("/proc/self/uid_map", f"{uid} {uid} 1")
                _write("/proc/self/gid_map", f"{gid} {gid} 1")
            except OSError as exc:
                report["not_enforced"].append(f"network namespace: user namespace maps: {exc.strerror}")
                return
            report["network"] = "namespace (user namespace)"
            return
        first = f"{first}; user namespace: {_errno_text()}"
    report["network_namespace_error"] = first


# ---------------------------------------------------------------- 3. a uid of its own


def _reachable_by(path, uid, gid):
    """Can `uid` (no supplementary groups) walk down to `path`? Returns the first folder that stops it."""
    current = "/"
    for part in [p for p in os.path.abspath(path).split("/") if p]:
        st = os.stat(current)
        if st.st_uid == uid:
            ok = st.st_mode & stat.S_IXUSR
        elif st.st_gid == gid:
            ok = st.st_mode & stat.S_IXGRP
        else:
            ok = st.st_mode & stat.S_IXOTH
        if not ok:
            return current
        current = os.path.join(current, part)
    return None


def _mount(source, target, fstype, flags, data=None):
    if _libc.mount(source and source.encode(), target.encode(), fstype and fstype.encode(), flags,
                   data and data.encode()) != 0:
        raise OSError(ctypes.get_errno(), f"mount {target}: {_errno_text()}")


def _expose(paths, blocked):
    """In a mount namespace of our own: each blocking folder becomes an empty tmpfs holding
    bind mounts of only the needed paths below it (the rest of it is hidden)."""
    keep: dict = {}
    for path in paths:
        top = next((b for b in blocked if path == b or path.startswith(b.rstrip("/") + "/")), None)
        if top is not None:
            keep.setdefault(top, []).append(path)
    if _libc.unshare(CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), f"mount namespace: {_errno_text()}")
    try:
        _mount(None, "/", None, MS_REC | MS_PRIVATE)
        # opened in the new namespace (a mount of another namespace cannot be bound), before hiding
        handles = {p: os.open(p, os.O_PATH | os.O_CLOEXEC) for group in keep.values() for p in group}
        _hide_and_bind(keep, handles)
    except OSError as exc:
        # the view is half made: running on in it would break the policy in confusing ways
        raise SystemExit(f"policy sandbox: cannot prepare the worker's view of the filesystem: {exc}") from exc


def _hide_and_bind(keep, handles):
    for top in sorted(keep, key=len):
        _mount("tmpfs", top, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=64k")
        for path in sorted(keep[top], key=len):
            if any(path.startswith(other.rstrip("/") + "/") for other in keep[top] if other != path):
                continue  # below another kept path: already there
            if os.path.isdir(f"/proc/self/fd/{handles[path]}"):
                os.makedirs(path, mode=0o755, exist_ok=True)
            else:
                os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
                open(path, "a").close()
            _mount(f"/proc/self/fd/{handles[path]}", path, None, MS_BIND | MS_REC)
    for fd in handles.values():
        os.close(fd)


def _own_uid(plan, report):
    uid, gid = plan["uid"], plan["gid"]
    needed = [p for p in plan.get("read_paths", []) + plan.get("write_paths", []) if os.path.exists(p)]
    blocked = sorted({b for b in (_reachable_by(p, uid, gid) for p in needed) if b is not None}, key=len)
    # only the top-most blocking folders: hiding one hides what is below it
    tops = [b for b in blocked if not any(b != o and b.startswith(o.rstrip("/") + "/") for o in blocked)]
    if tops:
        _expose(needed, tops)
        report["hidden"] = tops
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if os.getuid() != uid or os.geteuid() != uid:  # pragma: no cover - the kernel said yes
        raise OSError(errno.EPERM, "setuid did not take")
    _prctl(PR_SET_PDEATHSIG, 9)  # cleared by the uid change; the worker ends with its parent
    max_processes = plan.get("max_processes") or 0
    if max_processes > 0:
        resource.setrlimit(resource.RLIMIT_NPROC, (max_processes, max_processes))
        report["limits"]["max_processes"] = max_processes
    report["uid"] = uid


# ---------------------------------------------------------------- 4. landlock


def landlock_abi():
    abi = _libc.syscall(SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0), LANDLOCK_CREATE_RULESET_VERSION)
    return abi if abi > 0 else 0


def _landlock(plan, report, network_blocked):
    abi = landlock_abi()
    if abi <= 0:
        report["not_enforced"].append(f"Landlock: not available in this kernel ({_errno_text()})")
        return
    read = FS_EXECUTE | FS_READ_FILE | FS_READ_DIR
    write = (FS_WRITE_FILE | FS_REMOVE_DIR | FS_REMOVE_FILE | FS_MAKE_CHAR | FS_MAKE_DIR | FS_MAKE_REG
             | FS_MAKE_SOCK | FS_MAKE_FIFO | FS_MAKE_BLOCK | FS_MAKE_SYM)
    if abi >= 2:
        write |= FS_REFER
    if abi >= 3:
        write |= FS_TRUNCATE
    attr = _RulesetAttr(handled_access_fs=read | write)
    size = 8
    if abi >= 4 and not plan.get("network_allowed"):
        attr.handled_access_net = NET_BIND_TCP | NET_CONNECT_TCP  # no rule: no TCP at all
        size = 16
    if abi >= 6:
        attr.scoped = SCOPE_SIGNAL | (0 if plan.get("network_allowed") else SCOPE_ABSTRACT_UNIX_SOCKET)
        size = 24
    ruleset = _libc.syscall(SYS_LANDLOCK_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), 0)
    if ruleset < 0:
        report["not_enforced"].append(f"Landlock: cannot create a ruleset ({_errno_text()})")
        return
    try:
        rules = [(p, read) for p in plan.get("read_paths", [])]
        rules += [(p, read | write) for p in plan.get("write_paths", [])]
        rules += [(f"/proc/{os.getpid()}", FS_READ_FILE | FS_READ_DIR), ("/dev/null", FS_READ_FILE | FS_WRITE_FILE)]
        for path, rights in rules:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue  # not on this machine
            try:
                allowed = rights & attr.handled_access_fs
                if not stat.S_ISDIR(os.fstat(fd).st_mode):
                    allowed &= _FILE_RIGHTS
                rule = _PathBeneathAttr(allowed_access=allowed, parent_fd=fd)
                if _libc.syscall(SYS_LANDLOCK_ADD_RULE, ruleset, LANDLOCK_RULE_PATH_BENEATH, ctypes.byref(rule), 0) != 0:
                    report["not_enforced"].append(f"Landlock: rule for {path}: {_errno_text()}")
            finally:
                os.close(fd)
        if _prctl(PR_SET_NO_NEW_PRIVS, 1) != 0:
            report["not_enforced"].append(f"Landlock: no_new_privs: {_errno_text()}")
            return
        if _libc.syscall(SYS_LANDLOCK_RESTRICT_SELF, ruleset, 0) != 0:
            report["not_enforced"].append(f"Landlock: restrict_self: {_errno_text()}")
            return
    finally:
        os.close(ruleset)
    report["landlock_abi"] = abi
    report["filesystem"] = "landlock"
    if attr.handled_access_net and not network_blocked:
        report["network"] = "landlock (TCP only; UDP is not blocked)"
    if attr.scoped:
        report["signals"] = "landlock scope"


# ---------------------------------------------------------------- all of it


def apply(plan):
    """Confine this process as `plan` says; returns what took effect (JSON-able)."""
    report: dict = {"not_enforced": [], "uid": os.getuid(), "network": "allowed" if plan.get("network_allowed") else None}
    _limits(plan, report)
    if not plan.get("network_allowed"):
        _no_network(report)
    if plan.get("uid") is not None and os.geteuid() == 0:
        try:
            _own_uid(plan, report)
        except OSError as exc:
            report["not_enforced"].append(f"own uid {plan['uid']}: {exc.strerror or exc}")
    network_blocked = report.get("network") is not None and report["network"].startswith("namespace")
    _landlock(plan, report, network_blocked)
    if report.get("network") is None:
        reason = report.pop("network_namespace_error", "no namespace and no Landlock network rules")
        report["network"] = "not enforced"
        report["not_enforced"].append(f"network: {reason}")
    report.pop("network_namespace_error", None)
    if "filesystem" not in report:
        report["filesystem"] = "uid permissions" if report["uid"] != 0 and report["uid"] == plan.get("uid") else "not enforced"
    if plan.get("uid") is None or report["uid"] != plan["uid"]:
        report["not_enforced"].append("processes: no RLIMIT_NPROC (the worker shares the server's uid)")
    return report


if __name__ == "__main__":
    # python -I confine.py PLAN             a probe: prints the report
    # python -I confine.py PLAN -- CMD...   runs CMD confined (pip installing a policy's requirements)
    result = apply(json.loads(sys.argv[1]))
    if len(sys.argv) > 3 and sys.argv[2] == "--":
        os.execvp(sys.argv[3], sys.argv[3:])
    print(json.dumps(result))

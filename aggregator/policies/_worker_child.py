"""The program a policy worker process runs (standard library only).

Started by `worker.py` as `python -I -B _worker_child.py <sandbox plan JSON>` (no bytecode written); before it
reads a request it confines itself as the plan says (`sandbox/confine.py`: limits,
its own uid, no network, reads and writes only where allowed) and tells what took
effect in its answer to init (`"sandbox"`).
Requests arrive on the original stdin as length-prefixed pickles (8-byte
big-endian length, then the pickle: the aggregator is trusted, and pickle is
several times cheaper than JSON for large inputs); replies go back on the
original stdout as JSON lines (the aggregator never unpickles policy output).
Both are moved to private descriptors first, so a policy's `print` goes to
stderr and cannot corrupt the protocol.

Messages in: {"op": "init", "code_dir", "site_dir", "settings", "parameters"},
then {"op": "eval", "parameters", "input_data"} / {"op": "management", "action", "data"}.
Replies: {"ok": true, ...} or {"ok": false, "error": "...", "replace": bool, "raised": bool}
("raised": the policy's own code raised; its instance is kept unless "replace").
"""

import gc
import json
import os
import pickle
import struct
import sys
import traceback


def _confine(plan_json):
    """Load `sandbox/confine.py` by its path (nothing of the aggregator is importable here) and apply it."""
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sandbox", "confine.py")
    spec = importlib.util.spec_from_file_location("_aios_confine", path)
    assert spec is not None and spec.loader is not None
    confine = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(confine)
    return confine.apply(json.loads(plan_json))


def _private_pipes():
    proto_in = os.fdopen(os.dup(0), "rb")
    proto_out = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    return proto_in, proto_out


def _describe(exc, code_file):
    """`Type: message (function.py line N in name)`, pointing at the policy's own frame."""
    where = ""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename.startswith(os.path.dirname(code_file)):
            where = f" ({os.path.basename(frame.filename)} line {frame.lineno} in {frame.name})"
            break
    text = str(exc)
    return f"{type(exc).__name__}: {text}{where}" if text else f"{type(exc).__name__}{where}"


class _Policy:
    def __init__(self, message):
        self.code_file = os.path.join(message["code_dir"], "function.py")
        self.context = {}
        for folder in reversed([message["code_dir"], message.get("site_dir")]):
            if folder:
                sys.path.insert(0, folder)
        import importlib.util

        spec = importlib.util.spec_from_file_location("function", self.code_file)
        if spec is None or spec.loader is None:
            raise ImportError(f"{self.code_file}: not loadable as a Python module")
        module = importlib.util.module_from_spec(spec)
        sys.modules["function"] = module
        spec.loader.exec_module(module)
        cls = getattr(module, "AIOSv1PolicyRule", None)
        if cls is None or not callable(cls):
            raise LookupError("function.py defines no class AIOSv1PolicyRule")
        if not callable(getattr(cls, "eval", None)):
            raise LookupError("AIOSv1PolicyRule has no eval method")
        self.instance = cls("", message.get("settings") or {}, message.get("parameters") or {})

    def eval(self, message):
        result = self.instance.eval(message.get("parameters") or {}, message["input_data"], self.context)
        if not isinstance(result, dict):
            raise _Malformed(f"eval returned {type(result).__name__}, not a dict")
        return result

    def management(self, message):
        method = getattr(self.instance, "management", None)
        if not callable(method):
            raise _NotProvided("this policy has no management method")
        return method(message["action"], message.get("data") or {})


class _Malformed(Exception):
    pass


class _NotProvided(Exception):
    pass


def _encode(reply):
    return json.dumps(reply, allow_nan=False, separators=(",", ":")).encode() + b"\n"


def main():
    sandbox = _confine(sys.argv[1] if len(sys.argv) > 1 else "{}")
    proto_in, proto_out = _private_pipes()
    policy = None
    while True:
        header = proto_in.read(8)
        if len(header) < 8:
            return 0
        (size,) = struct.unpack("!Q", header)
        frame = proto_in.read(size)
        if len(frame) < size:
            return 0
        # decoding a large input makes many containers; the cyclic GC would walk
        # them again and again while they are being built (none of them is garbage yet)
        gc.disable()
        try:
            message = pickle.loads(frame)
        finally:
            gc.enable()
        del frame
        op = message.get("op")
        try:
            if op == "init":
                try:
                    policy = _Policy(message)
                except BaseException as exc:  # noqa: BLE001 - report anything the import does
                    out = {"ok": False, "error": _describe(exc, os.path.join(message["code_dir"], "function.py")),
                           "missing_module": getattr(exc, "name", None) if isinstance(exc, ImportError) else None,
                           "replace": True}
                else:
                    out = {"ok": True, "pid": os.getpid()}
                out["sandbox"] = sandbox
                proto_out.write(_encode(out))
                proto_out.flush()
                continue
            if policy is None:
                raise _Malformed("no policy loaded (init first)")
            handler = {"eval": policy.eval, "management": policy.management}[op]
            result = handler(message)
            try:
                data = _encode({"ok": True, "result": result})
            except (TypeError, ValueError, RecursionError) as exc:
                data = _encode({"ok": False, "replace": False, "raised": True,
                                "error": f"{op} returned a result that is not JSON: {exc}"})
        # An exception of the policy's own code is its answer: the instance and its
        # state stay. Only what means the process itself is no longer sound (the
        # memory limit, sys.exit, an interrupt) replaces the worker; a crash or a
        # timeout is seen by the aggregator, which kills it.
        except (_NotProvided, _Malformed) as exc:
            data = _encode({"ok": False, "replace": False, "raised": True, "error": str(exc)})
        except SystemExit as exc:
            data = _encode({"ok": False, "replace": True, "error": f"policy called sys.exit({exc.code!r})"})
        except MemoryError as exc:
            data = _encode({"ok": False, "replace": True,
                            "error": _describe(exc, policy.code_file if policy else "")})
        except Exception as exc:  # noqa: BLE001 - a policy may raise anything
            data = _encode({"ok": False, "replace": False, "raised": True,
                            "error": _describe(exc, policy.code_file if policy else "")})
        except BaseException as exc:  # noqa: BLE001 - KeyboardInterrupt, GeneratorExit, ...
            data = _encode({"ok": False, "replace": True,
                            "error": _describe(exc, policy.code_file if policy else "")})
        proto_out.write(data)
        proto_out.flush()


if __name__ == "__main__":
    sys.exit(main())

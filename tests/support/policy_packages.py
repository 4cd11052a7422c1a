"""Writing real policy packages (directory, zip, tar.gz, tar.xz) and a stand-in HTTP server for tests."""

from __future__ import annotations

import io
import json
import tarfile
import textwrap
import threading
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

__all__ = ["Recorded", "StandIn", "policy_source", "write_directory", "write_package", "write_tar", "write_zip"]


def policy_source(body: str) -> str:
    """A function.py whose AIOSv1PolicyRule has `body` (indented methods) as its class body."""
    return "class AIOSv1PolicyRule:\n" + textwrap.indent(textwrap.dedent(body).strip("\n"), "    ") + "\n"


def _files(function_py: str, extra: dict[str, str] | None) -> dict[str, str]:
    files = {"code/function.py": function_py}
    files.update(extra or {})
    return files


def write_directory(root: Path, function_py: str, extra: dict[str, str] | None = None) -> Path:
    for name, text in _files(function_py, extra).items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return root


def write_zip(path: Path, function_py: str, extra: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("code/", "")
        for name, text in _files(function_py, extra).items():
            zf.writestr(name, text)
    return path


def write_tar(path: Path, function_py: str, extra: dict[str, str] | None = None, *, compression: str = "gz") -> Path:
    with tarfile.open(path, f"w:{compression}") as tf:
        folder = tarfile.TarInfo("code")
        folder.type = tarfile.DIRTYPE
        folder.mode = 0o755
        tf.addfile(folder)
        for name, text in _files(function_py, extra).items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tf.addfile(info, io.BytesIO(data))
    return path


def write_package(kind: str, where: Path, function_py: str, extra: dict[str, str] | None = None) -> Path:
    """kind: 'dir', 'zip', 'tar.gz' or 'tar.xz'; `where` is a folder to put it in."""
    where.mkdir(parents=True, exist_ok=True)
    if kind == "dir":
        return write_directory(where / "policy", function_py, extra)
    if kind == "zip":
        return write_zip(where / "policy.zip", function_py, extra)
    return write_tar(where / f"policy.{kind}", function_py, extra, compression=kind.split(".")[1])


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


Route = Callable[[Recorded], tuple[int, str, bytes]]  # -> (status, content type, body)


@dataclass
class StandIn:
    """A small HTTP server on 127.0.0.1 standing in for another team's service.

    `routes` maps (method, path) to a handler; anything else answers 404 and is
    recorded, so tests can assert exactly what arrived.
    """

    routes: dict[tuple[str, str], Route] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    port: int = 0  # 0: a free one

    def __post_init__(self) -> None:
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                record = Recorded(self.command, self.path, dict(self.headers), self.rfile.read(length))
                stand_in.requests.append(record)
                route = stand_in.routes.get((self.command, self.path))
                if route is None:
                    status, ctype, body = 404, "application/json", b'{"success": false, "message": "not found"}'
                else:
                    status, ctype, body = route(record)
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

            def log_message(self, *args) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address) -> None:
                pass  # a client that gave up (timeout tests) is expected

        self._server = Server(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def json_route(self, method: str, path: str, answer: object, status: int = 200) -> None:
        body = json.dumps(answer).encode()
        self.routes[(method, path)] = lambda _r: (status, "application/json", body)

    def file_route(self, path: str, file: Path) -> None:
        data = file.read_bytes()
        self.routes[("GET", path)] = lambda _r: (200, "application/octet-stream", data)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def live_processes_with_argv(*argv: str) -> list[int]:
    """Pids of the processes (zombies aside) whose command line is exactly `argv`: how a test
    finds what a policy started without the policy having to tell it."""
    wanted = "\0".join(argv).encode() + b"\0"
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "cmdline").read_bytes() != wanted:
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            found.append(int(entry.name))
    return found

"""A FastAPI app on a real uvicorn server, on 127.0.0.1 and an ephemeral port, in a thread."""

from __future__ import annotations

import json
import socket
import threading
import urllib.error
import urllib.request
from typing import Any

import uvicorn

from tests.support.waiting import wait_for


class ServedApp:
    """`ServedApp(app)` serves at once; `.url`, `.port`, `.request(...)`, `.close()`.

    `read_token`: sent with the GET requests that name no token (every read needs one)."""

    def __init__(self, app: Any, read_token: str | None = None) -> None:
        self.read_token = read_token
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self.port: int = self._socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True)
        self._thread.start()
        try:
            wait_for(lambda: self._server.started or not self._thread.is_alive(), timeout_s=10, what="uvicorn to start")
            if not self._server.started:
                raise RuntimeError("uvicorn stopped before it started (see the log above)")
        except BaseException:
            self.close()
            raise

    def active_requests(self) -> set:
        """The requests the server is handling now (uvicorn's own bookkeeping)."""
        return set(self._server.server_state.tasks)

    def request(
        self, method: str, path: str, body: Any = None, token: str | None = None, raw: bytes | None = None
    ) -> tuple[int, Any]:
        """One JSON request; (status, decoded body), error statuses included."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        headers = {"Content-Type": "application/json"}
        if token is None and method == "GET":
            token = self.read_token
        if token:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def close(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()

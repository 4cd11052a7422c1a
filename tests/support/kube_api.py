"""A Kubernetes API server on loopback for tests: kmock's emulator in its own thread.

kmock (0.8) keeps objects in memory and answers the official `kubernetes`
client. Its server must run in a thread of its own: the sync client called
from the server's own event loop would hang. `KubeApiServer` adds what the
emulator cannot do by itself (see `RefusingEmulator`): answer a chosen verb
with a Kubernetes error (the emulator applies writes before any user-defined
reaction runs, so a plain `kmock[...] << 403` would still change the Node),
delay answers (timeouts), and go down and come back on the same port.

Use the `kube_api` fixture: `from tests.support.kube_api import kube_api  # noqa: F401`.
"""

from __future__ import annotations

import asyncio
import copy
import json
import threading
from pathlib import Path
from typing import Any

import pytest
from kmock import KubernetesEmulator, KubernetesError, Server, resource

from tests.support.waiting import wait_for

NODES = resource("v1/nodes")


class RefusingEmulator(KubernetesEmulator):
    """The emulator, plus refusals and delays chosen by the test.

    Refusals are checked before the emulator touches its stored objects, so a
    refused PATCH changes nothing, as on a real API server.
    """

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.refusals: dict[str, KubernetesError] = {}  # HTTP method -> error to answer
        self.delay_s = 0.0

    async def _handle(self, request):  # type: ignore[override]
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        refusal = self.refusals.get(request.method.value)
        if refusal is not None and request.resource is not None:
            raise refusal
        return await super()._handle(request)


def forbidden(verb: str, resource: str = "nodes", name: str = "", user: str = "system:serviceaccount:aios:agent"):
    """The 403 a real API server answers when RBAC lacks `verb` on `resource`."""
    return KubernetesError(
        status=403,
        reason="Forbidden",
        message=(
            f'{resource} "{name}" is forbidden: User "{user}" cannot {verb} resource "{resource}" '
            'in API group "" at the cluster scope'
        ),
        details={"name": name, "kind": resource},
    )


class KubeApiServer:
    """kmock's Kubernetes emulator served on 127.0.0.1 from a background thread."""

    def __init__(self, tmp_path: Path, emulator: RefusingEmulator | None = None):
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="kmock", daemon=True)
        self._thread.start()
        self.emulator = emulator if emulator is not None else RefusingEmulator()
        self._call(self.emulator.__aenter__())
        self._server: Server | None = None
        self.port = 0
        self.start()
        self.kubeconfig = tmp_path / "kubeconfig.yaml"
        self.kubeconfig.write_text(json.dumps(self._kubeconfig()))  # JSON is valid YAML

    def _call(self, coro, timeout_s: float = 10.0):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout_s)

    def _kubeconfig(self) -> dict:
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "kmock", "cluster": {"server": f"http://127.0.0.1:{self.port}"}}],
            "users": [{"name": "agent", "user": {"token": "test-token"}}],
            "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "agent"}}],
            "current-context": "kmock",
        }

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Listen (again): the first time on a free port, later on the same one."""
        async def _start():
            server = Server(self.emulator, port=self.port or None)
            await server.__aenter__()
            return server

        self._server = self._call(_start())
        self.port = self._server.port

    def go_down(self) -> None:
        """Stop listening: clients get "connection refused" until `start()`."""
        if self._server is not None:
            self._call(self._server.__aexit__(None, None, None))
            self._server = None

    def close(self) -> None:
        self.go_down()
        self._call(self.emulator.__aexit__(None, None, None))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    # ------------------------------------------------------------ objects

    def put_node(self, name: str, labels: dict | None = None, annotations: dict | None = None) -> None:
        metadata: dict[str, Any] = {"name": name}
        if labels is not None:
            metadata["labels"] = dict(labels)
        if annotations is not None:
            metadata["annotations"] = dict(annotations)
        self.emulator.objects[NODES, None, name] = {"apiVersion": "v1", "kind": "Node", "metadata": metadata}

    def node(self, name: str) -> dict | None:
        """The Node as stored now (a deep copy), or None when it does not exist."""
        key = (NODES, None, name)
        if key not in self.emulator.objects or self.emulator.objects[key].deleted:
            return None
        return copy.deepcopy(self.emulator.objects[key].raw)

    def annotations(self, name: str) -> dict:
        return dict(((self.node(name) or {}).get("metadata") or {}).get("annotations") or {})

    def labels(self, name: str) -> dict:
        return dict(((self.node(name) or {}).get("metadata") or {}).get("labels") or {})

    def delete_node(self, name: str) -> None:
        self.emulator.objects[NODES, None, name].delete()

    # ------------------------------------------------------------ requests seen

    def requests(self, method: str | None = None) -> list:
        """Requests the server saw (all, or of one HTTP method), oldest first."""
        seen = list(self.emulator._requests)  # kmock records every request it parsed
        return [r for r in seen if method is None or r.method.value == method]

    def wait_for(self, predicate, timeout_s: float = 10.0, what: str = "condition") -> None:
        wait_for(predicate, timeout_s=timeout_s, what=what, every_s=0.02)


@pytest.fixture
def kube_api(tmp_path):
    server = KubeApiServer(tmp_path)
    try:
        yield server
    finally:
        server.close()

"""A Kubernetes API server on loopback for tests: kmock's emulator in its own thread.

kmock (0.8) keeps objects in memory and answers the official `kubernetes`
client. Its server must run in a thread of its own: the sync client called
from the server's own event loop would hang. `KubeApiServer` adds what the
emulator cannot do by itself (see `RefusingEmulator`): answer a chosen verb
with a Kubernetes error (the emulator applies writes before any user-defined
reaction runs, so a plain `kmock[...] << 403` would still change the Node),
delay answers (timeouts), go down and come back on the same port, and merge a
strategic-merge patch of a Node's `status.conditions` by `type`, as a real API
server does (the emulator replaces lists whole; a real server would keep the
kubelet's Ready condition beside ours).

Use the `kube_api` fixture: `from tests.support.kube_api import kube_api  # noqa: F401`.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp.web
import pytest
from kmock import KubernetesEmulator, KubernetesError, Server, resource

from tests.support.waiting import wait_for

NODES = resource("v1/nodes")
PODS = resource("v1/pods")


@dataclass
class IssuedToken:
    namespace: str
    service_account: str
    pod: str
    pod_uid: str
    node: str
    audiences: tuple[str, ...]
    expires_at: float
    node_extra: bool  # False: a cluster older than 1.30, whose reviews carry no node name
    revoked: bool = False


class TokenIssuer:
    """What the API server and the kubelet do with projected ServiceAccount tokens, for tests.

    `issue()` mints a token (a JWT-shaped string with `exp`, `aud` and the
    `kubernetes.io` claims, as the kubelet's are); the emulator answers
    `POST /apis/authentication.k8s.io/v1/tokenreviews` from `review()` as a real
    API server does: unauthenticated with an error for an unknown, expired,
    revoked or wrong-audience token; else the ServiceAccount user with the
    `authentication.kubernetes.io/pod-name`/`pod-uid` (and, 1.30+, `node-name`) extras
    and the audiences that matched.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.tokens: dict[str, IssuedToken] = {}

    def issue(self, *, node: str, pod: str = "", namespace: str = "controllers", service_account: str = "aios-agent",
              audiences: tuple[str, ...] = ("aios-aggregator",), expires_in_s: float = 3600.0,
              node_extra: bool = True) -> str:
        pod = pod or f"aios-agent-{secrets.token_hex(3)}"
        issued = IssuedToken(namespace, service_account, pod, secrets.token_hex(8), node, tuple(audiences),
                             self.clock() + expires_in_s, node_extra)
        claims = {"aud": list(audiences), "exp": int(issued.expires_at), "iat": int(self.clock()),
                  "sub": f"system:serviceaccount:{namespace}:{service_account}",
                  "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": service_account},
                                    "pod": {"name": pod, "uid": issued.pod_uid}, "node": {"name": node}}}

        def part(value: dict) -> str:
            return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

        token = f"{part({'alg': 'RS256', 'kid': 'test'})}.{part(claims)}.{secrets.token_urlsafe(32)}"
        self.tokens[token] = issued
        return token

    def review(self, spec: dict) -> dict:
        token = spec.get("token") or ""
        wanted = list(spec.get("audiences") or ["https://kubernetes.default.svc.cluster.local"])
        issued = self.tokens.get(token)
        if issued is None:
            return {"authenticated": False, "error": "[invalid bearer token, square/go-jose: error in cryptographic primitive]"}
        if issued.revoked:
            return {"authenticated": False, "error": f"[invalid bearer token, pod \"{issued.pod}\" not found]"}
        if issued.expires_at <= self.clock():
            return {"authenticated": False, "error": "[invalid bearer token, service account token has expired]"}
        matched = [a for a in wanted if a in issued.audiences]
        if not matched:
            return {"authenticated": False, "error": (
                f"[invalid bearer token, token audiences {json.dumps(list(issued.audiences))} is invalid for the "
                f"target audiences {json.dumps(wanted)}]")}
        extra = {"authentication.kubernetes.io/credential-id": [f"JTI={secrets.token_hex(8)}"],
                 "authentication.kubernetes.io/pod-name": [issued.pod],
                 "authentication.kubernetes.io/pod-uid": [issued.pod_uid]}
        if issued.node_extra:
            extra["authentication.kubernetes.io/node-name"] = [issued.node]
        return {"authenticated": True, "audiences": matched, "user": {
            "username": f"system:serviceaccount:{issued.namespace}:{issued.service_account}",
            "uid": secrets.token_hex(8),
            "groups": ["system:serviceaccounts", f"system:serviceaccounts:{issued.namespace}", "system:authenticated"],
            "extra": extra}}


class RefusingEmulator(KubernetesEmulator):
    """The emulator, plus refusals and delays chosen by the test.

    Refusals are checked before the emulator touches its stored objects, so a
    refused PATCH changes nothing, as on a real API server.
    """

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.refusals: dict[str, KubernetesError] = {}  # HTTP method -> error to answer
        self.delay_s = 0.0
        self.arrivals: list[tuple[float, str, str, Any]] = []  # (time.time() at arrival, method, path, body)
        self.token_issuer = TokenIssuer()
        self.token_reviews_refused: KubernetesError | None = None  # e.g. forbidden("create", "tokenreviews")

    async def _handle(self, request):  # type: ignore[override]
        self.arrivals.append((time.time(), request.method.value, str(request.url.path), request.data))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        refusal = self.refusals.get(request.method.value)
        if refusal is not None and request.resource is not None:
            raise refusal
        if request.resource is not None and request.resource.plural == "tokenreviews" and request.method.value == "POST":
            # a TokenReview is answered, never stored (a second one would "already exist" in the emulator)
            if self.token_reviews_refused is not None:
                raise self.token_reviews_refused
            body = request.data if isinstance(request.data, dict) else {}
            answer = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "metadata": {},
                      "spec": body.get("spec") or {}, "status": self.token_issuer.review(body.get("spec") or {})}
            return aiohttp.web.json_response(answer, status=201)
        self._merge_conditions_by_type(request)
        return await super()._handle(request)

    def _merge_conditions_by_type(self, request) -> None:
        """A strategic-merge PATCH of a Node's `status.conditions`: merge by `type` (the
        Node's patch merge key) into what is stored, in place, before the emulator applies it."""
        content_type = request.headers.get("Content-Type", "") if request.headers else ""
        if request.method.value != "PATCH" or request.resource != NODES or "strategic-merge" not in content_type:
            return
        patch = request.data if isinstance(request.data, dict) else {}
        conditions = (patch.get("status") or {}).get("conditions")
        key = (NODES, None, request.name)
        if not isinstance(conditions, list) or key not in self.objects or self.objects[key].deleted:
            return
        stored = list(((self.objects[key].raw.get("status") or {}).get("conditions")) or [])
        by_type = {c.get("type"): i for i, c in enumerate(stored)}
        for condition in conditions:
            if condition.get("type") in by_type:
                stored[by_type[condition["type"]]] = {**stored[by_type[condition["type"]]], **condition}
            else:
                by_type[condition.get("type")] = len(stored)
                stored.append(condition)
        patch["status"]["conditions"] = stored


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
        if self._server is None:
            return
        server = self._server

        async def _down():
            # open watches would hold the shutdown for aiohttp's 60 s grace: cut them, as a dying server does
            runner = getattr(server.server, "runner", None)
            for connection in list(getattr(getattr(runner, "server", None), "connections", ())):
                connection.force_close()
            await server.__aexit__(None, None, None)

        self._server = None
        self._call(_down())

    def close(self) -> None:
        self.go_down()
        self._call(self.emulator.__aexit__(None, None, None))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    # ------------------------------------------------------------ objects

    def put_node(self, name: str, labels: dict | None = None, annotations: dict | None = None,
                 conditions: list[dict] | None = None, spec: dict | None = None) -> None:
        metadata: dict[str, Any] = {"name": name}
        if labels is not None:
            metadata["labels"] = dict(labels)
        if annotations is not None:
            metadata["annotations"] = dict(annotations)
        node: dict[str, Any] = {"apiVersion": "v1", "kind": "Node", "metadata": metadata}
        if spec is not None:
            node["spec"] = copy.deepcopy(spec)
        if conditions is not None:
            node["status"] = {"conditions": copy.deepcopy(conditions)}
        self.emulator.objects[NODES, None, name] = node

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

    def conditions(self, name: str) -> dict[str, dict]:
        """The Node's `status.conditions` by type."""
        found = ((self.node(name) or {}).get("status") or {}).get("conditions") or []
        return {c.get("type"): c for c in found}

    def taints(self, name: str) -> list[dict]:
        return list(((self.node(name) or {}).get("spec") or {}).get("taints") or [])

    def delete_node(self, name: str) -> None:
        self.emulator.objects[NODES, None, name].delete()

    def put_pod(self, namespace: str, name: str, node: str, uid: str = "") -> None:
        metadata = {"name": name, "namespace": namespace, **({"uid": uid} if uid else {})}
        self.emulator.objects[PODS, namespace, name] = {"apiVersion": "v1", "kind": "Pod", "metadata": metadata,
                                                        "spec": {"nodeName": node,
                                                                 "containers": [{"name": "agent", "image": "aios"}]}}

    def agent_token(self, node: str, **kwargs) -> str:
        """A projected token of the agent's ServiceAccount for a pod on `node` (see `TokenIssuer.issue`);
        without the node-name extra, the pod is stored so its `spec.nodeName` can be read."""
        token = self.emulator.token_issuer.issue(node=node, **kwargs)
        issued = self.emulator.token_issuer.tokens[token]
        if not issued.node_extra:
            self.put_pod(issued.namespace, issued.pod, node, uid=issued.pod_uid)
        return token

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

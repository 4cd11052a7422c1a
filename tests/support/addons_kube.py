"""kmock taught server-side apply, for the add-on tests: what the real API server does with it.

kmock 0.8 answers a PATCH to a missing object with 404 and merges any PATCH body into what it
has, whatever the content type; it ignores `dryRun`; it misreads `/api/v1/namespaces/NAME`
(a Namespace) as a namespace with no resource; and it answers 404 when listing a kind it holds
no object of. A real API server, for `Content-Type: application/apply-patch+yaml`, creates the
object when missing, stores nothing under `dryRun=All` and answers what would be stored. This
emulator does those things (its merge is a JSON merge, not the server's field-ownership merge:
the tests check what the client sends, and that a repeat sends nothing), records every apply
with its query, and can refuse a (method, resource) with a Kubernetes error.

`addons_kube` fixture: `from tests.support.addons_kube import addons_kube  # noqa: F401`.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import aiohttp.web
import pytest
import yaml
from kmock import KubernetesError, resource

from aggregator.addons.kube import KINDS
from tests.support.kube_api import KubeApiServer, RefusingEmulator

APPLY = "application/apply-patch+yaml"
NAMESPACES = resource("", "v1", "namespaces")


def resource_of(kind: str):
    api = KINDS[kind]
    return resource(api.group, api.version, api.plural)


def merge(current: Any, patch: Any) -> Any:
    if not isinstance(patch, dict) or not isinstance(current, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(current)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge(result.get(key), value)
    return result


def forbidden(verb: str, plural: str, group: str, namespace: str, user: str = "operator") -> KubernetesError:
    """The 403 a real API server answers when RBAC lacks `verb` on `plural` in `namespace`."""
    return KubernetesError(
        status=403, reason="Forbidden",
        message=(f'{plural}.{group} is forbidden: User "{user}" cannot {verb} resource "{plural}" in API group '
                 f'"{group}" in the namespace "{namespace}"'),
        details={"kind": plural, "group": group},
    )


class ApplyingEmulator(RefusingEmulator):
    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.resource_refusals: dict[tuple[str, str], KubernetesError] = {}  # (HTTP method, plural) -> error
        self.applied: list[dict] = []  # every apply: {"kind", "name", "namespace", "query", "content_type", "body"}
        self.namespaces: dict[str, dict] = {}

    def _get_resources(self):  # type: ignore[override]
        return list({*super()._get_resources(), *(resource_of(kind) for kind in KINDS if kind != "Namespace")})

    async def _handle(self, request):  # type: ignore[override]
        plural = request.resource.plural if request.resource is not None else None
        parts = request.url.path.strip("/").split("/")
        if parts[:3] == ["api", "v1", "namespaces"] and len(parts) == 4:
            plural = "namespaces"
        refusal = self.resource_refusals.get((request.method.value, plural or ""))
        if refusal is not None:
            raise refusal
        if plural == "namespaces" and len(parts) == 4:
            return await self._namespace(request, parts[3])
        content_type = request.headers.get("Content-Type", "")
        if request.method.value == "PATCH" and content_type.startswith(APPLY) and request.resource is not None:
            return await self._apply(request, content_type)
        return await super()._handle(request)

    def _record(self, request, kind: str, name: str, namespace: str | None, content_type: str, body: dict) -> None:
        self.applied.append({"kind": kind, "name": name, "namespace": namespace, "query": dict(request.params),
                             "content_type": content_type, "body": body})

    async def _namespace(self, request, name: str):
        if request.method.value == "GET":
            if name not in self.namespaces:
                raise KubernetesError(status=404, reason="NotFound", message=f'namespaces "{name}" not found')
            return aiohttp.web.json_response(self.namespaces[name])
        if request.method.value == "PATCH":
            body = yaml.safe_load(request.text)
            self._record(request, "Namespace", name, None, request.headers.get("Content-Type", ""), body)
            result = merge(self.namespaces.get(name, {}), body)
            if request.params.get("dryRun") != "All":
                self.namespaces[name] = result
            return aiohttp.web.json_response(result)
        raise KubernetesError(status=405, reason="MethodNotAllowed", message="not emulated")

    async def _apply(self, request, content_type: str):
        body = yaml.safe_load(request.text)  # JSON is YAML; a real server reads either
        key = (request.resource, request.namespace, request.name)
        self._record(request, body.get("kind"), request.name, request.namespace, content_type, body)
        async with self._lock:
            exists = key in self._objects and not self._objects[key].deleted
            result = merge(self._objects[key].raw if exists else {}, body)
            if request.params.get("dryRun") != "All":
                if exists:
                    self._objects[key].patch(body)
                elif key in self._objects:
                    self._objects[key].create(body)
                else:
                    self._objects[key] = body
                result = self._objects[key].raw
                await self._buses[request.resource].put({"type": "MODIFIED" if exists else "ADDED", "object": result})
        return aiohttp.web.json_response(json.loads(json.dumps(result)))


class AddOnsKube(KubeApiServer):
    emulator: ApplyingEmulator

    def __init__(self, tmp_path):
        super().__init__(tmp_path, ApplyingEmulator())

    def put(self, obj: dict) -> None:
        """Store an object as if someone else had made it (not counted as an apply)."""
        meta = obj["metadata"]
        if obj["kind"] == "Namespace":
            self.emulator.namespaces[meta["name"]] = copy.deepcopy(obj)
            return
        self.emulator.objects[resource_of(obj["kind"]), meta.get("namespace"), meta["name"]] = copy.deepcopy(obj)

    def get(self, kind: str, namespace: str | None, name: str) -> dict | None:
        if kind == "Namespace":
            return copy.deepcopy(self.emulator.namespaces.get(name))
        key = (resource_of(kind), namespace, name)
        if key not in self.emulator.objects or self.emulator.objects[key].deleted:
            return None
        return copy.deepcopy(self.emulator.objects[key].raw)

    def stored(self, namespace: str) -> set[tuple[str, str]]:
        """(kind, name) of every live object in `namespace`."""
        found = set()
        for (_resource, ns, name), obj in list(self.emulator.objects.items()):
            if ns == namespace and not obj.deleted:
                found.add((obj.raw.get("kind"), name))
        return found

    def set_status(self, kind: str, namespace: str, name: str, status: dict, **metadata: Any) -> None:
        key = (resource_of(kind), namespace, name)
        patch: dict[str, Any] = {"status": status}
        if metadata:
            patch["metadata"] = metadata
        self.emulator.objects[key].patch(patch)

    def writes(self) -> list:
        """Requests that would change something: POST, PUT, DELETE, and PATCH without dryRun."""
        return [r for r in self.requests() if r.method.value in ("POST", "PUT", "DELETE")
                or (r.method.value == "PATCH" and r.params.get("dryRun") != "All")]


@pytest.fixture
def addons_kube(tmp_path):
    server = AddOnsKube(tmp_path)
    try:
        yield server
    finally:
        server.close()

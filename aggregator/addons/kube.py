"""The Kubernetes API calls of the add-ons, through the official client's `ApiClient.call_api`.

Paths come from a fixed table of the kinds the add-ons use (no discovery round trips); requests
are built with `param_serialize` and answers read as JSON, as `agent/kube/client.py` does. Writes are
server-side apply: `PATCH` with `Content-Type: application/apply-patch+yaml`, our own field
manager, `force=true` (the install owns the fields it sets), and `dryRun=All` to learn what an
apply would change without changing it. Every failure becomes one of three errors that say what
was attempted: `KubeForbidden` (the verb and the resource, for docs/rbac.md), `KubeRefused` (any
other answer of the API server, with its message) and `KubeUnreachable`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "KINDS",
    "ApiKind",
    "KubeError",
    "KubeForbidden",
    "KubeObjects",
    "KubeRefused",
    "KubeUnreachable",
    "labels_match",
    "load_operator_client",
]

APPLY_CONTENT_TYPE = "application/apply-patch+yaml"


@dataclass(frozen=True)
class ApiKind:
    group: str
    version: str
    plural: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def resource(self) -> str:
        """As RBAC and the API server's messages name it: `deployments.apps`, `services`."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def path(self, namespace: str | None, name: str | None = None) -> str:
        root = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        where = f"/namespaces/{namespace}" if self.namespaced and namespace else ""
        return f"{root}{where}/{self.plural}" + (f"/{name}" if name else "")


KINDS: dict[str, ApiKind] = {
    "Namespace": ApiKind("", "v1", "namespaces", namespaced=False),
    "ConfigMap": ApiKind("", "v1", "configmaps"),
    "Service": ApiKind("", "v1", "services"),
    "PersistentVolumeClaim": ApiKind("", "v1", "persistentvolumeclaims"),
    "Pod": ApiKind("", "v1", "pods"),
    "Event": ApiKind("", "v1", "events"),
    "Deployment": ApiKind("apps", "v1", "deployments"),
    "StatefulSet": ApiKind("apps", "v1", "statefulsets"),
    "Role": ApiKind("rbac.authorization.k8s.io", "v1", "roles"),
    "RoleBinding": ApiKind("rbac.authorization.k8s.io", "v1", "rolebindings"),
}


class KubeError(Exception):
    """A Kubernetes API call failed; `str()` says which call and why."""


class KubeUnreachable(KubeError):
    pass


class KubeRefused(KubeError):
    def __init__(self, verb: str, kind: ApiKind, namespace: str | None, name: str | None, status: int, message: str):
        self.verb, self.kind, self.namespace, self.name, self.status, self.message = verb, kind, namespace, name, status, message
        target = f"{kind.resource}" + (f" {name!r}" if name else "") + (f" in namespace {namespace!r}" if namespace else "")
        super().__init__(f"{verb} {target}: the API server answered {status}: {message}")


class KubeForbidden(KubeRefused):
    """403: the kubeconfig's user may not use `verb` on `kind` (there)."""

    def __init__(self, verb: str, kind: ApiKind, namespace: str | None, name: str | None, status: int, message: str):
        super().__init__(verb, kind, namespace, name, status, message)
        scope = f"in namespace {namespace!r}" if namespace and kind.namespaced else "cluster-wide"
        self.args = (
            f"forbidden: may not {verb} {kind.resource} {scope} (RBAC rule: apiGroups [{kind.group!r}], "
            f"resources [{kind.plural}], verbs [{verb}]; see docs/rbac.md); the API server says: {message}",
        )


def labels_match(obj: Mapping[str, Any], selector: Mapping[str, str]) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return all(labels.get(k) == v for k, v in selector.items())


def _message(body: Any, fallback: str) -> str:
    try:
        parsed = json.loads(body) if isinstance(body, (str, bytes)) else None
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and parsed.get("message"):
        return str(parsed["message"])
    return fallback


class KubeObjects:
    """get / list / apply / delete of the kinds in `KINDS`, as plain dicts."""

    def __init__(self, api_client: Any, *, field_manager: str, timeout_s: float = 30.0) -> None:
        self._api = api_client
        self._field_manager = field_manager
        self._timeout_s = timeout_s

    @staticmethod
    def kind_of(kind: str) -> ApiKind:
        try:
            return KINDS[kind]
        except KeyError:
            raise KubeError(f"kind {kind!r} is not one the add-ons use ({', '.join(sorted(KINDS))})") from None

    def _call(self, verb: str, kind: ApiKind, namespace: str | None, name: str | None, method: str, *,
              query: list[tuple[str, str]] | None = None, body: Any = None, content_type: str | None = None) -> Any:
        import urllib3
        from kubernetes.client.exceptions import ApiException  # late: the client is ~24 MiB

        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        try:
            request = self._api.param_serialize(
                method=method, resource_path=kind.path(namespace, name), query_params=query or [],
                header_params=headers, body=body, auth_settings=["BearerToken"],
            )
            response = self._api.call_api(*request, _request_timeout=self._timeout_s)
            response.read()
        except ApiException as e:  # the client's way of saying the connection failed
            raise KubeUnreachable(f"{verb} {kind.resource}: the API server could not be reached: {e.reason}") from e
        except (urllib3.exceptions.HTTPError, OSError) as e:  # refused, reset, timed out, TLS, DNS
            raise KubeUnreachable(f"{verb} {kind.resource}: the API server could not be reached: "
                                  f"{type(e).__name__}: {e}") from e
        status = int(response.status)
        if not 200 <= status < 300:
            error = KubeForbidden if status == 403 else KubeRefused
            raise error(verb, kind, namespace, name, status, _message(response.data, str(response.reason or status)))
        try:
            return json.loads(response.data) if response.data else {}
        except ValueError as e:
            raise KubeRefused(verb, kind, namespace, name, status, f"the answer is not JSON ({e})") from e

    def get(self, kind: str, namespace: str | None, name: str) -> dict | None:
        """The object, or None when there is none."""
        api = self.kind_of(kind)
        try:
            return self._call("get", api, namespace, name, "GET")
        except KubeRefused as e:
            if e.status == 404:
                return None
            raise

    def list(self, kind: str, namespace: str | None, labels: Mapping[str, str] | None = None) -> list[dict]:
        """Objects of `kind` carrying `labels` (also checked here: a selector is a request, not a promise)."""
        api = self.kind_of(kind)
        query = [("labelSelector", ",".join(f"{k}={v}" for k, v in labels.items()))] if labels else []
        answer = self._call("list", api, namespace, None, "GET", query=query) or {}
        items = [dict(item, kind=item.get("kind") or kind) for item in answer.get("items") or []]
        return [item for item in items if labels_match(item, labels or {})]

    def apply(self, obj: Mapping[str, Any], *, dry_run: bool = False) -> dict:
        """Server-side apply of `obj` (created when missing); with `dry_run` nothing is stored."""
        api = self.kind_of(str(obj["kind"]))
        metadata = obj["metadata"]
        query = [("fieldManager", self._field_manager), ("force", "true")]
        if dry_run:
            query.append(("dryRun", "All"))
        # a JSON string: valid YAML, and sent as it is by every client version
        return self._call("patch", api, metadata.get("namespace"), metadata["name"], "PATCH", query=query,
                          body=json.dumps(obj), content_type=APPLY_CONTENT_TYPE)

    def delete(self, kind: str, namespace: str | None, name: str) -> bool:
        """Delete (dependents in the background); False when it was already gone."""
        api = self.kind_of(kind)
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"}
        try:
            self._call("delete", api, namespace, name, "DELETE", body=body, content_type="application/json")
        except KubeRefused as e:
            if e.status == 404:
                return False
            raise
        return True


def load_operator_client(kubeconfig: str | None = None, env: Mapping[str, str] | None = None) -> Any:
    """The operator's `ApiClient`: `--kubeconfig`, `KUBECONFIG`, ~/.kube/config, else in-cluster."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    env = os.environ if env is None else env
    path = kubeconfig or env.get("KUBECONFIG", "").split(os.pathsep)[0].strip() or None
    default = Path(env.get("HOME", "~")).expanduser() / ".kube" / "config"
    if path is None and default.is_file():
        path = str(default)
    configuration = client.Configuration()
    try:
        if path:
            if not Path(path).expanduser().is_file():
                raise KubeUnreachable(f"kubeconfig {path!r} does not exist or is not a file")
            config.load_kube_config(config_file=str(Path(path).expanduser()), client_configuration=configuration)
        else:
            config.load_incluster_config(client_configuration=configuration)
    except ConfigException as e:
        raise KubeUnreachable(f"no Kubernetes configuration ({path or 'in-cluster'}): {e} "
                              "(pass --kubeconfig or set KUBECONFIG)") from e
    configuration.retries = 0
    return client.ApiClient(configuration)

"""The agent's way into the Kubernetes API: a client, and who this node is.

The client comes from, in this order: an explicit kubeconfig path
(`--kubeconfig`), the `KUBECONFIG` env var, the pod's service account
(in-cluster), then `~/.kube/config`. The Node's name comes from the downward
API (`NODE_NAME` = `spec.nodeName`, or the old `KUBERNETES_NODE_NAME`; see
`agent.kube.identity`). The node id is the Node's `nodeID` label, else env
`NODE_ID`, else the Node's name (docs/network-formats.md §1): `node_id_from`.

The agent talks to the Node through `NodeApi` (get and patch, the two calls
it makes), built on the official client's `ApiClient` exactly as `CoreV1Api`
builds them: importing `CoreV1Api` imports ~250 model modules and ~900
validated methods, +21.5 MiB of RSS, a quarter of the running agent
(benchmarks/README.md, whole agent footprint).

Errors from the API are turned into one readable sentence here
(`describe_api_error`), so every caller logs the same clear message.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

__all__ = [
    "NODE_ID_LABEL",
    "KubeApiError",
    "KubeConfigError",
    "KubeError",
    "NodeApi",
    "NodeIdentity",
    "describe_api_error",
    "load_api_client",
    "node_id_from",
    "read_node_identity",
]

NODE_ID_LABEL = "nodeID"
IN_CLUSTER_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


class KubeError(Exception):
    """Base of the agent's Kubernetes errors."""


class KubeConfigError(KubeError):
    """No usable way to reach the API server (no kubeconfig, not in a pod)."""


class KubeApiError(KubeError):
    """One API call failed; `.status` is the HTTP status (None: no answer)."""

    def __init__(self, message: str, *, status: int | None = None):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class NodeIdentity:
    node_name: str
    node_id: str
    id_source: str  # "label" (the Node's nodeID label), "env" (NODE_ID) or "name"


def load_api_client(
    kubeconfig: str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    retries: int = 0,
) -> Any:
    """A `kubernetes.client.ApiClient` for this process.

    `retries=0` turns off urllib3's own silent retries: the callers back off
    and retry themselves, and log each failure.
    """
    env = os.environ if env is None else env
    source = _config_source(kubeconfig, env)  # before the import: no configuration, no kubernetes
    # Imported here: `import kubernetes` costs ~20 MiB, and only this path needs it.
    from kubernetes import client, config

    configuration = client.Configuration()
    try:
        if source is None:
            config.load_incluster_config(client_configuration=configuration)
        else:
            config.load_kube_config(config_file=str(source), client_configuration=configuration)
    except config.ConfigException as exc:
        raise KubeConfigError(
            f"cannot load Kubernetes configuration ({source or 'in-cluster'}): {exc}"
        ) from exc
    configuration.retries = retries
    return client.ApiClient(configuration)


class NodeApi:
    """`read_node`, `patch_node` and `patch_node_status` with `CoreV1Api`'s signatures and
    answers (a `V1Node`; an `ApiException` for a non-2xx status), made through the
    official `ApiClient` without importing `CoreV1Api` (see the module doc)."""

    RESOURCE_PATH = "/api/v1/nodes/{name}"
    STATUS_PATH = "/api/v1/nodes/{name}/status"  # the status subresource (Node conditions)
    RESPONSE_TYPES: ClassVar[Mapping[str, str | None]] = {"200": "V1Node", "201": "V1Node", "401": None}

    def __init__(self, api_client: Any):
        self.api_client = api_client

    def read_node(self, name: str, *, _request_timeout: float | None = None) -> Any:
        return self._call("GET", name, body=None, content_type=None, request_timeout=_request_timeout)

    def patch_node(self, name: str, body: Any, *, _content_type: str = "application/strategic-merge-patch+json",
                   _request_timeout: float | None = None) -> Any:
        return self._call("PATCH", name, body=body, content_type=_content_type, request_timeout=_request_timeout)

    def patch_node_status(self, name: str, body: Any, *,
                          _content_type: str = "application/strategic-merge-patch+json",
                          _request_timeout: float | None = None) -> Any:
        return self._call("PATCH", name, body=body, content_type=_content_type, request_timeout=_request_timeout,
                          resource_path=self.STATUS_PATH)

    def _call(self, method: str, name: str, *, body: Any, content_type: str | None,
              request_timeout: float | None, resource_path: str = RESOURCE_PATH) -> Any:
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        request = self.api_client.param_serialize(
            method=method, resource_path=resource_path, path_params={"name": name}, header_params=headers,
            body=body, auth_settings=["BearerToken"],
        )
        response = self.api_client.call_api(*request, _request_timeout=request_timeout)
        response.read()
        return self.api_client.response_deserialize(response, self.RESPONSE_TYPES).data


def _config_source(kubeconfig: str | None, env: Mapping[str, str]) -> Path | None:
    """The kubeconfig to load, None for the pod's service account; raises
    `KubeConfigError` when there is neither."""
    path = kubeconfig or env.get("KUBECONFIG", "").split(os.pathsep)[0] or None
    if path:
        if not Path(path).expanduser().is_file():
            raise KubeConfigError(f"kubeconfig {path!r} does not exist or is not a file")
        return Path(path).expanduser()
    if env.get("KUBERNETES_SERVICE_HOST") and IN_CLUSTER_TOKEN.is_file():
        return None
    if (Path.home() / ".kube" / "config").is_file():
        return Path.home() / ".kube" / "config"
    raise KubeConfigError(
        "no Kubernetes API configuration: not running in a pod (KUBERNETES_SERVICE_HOST unset "
        "or no service account token), and no kubeconfig (--kubeconfig, KUBECONFIG, ~/.kube/config)"
    )


def node_id_from(labels: Mapping[str, str] | None, node_name: str, env: Mapping[str, str] | None = None) -> NodeIdentity:
    """Pure: the node id from the Node's labels, else NODE_ID, else the name."""
    env = os.environ if env is None else env
    label = (labels or {}).get(NODE_ID_LABEL, "").strip()
    if label:
        return NodeIdentity(node_name, label, "label")
    from_env = env.get("NODE_ID", "").strip()
    if from_env:
        return NodeIdentity(node_name, from_env, "env")
    return NodeIdentity(node_name, node_name, "name")


def read_node_identity(
    core_v1: Any, node_name: str, *, env: Mapping[str, str] | None = None, request_timeout_s: float = 10.0
) -> NodeIdentity:
    """Read the Node once and derive its id; raises `KubeApiError` when it cannot."""
    try:
        node = core_v1.read_node(node_name, _request_timeout=request_timeout_s)
    except Exception as exc:
        raise api_error(exc, verb="get", node_name=node_name, timeout_s=request_timeout_s) from exc
    return node_id_from(node.metadata.labels, node_name, env)


def api_error(exc: BaseException, *, verb: str, node_name: str, timeout_s: float | None = None,
              resource: str = "nodes") -> KubeApiError:
    status = getattr(exc, "status", None)
    status = status if isinstance(status, int) and status > 0 else None
    return KubeApiError(
        describe_api_error(exc, verb=verb, node_name=node_name, timeout_s=timeout_s, resource=resource), status=status
    )


def describe_api_error(exc: BaseException, *, verb: str, node_name: str, timeout_s: float | None = None,
                       resource: str = "nodes") -> str:
    """One sentence saying what failed, why, and what to do about it. `resource`: "nodes", or
    "nodes/status" for the status subresource (its own RBAC resource)."""
    from kubernetes.client.exceptions import ApiException

    what = f"{verb} node {node_name!r}" + (" status" if resource.endswith("/status") else "")
    if isinstance(exc, ApiException) and exc.status:
        server_says = _status_message(exc)
        if exc.status == 401:
            return (
                f"{what}: unauthorized (401): the API server rejected the agent's credentials "
                f"(expired or revoked service account token?); {server_says}"
            )
        if exc.status == 403:
            return (
                f"{what}: forbidden (403): cannot {verb} resource {resource}; grant the agent's service account "
                f"the verb {verb!r} on resource '{resource}' (ClusterRole rule: apiGroups [''], resources [{resource}], "
                f"verbs [{verb}]; see docs/rbac.md); {server_says}"
            )
        if exc.status == 404:
            return f"{what}: not found (404): the Node does not exist (deleted, or NODE_NAME is wrong); {server_says}"
        if exc.status == 409:
            return f"{what}: conflict (409): the Node changed underneath us; {server_says}"
        if exc.status == 422:
            return f"{what}: rejected as invalid (422); {server_says}"
        if exc.status == 429:
            return f"{what}: throttled (429) by the API server; {server_says}"
        if exc.status >= 500:
            return f"{what}: API server error ({exc.status} {exc.reason}); {server_says}"
        return f"{what}: HTTP {exc.status} {exc.reason}; {server_says}"
    name = type(exc).__name__
    text = str(exc)
    if "timeout" in name.lower() or "timed out" in text.lower():
        limit = f" after {timeout_s:g} s" if timeout_s is not None else ""
        return f"{what}: the API server did not answer{limit} (timeout: {text})"
    if "MaxRetryError" in name or "NewConnectionError" in text or "Connection refused" in text:
        return f"{what}: the API server is unreachable ({_short_reason(exc)})"
    return f"{what}: {name}: {text}"


def _status_message(exc: Any) -> str:
    """The `message` of the Kubernetes Status body, else the raw body."""
    import json

    body = getattr(exc, "body", None) or ""
    try:
        data = json.loads(body)
        if isinstance(data, dict) and data.get("message"):
            return f"server says: {data['message']}"
    except (TypeError, ValueError):
        pass
    return f"server says: {str(body)[:300] or exc.reason}"


def _short_reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    text = str(reason if reason is not None else exc)
    return text if len(text) <= 300 else text[:297] + "..."

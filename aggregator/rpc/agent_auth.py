"""Agents authenticate as their node, with Kubernetes' own identity.

Each agent pod sends its projected ServiceAccount token (audience
`aios-aggregator`, rotated by the kubelet). `KubernetesAgentAuth` asks the API
server about it with a TokenReview (`authentication.k8s.io/v1`, audience
checked), requires the agent's ServiceAccount, and finds the node the token's
pod runs on: the review's `authentication.kubernetes.io/node-name` extra where
the cluster provides it (Kubernetes 1.30+), else the pod's `spec.nodeName`
(`pods get`). A hello must then name that Node's id: its `nodeID` label, else
its name (`nodes get`). So a token stolen from one node speaks for that node only.

Answers are cached: a review until the token expires (its `exp` claim), so
reconnects and a short API outage cost nothing; Nodes and pods for a minute.
When the API server cannot be asked, a stream already open is not touched
(it was checked when it opened); a new one is refused with UNAVAILABLE saying
why, and the agent retries with its backoff.

The three refusals: `AgentUnauthenticated` (the token is no valid token of
ours: UNAUTHENTICATED), `AgentForbidden` (a valid token that may not say this:
PERMISSION_DENIED), `AgentAuthUnavailable` (cannot tell now: UNAVAILABLE).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import urllib3

__all__ = [
    "AGENT_AUDIENCE",
    "NODE_NAME_EXTRA",
    "POD_NAME_EXTRA",
    "AgentAuthConfigError",
    "AgentAuthUnavailable",
    "AgentForbidden",
    "AgentIdentity",
    "AgentUnauthenticated",
    "KubernetesAgentAuth",
    "ServiceAccountRef",
    "identity_from_review",
    "node_id_of",
    "obviously_not_ours",
    "token_expiry",
]

log = logging.getLogger(__name__)

AGENT_AUDIENCE = "aios-aggregator"
NODE_NAME_EXTRA = "authentication.kubernetes.io/node-name"
POD_NAME_EXTRA = "authentication.kubernetes.io/pod-name"
POD_UID_EXTRA = "authentication.kubernetes.io/pod-uid"
NODE_ID_LABEL = "nodeID"  # docs/node-annotation.md: the node's id, else its name


class AgentAuthConfigError(ValueError):
    """A setting of agent authentication that cannot work (named in the message)."""


class AgentUnauthenticated(Exception):
    """The token is not a valid token for this aggregator (missing, expired, wrong audience)."""


class AgentForbidden(Exception):
    """A valid token that may not do this (another ServiceAccount, another node)."""


class AgentAuthUnavailable(Exception):
    """The Kubernetes API cannot be asked now; the agent should retry."""


@dataclass(frozen=True)
class ServiceAccountRef:
    namespace: str
    name: str

    @property
    def username(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.name}"

    @classmethod
    def parse(cls, text: str, *, default_namespace: str) -> ServiceAccountRef:
        """`name` or `namespace:name` (`AIOS_AGENT_SERVICE_ACCOUNT`)."""
        namespace, _, name = text.strip().rpartition(":")
        if not name:
            raise ValueError(f"AIOS_AGENT_SERVICE_ACCOUNT={text!r}: expected NAME or NAMESPACE:NAME")
        return cls(namespace or default_namespace, name)


@dataclass(frozen=True)
class AgentIdentity:
    service_account: ServiceAccountRef
    pod_name: str | None
    pod_uid: str | None
    node_name: str | None  # from the review; None: the pod is looked up

    def describe(self) -> str:
        pod = f"pod {self.service_account.namespace}/{self.pod_name}" if self.pod_name else "no pod"
        return f"{self.service_account.username} ({pod})"


# ------------------------------------------------------------------ pure parts


def _claims(token: str) -> dict | None:
    """A JWT's claims, unverified (the review verifies); None when it is no JWT."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (ValueError, binascii.Error):
        return None
    return claims if isinstance(claims, dict) else None


def token_expiry(token: str) -> float | None:
    """The `exp` claim (Unix seconds) of a JWT, unverified (the review verifies); None if none."""
    exp = (_claims(token) or {}).get("exp")
    return float(exp) if isinstance(exp, (int, float)) and not isinstance(exp, bool) else None


def obviously_not_ours(token: str, *, audience: str, now: float) -> str | None:
    """Why `token` cannot pass a review, judged from its own (unverified) claims, or None.

    Only a cheap filter in front of the API server: whatever passes it is still reviewed,
    so a forged token gains nothing, but garbage, the shared token, an expired token or
    one for another audience cost no API call."""
    claims = _claims(token)
    if claims is None:
        return "the token is not a ServiceAccount token (not a JWT)"
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if audience not in audiences:
        return f"the token is not for audience {audience!r} (it is for {audiences}); project it with audience: {audience}"
    expiry = token_expiry(token)
    if expiry is not None and expiry <= now:
        return "the token has expired"
    return None


def _first(extra: Mapping[str, Any] | None, key: str) -> str | None:
    values = (extra or {}).get(key)
    if isinstance(values, str):
        return values or None
    if isinstance(values, (list, tuple)) and values and isinstance(values[0], str):
        return values[0] or None
    return None


def identity_from_review(status: Mapping[str, Any], *, audience: str, expected: ServiceAccountRef) -> AgentIdentity:
    """What a TokenReview's `status` (as JSON) says about the agent, or why it is refused."""
    if not status.get("authenticated"):
        reason = status.get("error") or "the token is not valid"
        raise AgentUnauthenticated(f"Kubernetes did not accept the agent's token: {reason}")
    audiences = status.get("audiences") or []
    if audience not in audiences:
        # an API server that ignores spec.audiences answers none: the token was not checked for us
        raise AgentUnauthenticated(
            f"the agent's token is not for audience {audience!r} (the review answered {sorted(audiences)}); "
            f"project it with audience: {audience}")
    user = status.get("user") or {}
    username = user.get("username") or ""
    if username != expected.username:
        raise AgentForbidden(f"the token is {username or 'nobody'}'s, not the agent's ServiceAccount {expected.username}")
    extra = user.get("extra") or {}
    return AgentIdentity(
        service_account=expected,
        pod_name=_first(extra, POD_NAME_EXTRA),
        pod_uid=_first(extra, POD_UID_EXTRA),
        node_name=_first(extra, NODE_NAME_EXTRA),
    )


def node_id_of(node: Mapping[str, Any]) -> str:
    """A Node's id (its `nodeID` label, else its name), from the Node as JSON."""
    metadata = node.get("metadata") or {}
    label = str((metadata.get("labels") or {}).get(NODE_ID_LABEL) or "").strip()
    return label or str(metadata.get("name") or "")


# ------------------------------------------------------------------ the API side


class _ExpiringCache:
    """key -> value until a deadline; bounded (the oldest entry goes first)."""

    def __init__(self, clock: Callable[[], float], max_entries: int) -> None:
        self._clock = clock
        self._max = max_entries
        self._entries: OrderedDict[Any, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        with self._lock:
            hit = self._entries.get(key)
            if hit is None:
                return None
            if hit[0] <= self._clock():
                del self._entries[key]
                return None
            return hit[1]

    def put(self, key: Any, value: Any, until: float) -> None:
        with self._lock:
            self._entries[key] = (until, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)


def _api_problem(exc: Exception, what: str, permission: str) -> Exception:
    """An API failure as the refusal the agent should get."""
    status = getattr(exc, "status", None)
    if status in (401, 403):
        return AgentAuthUnavailable(
            f"the aggregator may not {what} (HTTP {status}): grant its ServiceAccount {permission} (docs/rbac.md)")
    if isinstance(status, int) and status:
        return AgentAuthUnavailable(f"cannot {what}: the Kubernetes API answered {status} {getattr(exc, 'reason', '')}")
    if isinstance(exc, (OSError, urllib3.exceptions.HTTPError)):
        return AgentAuthUnavailable(f"cannot {what}: the Kubernetes API is unreachable ({type(exc).__name__})")
    return AgentAuthUnavailable(f"cannot {what}: unreadable answer of the Kubernetes API ({type(exc).__name__})")


class KubernetesAgentAuth:
    """TokenReview-based authentication of agent streams (blocking: call it from a thread)."""

    def __init__(
        self,
        api_client: Any,  # kubernetes.client.ApiClient
        *,
        service_account: ServiceAccountRef,
        audience: str = AGENT_AUDIENCE,
        clock: Callable[[], float] = time.time,
        request_timeout_s: float = 5.0,
        max_review_cache_s: float = 3600.0,
        refusal_cache_s: float = 10.0,
        object_cache_s: float = 60.0,
    ) -> None:
        from kubernetes import client

        self._auth_api = client.AuthenticationV1Api(api_client)
        self._core_api = client.CoreV1Api(api_client)
        self._client = client
        self._api_client = api_client
        self.service_account = service_account
        self.audience = audience
        self._clock = clock
        self._timeout = request_timeout_s
        self._max_review_cache_s = max_review_cache_s
        self._refusal_cache_s = refusal_cache_s
        self._object_cache_s = object_cache_s
        self._reviews = _ExpiringCache(clock, 50_000)
        self._objects = _ExpiringCache(clock, 50_000)
        self.reviews_made = 0  # TokenReviews sent to the API server (the rest came from the cache)

    # --- the token

    def authenticate(self, token: str | None) -> AgentIdentity:
        if not token:
            raise AgentUnauthenticated(
                "no token: the agent sends its projected ServiceAccount token (AIOS_SA_TOKEN_FILE)")
        key = hashlib.sha256(token.encode()).digest()  # never keep the token itself
        cached = self._reviews.get(key)
        if isinstance(cached, Exception):
            raise cached
        if cached is not None:
            return cached
        problem = obviously_not_ours(token, audience=self.audience, now=self._clock())
        if problem is not None:
            raise AgentUnauthenticated(problem)
        try:
            identity = identity_from_review(self._review(token), audience=self.audience, expected=self.service_account)
        except (AgentUnauthenticated, AgentForbidden) as refusal:
            self._reviews.put(key, refusal, self._clock() + self._refusal_cache_s)
            raise
        now = self._clock()
        until = min(token_expiry(token) or now + 60.0, now + self._max_review_cache_s)
        self._reviews.put(key, identity, until)
        return identity

    def _review(self, token: str) -> dict:
        body = self._client.V1TokenReview(spec=self._client.V1TokenReviewSpec(token=token, audiences=[self.audience]))
        try:
            answer = self._auth_api.create_token_review(body, _request_timeout=self._timeout)
        except Exception as exc:
            raise _api_problem(exc, "create TokenReviews", "create on tokenreviews.authentication.k8s.io") from exc
        self.reviews_made += 1
        status = self._api_client.sanitize_for_serialization(answer.status) if answer.status else {}
        return status or {}

    # --- the node

    def node_of(self, identity: AgentIdentity) -> str:
        """The node the token's pod runs on."""
        if identity.node_name:
            return identity.node_name
        if not identity.pod_name:
            raise AgentForbidden(
                f"the token of {identity.service_account.username} is not bound to a pod: use a projected "
                "ServiceAccount token (serviceAccountToken volume), not a Secret-based one")
        namespace, pod_name = identity.service_account.namespace, identity.pod_name
        pod = self._read(("pod", namespace, pod_name),
                         lambda: self._core_api.read_namespaced_pod(pod_name, namespace, _request_timeout=self._timeout),
                         f"get pod {namespace}/{pod_name}", "get on pods in namespace " + namespace)
        if pod is None:
            raise AgentForbidden(f"the token's pod {namespace}/{pod_name} does not exist")
        uid = (pod.get("metadata") or {}).get("uid")
        if identity.pod_uid and uid and uid != identity.pod_uid:
            raise AgentForbidden(f"the token's pod {namespace}/{identity.pod_name} was replaced (uid {uid})")
        node = (pod.get("spec") or {}).get("nodeName")
        if not node:
            raise AgentForbidden(f"the token's pod {namespace}/{identity.pod_name} is not scheduled on a node")
        return str(node)

    def authorize(self, identity: AgentIdentity, node_id: str) -> str:
        """The node name when `node_id` is the id of the token's node; `AgentForbidden` naming both otherwise."""
        node_name = self.node_of(identity)
        node = self._read(("node", None, node_name),
                          lambda: self._core_api.read_node(node_name, _request_timeout=self._timeout),
                          f"get node {node_name}", "get on nodes")
        if node is None:
            raise AgentForbidden(f"the token's pod runs on node {node_name!r}, which is not a Node of this cluster")
        expected = node_id_of(node)
        if node_id != expected:
            raise AgentForbidden(
                f"this agent's token is for node {node_name!r} (id {expected!r}; {identity.describe()}), "
                f"but its hello claims node {node_id!r}")
        return node_name

    def _read(self, key: tuple, call: Callable[[], Any], what: str, permission: str) -> dict | None:
        """An object as JSON (None when it does not exist), cached for a while."""
        cached = self._objects.get(key)
        if cached is not None:
            return cached or None
        try:
            obj = call()
        except Exception as exc:
            if getattr(exc, "status", None) == 404:
                self._objects.put(key, {}, self._clock() + self._refusal_cache_s)
                return None
            raise _api_problem(exc, what, permission) from exc
        data = self._api_client.sanitize_for_serialization(obj)
        self._objects.put(key, data, self._clock() + self._object_cache_s)
        return data

"""Who this node is when no cluster is asked (the CLI on a node, tests).

`NODE_ID` and `NODE_NAME` (or `KUBERNETES_NODE_NAME`) come from the pod's
downward API; on a bare node both fall back to the hostname. The cluster-aware
lookup (the Node's `nodeID` label) lives in the Kubernetes module.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["LocalIdentity", "local_node_identity"]


@dataclass(frozen=True)
class LocalIdentity:
    node_id: str
    node_name: str


def local_node_identity(env: Mapping[str, str] = os.environ, hostname: str | None = None) -> LocalIdentity:
    host = hostname if hostname is not None else socket.gethostname()
    name = env.get("NODE_NAME") or env.get("KUBERNETES_NODE_NAME") or host
    return LocalIdentity(node_id=env.get("NODE_ID") or host, node_name=name)

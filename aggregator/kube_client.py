"""The aggregator's Kubernetes API client (optional): for stability Events and the Node watch.

Where from, in this order: `--kubeconfig`, `KUBECONFIG`, the pod's service
account (in-cluster). No fallback to `~/.kube/config`: a developer's default
context must not be picked up by accident. Without any of them the features
that need the API are off, which the caller logs once.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["SERVICE_ACCOUNT_DIR", "KubeUnavailable", "load_kube_client", "pod_namespace"]

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class KubeUnavailable(Exception):
    """No usable Kubernetes API configuration."""


def load_kube_client(kubeconfig: str | None = None, *, env: Mapping[str, str] | None = None) -> Any:
    """A `kubernetes.client.ApiClient`; raises `KubeUnavailable` saying why there is none."""
    env = os.environ if env is None else env
    path = kubeconfig or env.get("KUBECONFIG", "").split(os.pathsep)[0].strip() or None
    in_cluster = bool(env.get("KUBERNETES_SERVICE_HOST")) and (SERVICE_ACCOUNT_DIR / "token").is_file()
    if not path and not in_cluster:
        raise KubeUnavailable("not in a pod (no service account) and no kubeconfig (--kubeconfig, KUBECONFIG)")
    from kubernetes import client, config  # late: ~24 MiB, only loaded when configured

    configuration = client.Configuration()
    try:
        if path:
            if not Path(path).expanduser().is_file():
                raise KubeUnavailable(f"kubeconfig {path!r} does not exist or is not a file")
            config.load_kube_config(config_file=str(Path(path).expanduser()), client_configuration=configuration)
        else:
            config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException as e:
        raise KubeUnavailable(f"cannot load the Kubernetes configuration ({path or 'in-cluster'}): {e}") from e
    configuration.retries = 0  # callers back off and retry themselves, and log each failure
    return client.ApiClient(configuration)


def pod_namespace(env: Mapping[str, str] | None = None, default: str = "controllers") -> str:
    """Where this pod runs (for its Events): `AIOS_NAMESPACE`, else the service account's, else `default`."""
    env = os.environ if env is None else env
    value = env.get("AIOS_NAMESPACE", "").strip()
    if value:
        return value
    try:
        return (SERVICE_ACCOUNT_DIR / "namespace").read_text().strip() or default
    except OSError:
        return default

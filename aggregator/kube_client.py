"""The aggregator's Kubernetes API client (optional): for stability Events, the Node watch, onboarding.

Where from, in this order: `--kubeconfig`, `KUBECONFIG`, the pod's service
account (in-cluster); `serve` stops there: a developer's default context must
not be picked up by accident, and without any of them the features that need
the API are off, which the caller logs once. `onboard`, a command operators
run from their own machine as they run kubectl, then also tries
`~/.kube/config` (`home_fallback`). `kubeconfig_search` says the same order in
words for the `--help` texts.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["SERVICE_ACCOUNT_DIR", "KubeUnavailable", "kubeconfig_search", "load_kube_client", "pod_namespace"]

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class KubeUnavailable(Exception):
    """No usable Kubernetes API configuration."""


def kubeconfig_search(*, home_fallback: bool = False) -> str:
    """Where the client comes from when `--kubeconfig` is not given, in words (for --help)."""
    steps = ["KUBECONFIG", "the pod's service account (in-cluster)"] + (["~/.kube/config"] if home_fallback else [])
    return ", then ".join(steps)


def load_kube_client(
    kubeconfig: str | None = None, *, env: Mapping[str, str] | None = None, home_fallback: bool = False
) -> Any:
    """A `kubernetes.client.ApiClient`; raises `KubeUnavailable` saying why there is none."""
    env = os.environ if env is None else env
    path = kubeconfig or env.get("KUBECONFIG", "").split(os.pathsep)[0].strip() or None
    in_cluster = bool(env.get("KUBERNETES_SERVICE_HOST")) and (SERVICE_ACCOUNT_DIR / "token").is_file()
    if not path and not in_cluster and home_fallback and (Path.home() / ".kube" / "config").is_file():
        path = str(Path.home() / ".kube" / "config")
    if not path and not in_cluster:
        tried = "--kubeconfig, " + kubeconfig_search(home_fallback=home_fallback)
        raise KubeUnavailable(f"not in a pod (no service account) and no kubeconfig (tried {tried})")
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

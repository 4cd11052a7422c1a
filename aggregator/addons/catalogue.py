"""The add-ons this system installs: names, where their bases are, what each needs, and its URL.

The manifests themselves are the kustomize bases under `deploy/addons/<name>/` (one
`settings.yaml` with the parameters, `components/` with the options); this module holds what the
code must know about each add-on without reading them: the Service and port its in-cluster URL
names, the `config.urlMap` key the URL is recorded under, and the settings that have no default.
`tests/unit/test_addons_catalogue.py` checks the two agree.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "ADDONS",
    "ADDON_LABEL",
    "DEFAULT_NAMESPACE",
    "FIELD_MANAGER",
    "PART_OF_LABEL",
    "AddOn",
    "AddOnProblem",
    "addon",
    "available_components",
    "bases_dir",
    "choose_components",
    "in_cluster_url",
    "namespace_from_url",
]

ADDON_LABEL = "addons.aios/name"  # every object of an add-on carries it: status and remove select by it
PART_OF_LABEL = ("app.kubernetes.io/part-of", "aios-addons")
DEFAULT_NAMESPACE = "aios-addons"
FIELD_MANAGER = "aios-addons"  # server-side apply's field manager: the fields our install owns


class AddOnProblem(ValueError):
    """An add-on, option or parameter that cannot be used as given; the message says which."""


@dataclass(frozen=True)
class AddOn:
    name: str
    summary: str
    url_map_key: str  # config.urlMap.<key> in the cluster document
    service: str  # the Service whose address is the add-on's URL
    port: int
    scheme: str = "http"
    tls_component: str | None = None  # with this component on, the URL is https
    required: tuple[str, ...] = ()  # settings that must not be empty
    from_cluster_document: Mapping[str, str] = field(default_factory=dict)  # setting -> document field
    # a setting still pointing at a bundled part that is left out: (component, setting, bundled value)
    bundled_defaults: tuple[tuple[str, str, str], ...] = ()

    @property
    def settings_configmap(self) -> str:
        return f"{self.name}-settings"

    def url(self, namespace: str, components: Sequence[str], cluster_domain: str = "cluster.local") -> str:
        return in_cluster_url(self, namespace, components, cluster_domain)

    def problems(self, settings: Mapping[str, str], components: Sequence[str]) -> list[str]:
        """What is wrong with these settings for these components (empty: nothing)."""
        found = [f"{key}: required (--set {key}=...)" for key in self.required if not str(settings.get(key, "")).strip()]
        for component, key, bundled_value in self.bundled_defaults:
            if component not in components and settings.get(key) == bundled_value:
                found.append(f"{key}: still {bundled_value!r}, the bundled part left out by --without "
                             f"{component.rsplit('/', 1)[-1]}; point it at yours (--set {key}=...)")
        return found


ADDONS: tuple[AddOn, ...] = (
    AddOn(
        name="container-registry",
        summary="CNCF distribution registry (registry:2) on a PVC; optional htpasswd auth and TLS",
        url_map_key="containerRegistry",
        service="container-registry",
        port=5000,
        tls_component="components/tls",
    ),
    AddOn(
        name="assets-registry",
        summary="the network's assets registry; bundled MongoDB and MinIO unless pointed at existing ones",
        url_map_key="assetsRegistry",
        service="assets-registry",
        port=4000,
        bundled_defaults=(("components/bundled-minio", "S3_ENDPOINT_URL", "http://assets-registry-minio:9000"),),
    ),
    AddOn(
        name="inference-server",
        summary="the network's inference server (gRPC) with its Redis; cluster id from the cluster document",
        url_map_key="inferenceServer",
        service="inference-server",
        port=50052,
        scheme="grpc",
        required=("CLUSTER_ID", "ADHOC_INSTANCE_ID", "BLOCKS_DB_URL", "SEARCH_SERVER_API_URL"),
        from_cluster_document={"CLUSTER_ID": "id"},
    ),
)


def addon(name: str) -> AddOn:
    for candidate in ADDONS:
        if candidate.name == name:
            return candidate
    raise AddOnProblem(f"no add-on {name!r}; known: {', '.join(a.name for a in ADDONS)}")


def in_cluster_url(item: AddOn, namespace: str, components: Sequence[str], cluster_domain: str = "cluster.local") -> str:
    scheme = "https" if item.tls_component and item.tls_component in components else item.scheme
    return f"{scheme}://{item.service}.{namespace}.svc.{cluster_domain}:{item.port}"


def namespace_from_url(url: object) -> str | None:
    """The namespace in a URL `in_cluster_url` wrote (`scheme://service.NAMESPACE.svc...`), else None."""
    if not isinstance(url, str) or "://" not in url:
        return None
    host = url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[0]
    parts = host.split(".")
    return parts[1] if len(parts) >= 3 and parts[2] == "svc" and parts[1] else None


def bases_dir(explicit: str | Path | None = None, env: Mapping[str, str] | None = None) -> Path:
    """Where the kustomize bases are: the argument, `AIOS_ADDONS_DIR`, else this checkout's deploy/addons."""
    env = os.environ if env is None else env
    chosen = explicit or env.get("AIOS_ADDONS_DIR")
    path = Path(chosen) if chosen else Path(__file__).resolve().parents[2] / "deploy" / "addons"
    if not path.is_dir():
        raise AddOnProblem(f"the add-on bases are not at {path} (pass --bases DIR: the deploy/addons folder of a checkout)")
    return path


def available_components(base: Path) -> list[str]:
    """The base's optional parts: `components/<name>` folders, as kustomization.yaml names them."""
    folder = base / "components"
    if not folder.is_dir():
        return []
    return sorted(f"components/{p.name}" for p in folder.iterdir() if (p / "kustomization.yaml").is_file())


def choose_components(listed: Sequence[str], with_: Sequence[str], without: Sequence[str],
                      available: Sequence[str]) -> list[str]:
    """The listed (default) components minus `without`, plus `with_` (short names, as `--with tls`)."""
    def full(name: str, flag: str) -> str:
        path = name if name.startswith("components/") else f"components/{name}"
        if path not in available:
            known = ", ".join(a.rsplit("/", 1)[-1] for a in available) or "none"
            raise AddOnProblem(f"{flag} {name}: no such option (this add-on has: {known})")
        return path

    dropped = {full(n, "--without") for n in without}
    added = [full(n, "--with") for n in with_]
    both = dropped & set(added)
    if both:
        raise AddOnProblem(f"both --with and --without {', '.join(sorted(b.rsplit('/', 1)[-1] for b in both))}")
    chosen = [c for c in listed if c not in dropped]
    chosen.extend(c for c in added if c not in chosen)
    return chosen

"""Rendering an add-on's kustomize base in Python, so that `addons install` needs no kubectl.

Only the part of kustomize the bases under `deploy/addons/` use, done the way kustomize 5 does
it, and nothing else: a kustomization or component using any other field, patch directive or
field-path form is refused by name (`UnsupportedKustomization`), never rendered differently.
`tests/unit/test_addons_render.py` checks that the result equals `kubectl kustomize` for every
add-on and every combination of its components.

What is covered, in kustomize's order:
1. `resources`: YAML files (several documents each), in order;
2. `components`: each one's `resources`, then its `patches`, then its `replacements`, applied to
   everything accumulated so far;
3. the kustomization's own `patches` (strategic merge, from a file, targeting the object the
   patch names), then `namespace`, then `replacements`.

A strategic merge patch merges maps, deletes a key given `null`, and merges the lists Kubernetes
merges by key (containers, initContainers, env, volumes by `name`; volumeMounts by `mountPath`)
the way kustomize does: the patch's entries first, in the patch's order, merged with the entry of
the same key, then the entries the patch does not name, in their order. Any other list is
replaced whole.

`settings` (a ConfigMap name and values) replaces values in that ConfigMap as loaded from the
files, before anything else runs: the same as editing the add-on's `settings.yaml`.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = ["KustomizeError", "UnsupportedKustomization", "components_listed", "render"]

_KUSTOMIZATION_FIELDS = {"apiVersion", "kind", "namespace", "resources", "components", "patches", "replacements"}
_COMPONENT_FIELDS = {"apiVersion", "kind", "resources", "patches", "replacements"}
MERGE_KEYS = {"containers": "name", "initContainers": "name", "env": "name", "volumes": "name",
              "volumeMounts": "mountPath"}
CLUSTER_SCOPED = frozenset({"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume", "StorageClass",
                            "CustomResourceDefinition", "PriorityClass"})
_SELECTOR = re.compile(r"^\[([A-Za-z0-9_.-]+)=(.*)\]$")


class KustomizeError(ValueError):
    """The base cannot be rendered: says which file and what."""


class UnsupportedKustomization(KustomizeError):
    """The base uses a kustomize feature this renderer does not have (use `kubectl kustomize`)."""


@dataclass(frozen=True)
class _Id:
    kind: str
    name: str


def _id(obj: Mapping[str, Any]) -> _Id:
    return _Id(str(obj.get("kind")), str((obj.get("metadata") or {}).get("name")))


def _load_kustomization(directory: Path, *, component: bool) -> dict:
    path = directory / "kustomization.yaml"
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as e:
        raise KustomizeError(f"{path}: cannot read ({e.strerror})") from e
    except yaml.YAMLError as e:
        raise KustomizeError(f"{path}: not valid YAML ({e})") from e
    if not isinstance(data, dict):
        raise KustomizeError(f"{path}: must be a mapping")
    expected_kind = "Component" if component else "Kustomization"
    if data.get("kind", "Kustomization") != expected_kind:
        raise KustomizeError(f"{path}: kind must be {expected_kind}, got {data.get('kind')!r}")
    allowed = _COMPONENT_FIELDS if component else _KUSTOMIZATION_FIELDS
    for key in data:
        if key not in allowed:
            raise UnsupportedKustomization(f"{path}: field {key!r} is not supported here (render it with kubectl kustomize)")
    return data


def components_listed(directory: str | Path) -> list[str]:
    """The components the base's kustomization.yaml lists (its defaults), as written."""
    data = _load_kustomization(Path(directory), component=False)
    return [str(c) for c in data.get("components") or []]


def _load_documents(path: Path) -> list[dict]:
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except OSError as e:
        raise KustomizeError(f"{path}: cannot read ({e.strerror})") from e
    except yaml.YAMLError as e:
        raise KustomizeError(f"{path}: not valid YAML ({e})") from e
    for i, doc in enumerate(docs):
        if not isinstance(doc, dict) or not doc.get("kind") or not (doc.get("metadata") or {}).get("name"):
            raise KustomizeError(f"{path}: document {i + 1} is not a Kubernetes object with a kind and a metadata.name")
    return docs


def _load_resources(directory: Path, entries: Iterable[Any], where: Path) -> list[dict]:
    objects: list[dict] = []
    for entry in entries:
        path = directory / str(entry)
        if path.is_dir():
            raise UnsupportedKustomization(f"{where}: resource {entry!r} is a directory (only files are supported)")
        objects.extend(_load_documents(path))
    return objects


# ------------------------------------------------------------------ strategic merge


def strategic_merge(target: Any, patch: Any, field: str = "") -> Any:
    """`target` with `patch` merged in (neither is modified)."""
    if isinstance(patch, dict):
        for key in patch:
            if isinstance(key, str) and key.startswith("$"):
                raise UnsupportedKustomization(f"patch directive {key!r} is not supported")
        if not isinstance(target, dict):
            return {k: strategic_merge(None, v, k) for k, v in patch.items() if v is not None}
        merged = copy.deepcopy(target)
        for key, value in patch.items():
            if value is None:
                merged.pop(key, None)
            elif key in merged:
                merged[key] = strategic_merge(merged[key], value, key)
            else:
                merged[key] = strategic_merge(None, value, key)
        return merged
    if isinstance(patch, list):
        merge_key = MERGE_KEYS.get(field)
        if merge_key is None or not isinstance(target, list):
            return [strategic_merge(None, item, "") if isinstance(item, dict) else copy.deepcopy(item) for item in patch]
        by_key = {item.get(merge_key): item for item in target if isinstance(item, dict)}
        named = []
        for item in patch:
            if not isinstance(item, dict) or merge_key not in item:
                raise KustomizeError(f"patch list {field!r}: every entry needs its {merge_key!r}")
            named.append(item[merge_key])
            base = by_key.get(item[merge_key])
            merged_item = strategic_merge(base, item, "") if base is not None else strategic_merge(None, item, "")
            by_key[item[merge_key]] = merged_item
        result = [by_key[key] for key in named]
        result.extend(item for item in target if isinstance(item, dict) and item.get(merge_key) not in set(named))
        return result
    return copy.deepcopy(patch)


def _apply_patches(objects: list[dict], entries: Iterable[Any], directory: Path, where: Path) -> list[dict]:
    for entry in entries:
        if not isinstance(entry, dict) or set(entry) != {"path"}:
            raise UnsupportedKustomization(f"{where}: only patches given as {{path: FILE}} are supported, got {entry!r}")
        path = directory / str(entry["path"])
        for patch in _load_documents(path):
            wanted = _id(patch)
            matches = [i for i, obj in enumerate(objects) if _id(obj) == wanted]
            if len(matches) != 1:
                raise KustomizeError(f"{path}: the patch targets {wanted.kind}/{wanted.name}, "
                                     f"which the base has {len(matches)} times")
            objects[matches[0]] = strategic_merge(objects[matches[0]], patch)
    return objects


# ------------------------------------------------------------------ replacements


def _segments(field_path: str) -> list[str]:
    """`a.b.[name=x].c.0` -> ['a', 'b', '[name=x]', 'c', '0'] (dots inside [...] kept)."""
    parts, depth, current = [], 0, ""
    for char in field_path:
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
        if char == "." and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    if any(not p for p in parts):
        raise UnsupportedKustomization(f"field path {field_path!r}: empty segment")
    return parts


def _walk(node: Any, segments: Sequence[str], field_path: str, what: str) -> tuple[Any, Any]:
    """(container, key) of the field `segments` names; KustomizeError when it is missing."""
    parent: Any = None
    key: Any = None
    for segment in segments:
        if parent is not None:
            node = parent[key]
        selector = _SELECTOR.match(segment)
        if selector:
            field, value = selector.groups()
            if not isinstance(node, list):
                raise KustomizeError(f"unable to find field {field_path!r} in {what}")
            index = next((i for i, item in enumerate(node) if isinstance(item, dict) and str(item.get(field)) == value), None)
            if index is None:
                raise KustomizeError(f"unable to find field {field_path!r} in {what}")
            parent, key = node, index
        elif segment.isdigit() and isinstance(node, list):
            if int(segment) >= len(node):
                raise KustomizeError(f"unable to find field {field_path!r} in {what}")
            parent, key = node, int(segment)
        elif isinstance(node, dict) and segment in node:
            parent, key = node, segment
        else:
            raise KustomizeError(f"unable to find field {field_path!r} in {what}")
    return parent, key


def _apply_replacements(objects: list[dict], entries: Iterable[Any], where: Path) -> list[dict]:
    for entry in entries:
        if not isinstance(entry, dict) or set(entry) - {"source", "targets"}:
            raise UnsupportedKustomization(f"{where}: replacements support only source and targets, got {entry!r}")
        source = entry.get("source") or {}
        if set(source) - {"kind", "name", "fieldPath"}:
            raise UnsupportedKustomization(f"{where}: replacement source supports kind, name, fieldPath; got {source!r}")
        wanted = _Id(str(source.get("kind")), str(source.get("name")))
        found = [obj for obj in objects if _id(obj) == wanted]
        if len(found) != 1:
            raise KustomizeError(f"{where}: replacement source {wanted.kind}/{wanted.name} found {len(found)} times")
        container, key = _walk(found[0], _segments(str(source.get("fieldPath", "metadata.name"))),
                               str(source.get("fieldPath")), "replacement source")
        value = container[key]
        if isinstance(value, (dict, list)):
            raise UnsupportedKustomization(f"{where}: replacement source {source.get('fieldPath')} is not a scalar")
        for target in entry.get("targets") or []:
            if not isinstance(target, dict) or set(target) - {"select", "fieldPaths"}:
                raise UnsupportedKustomization(f"{where}: replacement targets support select and fieldPaths, got {target!r}")
            select = target.get("select") or {}
            if set(select) - {"kind", "name"}:
                raise UnsupportedKustomization(f"{where}: replacement select supports kind and name, got {select!r}")
            for obj in objects:
                if select.get("kind", obj["kind"]) != obj["kind"] or select.get("name", _id(obj).name) != _id(obj).name:
                    continue
                for field_path in target.get("fieldPaths") or []:
                    parent, leaf = _walk(obj, _segments(str(field_path)), str(field_path), "replacement target")
                    parent[leaf] = copy.deepcopy(value)
    return objects


# ------------------------------------------------------------------ namespace


def _set_namespace(objects: list[dict], namespace: str, where: Path) -> list[dict]:
    for obj in objects:
        if obj["kind"] in CLUSTER_SCOPED:
            continue
        obj.setdefault("metadata", {})["namespace"] = namespace
        if obj["kind"] in ("RoleBinding", "ClusterRoleBinding"):
            for subject in obj.get("subjects") or []:
                if subject.get("kind") == "ServiceAccount" and not subject.get("namespace"):
                    raise UnsupportedKustomization(
                        f"{where}: {obj['kind']}/{obj['metadata']['name']}: give the ServiceAccount subject a namespace")
    return objects


# ------------------------------------------------------------------ the whole


def _override_settings(objects: list[dict], settings: tuple[str, Mapping[str, str]], where: Path) -> None:
    name, values = settings
    found = [obj for obj in objects if _id(obj) == _Id("ConfigMap", name)]
    if len(found) != 1:
        raise KustomizeError(f"{where}: the settings ConfigMap {name!r} is not among the resources")
    data = found[0].setdefault("data", {})
    for key, value in values.items():
        if key not in data:
            raise KustomizeError(f"{where}: {name} has no setting {key!r} (known: {', '.join(sorted(data))})")
        data[key] = str(value)


def render(
    directory: str | Path,
    *,
    components: Sequence[str] | None = None,
    namespace: str | None = None,
    settings: tuple[str, Mapping[str, str]] | None = None,
) -> list[dict]:
    """The objects `kubectl kustomize DIRECTORY` prints, in the order kustomize accumulates them.

    `components`: these instead of the ones listed (relative paths, as kustomization.yaml writes
    them); `namespace`: this instead of the one written; `settings`: see the module's docstring.
    """
    base = Path(directory)
    where = base / "kustomization.yaml"
    data = _load_kustomization(base, component=False)
    objects = _load_resources(base, data.get("resources") or [], where)
    if settings is not None:
        _override_settings(objects, settings, where)
    for entry in data.get("components") or [] if components is None else components:
        component_dir = base / str(entry)
        component_where = component_dir / "kustomization.yaml"
        component = _load_kustomization(component_dir, component=True)
        objects.extend(_load_resources(component_dir, component.get("resources") or [], component_where))
        objects = _apply_patches(objects, component.get("patches") or [], component_dir, component_where)
        objects = _apply_replacements(objects, component.get("replacements") or [], component_where)
    objects = _apply_patches(objects, data.get("patches") or [], base, where)
    chosen_namespace = namespace if namespace is not None else data.get("namespace")
    if chosen_namespace:
        objects = _set_namespace(objects, str(chosen_namespace), where)
    objects = _apply_replacements(objects, data.get("replacements") or [], where)
    seen: set[_Id] = set()
    for obj in objects:
        if _id(obj) in seen:
            raise KustomizeError(f"{where}: {obj['kind']}/{obj['metadata']['name']} is defined twice")
        seen.add(_id(obj))
    return objects

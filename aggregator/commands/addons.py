"""`aios-aggregator addons list | install NAME | status [NAME] | remove NAME`

Deploys the guide's add-ons (container registry, assets registry, inference server) from the
kustomize bases in deploy/addons/ with the operator's kubeconfig: rendered here (no kubectl
needed), written by server-side apply with the field manager `aios-addons`, only what changes.
`install` records the add-on's in-cluster URL in the cluster document (`config.urlMap.<key>`)
through the aggregator's `PATCH /clusters/update/<id>`, which the `update_cluster` pre-check
governs, then shows the rollout converging. `remove` deletes the objects carrying the add-on's
label, its data volumes only with --delete-data. docs/addons.md has each add-on's parameters.

Exit codes: 0 done (and ready); 1 the Kubernetes API or the aggregator failed (a forbidden verb
and resource named); 2 bad name, option or parameter (nothing written); 3 not ready within
--wait-timeout, or (status) not ready / not installed; 4 installed, but the URL was not recorded
(the pre-check refused it, or the aggregator failed).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from aggregator.addons.catalogue import (
    ADDONS,
    DEFAULT_NAMESPACE,
    FIELD_MANAGER,
    AddOn,
    AddOnProblem,
    addon,
    available_components,
    bases_dir,
    choose_components,
)
from aggregator.addons.kube import KubeError, KubeObjects, load_operator_client
from aggregator.addons.lifecycle import AddOnLifecycle
from aggregator.addons.plan import Change
from aggregator.addons.render import KustomizeError, components_listed, render
from aggregator.addons.status import AddOnStatus
from aggregator.addons.url_map import (
    AggregatorError,
    ClusterDocumentClient,
    UpdateRefused,
    url_map_change,
    url_map_removal,
)
from aggregator.auth import operator_token

__all__ = ["EXIT_KUBE", "EXIT_NOT_READY", "EXIT_OK", "EXIT_URL_MAP", "EXIT_USAGE", "register", "run_install",
           "run_list", "run_remove", "run_status"]

EXIT_OK, EXIT_KUBE, EXIT_USAGE, EXIT_NOT_READY, EXIT_URL_MAP = 0, 1, 2, 3, 4
CLUSTER_CONFIGMAP = ("controllers", "aios-cluster", "AIOS_CLUSTER_ID")  # written by deploy/kustomization.yaml


# ------------------------------------------------------------------ arguments


def _kube_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--namespace", "-n", default=DEFAULT_NAMESPACE, help=f"where the add-on lives (default {DEFAULT_NAMESPACE})")
    p.add_argument("--kubeconfig", default=None,
                   help="the operator's kubeconfig (default: KUBECONFIG, ~/.kube/config, in-cluster)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per API request (default 30)")


def _aggregator_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--aggregator-url", default=os.environ.get("AIOS_AGGREGATOR_URL"),
                   help="the aggregator's HTTP API, e.g. http://localhost:7002 through kubectl port-forward "
                        "(env AIOS_AGGREGATOR_URL): the cluster document's config.urlMap is updated through it")
    p.add_argument("--token", default=None, help="bearer token for the aggregator (default: AIOS_TOKEN / AIOS_TOKEN_FILE)")
    p.add_argument("--cluster-id", default=os.environ.get("AIOS_CLUSTER_ID"),
                   help="the cluster's id (env AIOS_CLUSTER_ID; default: ConfigMap controllers/aios-cluster)")
    p.add_argument("--no-record", action="store_true",
                   help="do not touch the cluster document's config.urlMap (no aggregator needed)")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `addons` to `aios-aggregator`'s subcommands."""
    parser = sub.add_parser("addons", help="deploy add-ons: container registry, assets registry, inference server",
                            description=__doc__.split("\n\n")[1])
    actions = parser.add_subparsers(dest="addons_action", required=True)

    p = actions.add_parser("list", help="the add-ons, their options and parameters")
    p.add_argument("--bases", default=None, help="the deploy/addons folder (env AIOS_ADDONS_DIR; default: this checkout's)")
    p.set_defaults(run=run_list)

    p = actions.add_parser("install", help="install or update an add-on (server-side apply of what changed)")
    p.add_argument("name", help=", ".join(a.name for a in ADDONS))
    p.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                   help="a parameter of the add-on's settings.yaml (repeatable)")
    p.add_argument("--with", dest="with_", action="append", default=[], metavar="OPTION",
                   help="add an optional component (repeatable), e.g. --with tls")
    p.add_argument("--without", action="append", default=[], metavar="OPTION",
                   help="leave out a component listed by default (repeatable), e.g. --without bundled-minio")
    p.add_argument("--dry-run", action="store_true", help="print what would change (with diffs) and change nothing")
    p.add_argument("--no-wait", action="store_true", help="do not wait for the rollout")
    p.add_argument("--wait-timeout", type=float, default=300.0, help="seconds to wait for ready (default 300)")
    p.add_argument("--cluster-domain", default="cluster.local", help="the cluster's DNS domain (default cluster.local)")
    p.add_argument("--bases", default=None, help="the deploy/addons folder (env AIOS_ADDONS_DIR; default: this checkout's)")
    _kube_args(p)
    _aggregator_args(p)
    p.set_defaults(run=run_install)

    p = actions.add_parser("status", help="which objects of an add-on (or of all) are ready, and why not")
    p.add_argument("name", nargs="?", help="one add-on (default: all)")
    _kube_args(p)
    p.set_defaults(run=run_status)

    p = actions.add_parser("remove", help="delete the objects carrying the add-on's label (data kept)")
    p.add_argument("name", help=", ".join(a.name for a in ADDONS))
    p.add_argument("--delete-data", action="store_true", help="delete its PersistentVolumeClaims too (the data is lost)")
    p.add_argument("--dry-run", action="store_true", help="print what would be deleted and delete nothing")
    _kube_args(p)
    _aggregator_args(p)
    p.set_defaults(run=run_remove)


# ------------------------------------------------------------------ pieces


def _parse_settings(pairs: Sequence[str]) -> dict[str, str]:
    settings: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise AddOnProblem(f"--set {pair!r}: expected KEY=VALUE")
        settings[key.strip()] = value
    return settings


def _kube(args: argparse.Namespace) -> KubeObjects:
    return KubeObjects(load_operator_client(args.kubeconfig), field_manager=FIELD_MANAGER, timeout_s=args.timeout)


def _cluster_id(args: argparse.Namespace, kube: KubeObjects) -> str:
    if args.cluster_id:
        return str(args.cluster_id)
    namespace, name, key = CLUSTER_CONFIGMAP
    configmap = kube.get("ConfigMap", namespace, name)
    value = ((configmap or {}).get("data") or {}).get(key)
    if not value:
        raise AddOnProblem(f"which cluster? pass --cluster-id (or AIOS_CLUSTER_ID): ConfigMap {namespace}/{name} "
                           f"has no {key}" + ("" if configmap else " (not found)"))
    return str(value)


def _recorder(args: argparse.Namespace, kube: KubeObjects, err: TextIO) -> tuple[ClusterDocumentClient, str] | None:
    """The aggregator client and cluster id, or None with --no-record; AddOnProblem without either."""
    if args.no_record:
        return None
    if not args.aggregator_url:
        raise AddOnProblem("the add-on's URL goes into the cluster document through the aggregator: pass "
                           "--aggregator-url http://HOST:PORT (or AIOS_AGGREGATOR_URL), or --no-record")
    try:
        client = ClusterDocumentClient(args.aggregator_url, token=operator_token(args.token, err), timeout_s=args.timeout)
    except ValueError as e:
        raise AddOnProblem(f"--aggregator-url: {e}") from e
    return client, _cluster_id(args, kube)


def _settings_of(objects: Sequence[dict[str, Any]], item: AddOn) -> dict[str, str]:
    for obj in objects:
        if obj["kind"] == "ConfigMap" and obj["metadata"]["name"] == item.settings_configmap:
            return {str(k): str(v) for k, v in (obj.get("data") or {}).items()}
    return {}


def _short(components: Sequence[str]) -> str:
    return ", ".join(c.rsplit("/", 1)[-1] for c in components) or "none"


def _print_plan(item: AddOn, namespace: str, components: Sequence[str], changes: Sequence[Change], *,
                diffs: bool, out: TextIO) -> None:
    counts = {a: sum(1 for c in changes if c.action == a) for a in ("create", "configure", "unchanged")}
    print(f"{item.name} in namespace {namespace} (options: {_short(components)}): {counts['create']} to create, "
          f"{counts['configure']} to change, {counts['unchanged']} unchanged", file=out)
    for change in changes:
        print(f"  {change.action:<10} {change.label}", file=out)
        if diffs and change.diff:
            for line in change.diff.rstrip("\n").splitlines():
                print(f"      {line}", file=out)


def _print_status(status: AddOnStatus, out: TextIO) -> None:
    if not status.installed:
        print(f"{status.name} (namespace {status.namespace}): not installed", file=out)
        return
    print(f"{status.name} (namespace {status.namespace}): {'ready' if status.ready else 'NOT READY'}", file=out)
    width = max(len(o.line()) for o in status.objects)
    for obj in status.objects:
        print(f"  {obj.line():<{width}}  {obj.state}", file=out)
        for problem in obj.problems:
            print(f"      {problem}", file=out)


def _fail(error: Exception, err: TextIO, *, code: int) -> int:
    print(f"aios-aggregator addons: {error}", file=err)
    return code


# ------------------------------------------------------------------ list


def run_list(args: argparse.Namespace, *, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    try:
        root = bases_dir(args.bases)
    except AddOnProblem as e:
        return _fail(e, err, code=EXIT_USAGE)
    for item in ADDONS:
        base = root / item.name
        defaults = components_listed(base)
        options = [("+" if c in defaults else "") + c.rsplit("/", 1)[-1] for c in available_components(base)]
        print(f"{item.name}: {item.summary}", file=out)
        print(f"  config.urlMap.{item.url_map_key} = {item.url(DEFAULT_NAMESPACE, defaults)}", file=out)
        print(f"  options: {', '.join(options) or 'none'} (+ = on unless --without)", file=out)
        required = ", ".join(item.required) or "none"
        print(f"  parameters: {base / 'settings.yaml'} (required: {required})", file=out)
    return EXIT_OK


# ------------------------------------------------------------------ install


def run_install(args: argparse.Namespace, *, out: TextIO = sys.stdout, err: TextIO = sys.stderr,
                sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> int:
    # 1. what to install, checked before anything is read from or written to the cluster
    try:
        item = addon(args.name)
        base = bases_dir(args.bases) / item.name
        overrides = _parse_settings(args.settings)
        components = choose_components(components_listed(base), args.with_, args.without, available_components(base))
    except (AddOnProblem, KustomizeError) as e:
        return _fail(e, err, code=EXIT_USAGE)

    try:
        kube = _kube(args)
        recorder = _recorder(args, kube, err)
        document: dict[str, Any] | None = None
        if recorder is not None:
            client, cluster_id = recorder
            document = client.read(cluster_id)
        # 2. settings that come from the cluster document (the inference server's CLUSTER_ID)
        for key, document_field in item.from_cluster_document.items():
            if key in overrides:
                continue
            if document is None:
                raise AddOnProblem(f"{key}: taken from the cluster document's {document_field!r}, which needs "
                                   f"--aggregator-url; or give it: --set {key}=...")
            overrides[key] = str(document.get(document_field, ""))
        objects = render(base, components=components, namespace=args.namespace,
                         settings=(item.settings_configmap, overrides))
        problems = item.problems(_settings_of(objects, item), components)
        if problems:
            raise AddOnProblem(f"{item.name}: " + "; ".join(problems) + "; nothing was written")
        lifecycle = AddOnLifecycle(kube, clock=clock, sleep=sleep)
        # 3. the plan: what the API server says an apply would change
        changes = lifecycle.plan(objects, args.namespace)
    except (AddOnProblem, KustomizeError) as e:
        return _fail(e, err, code=EXIT_USAGE)
    except (KubeError, AggregatorError) as e:
        return _fail(e, err, code=EXIT_KUBE)

    url = item.url(args.namespace, components, args.cluster_domain)
    url_change = url_map_change(document, item.url_map_key, url) if document is not None else None
    _print_plan(item, args.namespace, components, changes, diffs=args.dry_run, out=out)
    if recorder is not None:
        state = "to record" if url_change else "already recorded"
        print(f"  config.urlMap.{item.url_map_key} = {url} ({state})", file=out)
    if args.dry_run:
        print("dry run: nothing was changed", file=out)
        return EXIT_OK

    # 4. apply, record, wait
    try:
        applied = lifecycle.apply(changes, on_applied=lambda c: print(f"applied {c.label}", file=out))
    except KubeError as e:
        return _fail(e, err, code=EXIT_KUBE)
    if not applied:
        print(f"{item.name}: nothing to change", file=out)
    code = EXIT_OK
    if recorder is not None and url_change is not None:
        code = _record(recorder, url_change, f"config.urlMap.{item.url_map_key} = {url}", out, err)

    if args.no_wait:
        return code
    try:
        final = lifecycle.wait_ready(item, args.namespace, timeout_s=args.wait_timeout,
                                     on_progress=lambda _s, lines: print("\n".join(f"  {line}" for line in lines), file=out))
    except KubeError as e:
        return _fail(e, err, code=EXIT_KUBE)
    if final.ready:
        print(f"{item.name} is ready: {url}", file=out)
        return code
    print(f"{item.name} is not ready after {args.wait_timeout:g} s; see above, or: aios-aggregator addons status "
          f"{item.name} -n {args.namespace}", file=err)
    return code or EXIT_NOT_READY


def _record(recorder: tuple[ClusterDocumentClient, str], change: dict[str, Any], what: str, out: TextIO,
            err: TextIO) -> int:
    client, cluster_id = recorder
    try:
        client.update(cluster_id, change)
    except UpdateRefused as e:
        print(f"the aggregator refused to update cluster {cluster_id}'s document ({what}): {e}; "
              "config.urlMap is unchanged", file=err)
        return EXIT_URL_MAP
    except AggregatorError as e:
        print(f"{what} was not recorded in cluster {cluster_id}'s document: {e}", file=err)
        return EXIT_URL_MAP
    print(f"recorded in cluster {cluster_id}'s document: {what}", file=out)
    return EXIT_OK


# ------------------------------------------------------------------ status


def run_status(args: argparse.Namespace, *, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    try:
        items = [addon(args.name)] if args.name else list(ADDONS)
    except AddOnProblem as e:
        return _fail(e, err, code=EXIT_USAGE)
    try:
        lifecycle = AddOnLifecycle(_kube(args))
        statuses = [lifecycle.status(item, args.namespace) for item in items]
    except KubeError as e:
        return _fail(e, err, code=EXIT_KUBE)
    for status in statuses:
        _print_status(status, out)
    if args.name:
        return EXIT_OK if statuses[0].ready else EXIT_NOT_READY
    return EXIT_OK if all(s.ready for s in statuses if s.installed) else EXIT_NOT_READY


# ------------------------------------------------------------------ remove


def run_remove(args: argparse.Namespace, *, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    try:
        item = addon(args.name)
    except AddOnProblem as e:
        return _fail(e, err, code=EXIT_USAGE)
    try:
        kube = _kube(args)
        recorder = _recorder(args, kube, err)
        lifecycle = AddOnLifecycle(kube)
        removal = lifecycle.removal(item, args.namespace, delete_data=args.delete_data)
        document = recorder[0].read(recorder[1]) if recorder is not None else None
    except AddOnProblem as e:
        return _fail(e, err, code=EXIT_USAGE)
    except (KubeError, AggregatorError) as e:
        return _fail(e, err, code=EXIT_KUBE)

    if not removal.delete and not removal.keep:
        print(f"{item.name}: nothing carries its label in namespace {args.namespace}", file=out)
    for obj in removal.delete:
        print(f"  delete  {obj['kind'].lower()}/{obj['metadata']['name']}", file=out)
    for obj in removal.keep:
        print(f"  keep    {obj['kind'].lower()}/{obj['metadata']['name']} (data; --delete-data deletes it)", file=out)
    url_change = url_map_removal(document, item.url_map_key) if document is not None else None
    if url_change is not None:
        print(f"  config.urlMap.{item.url_map_key}: to leave out of the cluster document", file=out)
    if args.dry_run:
        print("dry run: nothing was deleted", file=out)
        return EXIT_OK
    try:
        lifecycle.remove(removal, on_deleted=lambda obj, gone: print(
            f"deleted {obj['kind'].lower()}/{obj['metadata']['name']}" + ("" if gone else " (already gone)"), file=out))
    except KubeError as e:
        return _fail(e, err, code=EXIT_KUBE)
    if recorder is not None and url_change is not None:
        return _record(recorder, url_change, f"config.urlMap.{item.url_map_key} left out", out, err)
    return EXIT_OK

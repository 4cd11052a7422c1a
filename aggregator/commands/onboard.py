"""`aios-aggregator onboard config.json [--onboard --api-url URL] [--output DIR] ...`

Validate the operator's config.json, fill `nodes` and the totals from what
the agents measured (the aggregator), else from the Kubernetes API, write
`<cluster_id>_populated.json`, and with `--onboard` register it with the
network's parser. Nothing is posted when anything is invalid. The parser's
answer is printed as received; a refusal verbatim. Exit codes: 0 success,
1 the parser refused, failed or could not be reached, 2 bad config or usage,
3 no node data (neither the aggregator nor Kubernetes answered).

Once the parser accepted the cluster, the document is stored in the
aggregator (gRPC `ClusterDocuments.PutClusterDocument`, or straight into its
SQLite file with `--db` when run inside the aggregator's pod); from then on
the aggregator enrolls nodes that join later.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from aggregator.auth import operator_token
from aggregator.kube_client import kubeconfig_search
from aggregator.onboarding.document import populate_document
from aggregator.onboarding.errors import (
    ConfigInvalid,
    NodeSourceUnavailable,
    OnboardingError,
    ParserFailed,
    ParserRefused,
    ParserUnreachable,
)
from aggregator.onboarding.gather import gather_nodes
from aggregator.onboarding.parser_client import ParserClient
from aggregator.onboarding.sources import read_from_aggregator, read_kube_nodes, store_in_aggregator
from aggregator.onboarding.validate import load_config

__all__ = ["add_arguments", "main", "register", "run", "write_document"]

EXIT_OK, EXIT_PARSER, EXIT_INVALID, EXIT_NO_NODES = 0, 1, 2, 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="the cluster's config.json")
    parser.add_argument("--onboard", action="store_true",
                        help="register the populated document with the network's parser")
    parser.add_argument("--api-url", default=os.environ.get("AIOS_API_URL"),
                        help="the network's parser API URL (env AIOS_API_URL)")
    parser.add_argument("--output", default=".", help="folder for <cluster_id>_populated.json (default: .)")
    parser.add_argument("--aggregator", default=os.environ.get("AIOS_AGGREGATOR_ADDR"),
                        help="aggregator gRPC address host:port (env AIOS_AGGREGATOR_ADDR)")
    parser.add_argument("--token", default=None,
                        help="bearer token for the aggregator (default: AIOS_TOKEN / AIOS_TOKEN_FILE)")
    parser.add_argument("--kubeconfig", default=None,
                        help=f"kubeconfig for the Kubernetes API (default: {kubeconfig_search(home_fallback=True)})")
    parser.add_argument("--no-kubernetes", action="store_true",
                        help="do not ask the Kubernetes API (agents' data only)")
    parser.add_argument("--db", default=None,
                        help="the aggregator's SQLite file, to store the document directly (inside its pod)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request (default 30)")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `onboard` to `aios-aggregator`'s subcommands."""
    parser = sub.add_parser("onboard", help="validate config.json, fill it from measured data, register it",
                            description=__doc__.split("\n\n")[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    parser.set_defaults(run=run)


def write_document(document: Mapping[str, Any], output_dir: str | Path) -> Path:
    """Write `<id>_populated.json` whole or not at all (temp file + rename)."""
    folder = Path(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{document['id']}_populated.json"
    fd, tmp = tempfile.mkstemp(prefix=".populated-", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(document, indent=2) + "\n")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def run(args: argparse.Namespace, *, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    # 1. the operator's file, and the arguments, before anything is read or posted
    try:
        config = load_config(args.config)
    except ConfigInvalid as e:
        print(f"{args.config}: {len(e.problems)} problem(s); nothing was posted:", file=err)
        for problem in e.problems:
            print(f"  {problem}", file=err)
        return EXIT_INVALID
    if args.onboard and not args.api_url:
        print("--onboard needs --api-url (or AIOS_API_URL); nothing was posted", file=err)
        return EXIT_INVALID
    try:
        parser_client = ParserClient(args.api_url, timeout_s=args.timeout) if args.onboard else None
    except ValueError as e:
        print(f"--api-url: {e}; nothing was posted", file=err)
        return EXIT_INVALID
    token = operator_token(args.token, err)

    # 2. the nodes: agents first, Kubernetes for the rest (or for all)
    measured = kube_nodes = None
    aggregator_problem = None  # why the aggregator gave no nodes, when it was asked
    if args.aggregator:
        try:
            measured = read_from_aggregator(args.aggregator, token=token, timeout_s=args.timeout)
        except NodeSourceUnavailable as e:
            aggregator_problem = str(e)
            if not args.no_kubernetes:
                print(f"warning: {e}; falling back to the Kubernetes API", file=err)
        except OnboardingError as e:
            print(f"error: {e}; nothing was posted", file=err)
            return EXIT_NO_NODES
    if not args.no_kubernetes:
        try:
            kube_nodes = read_kube_nodes(args.kubeconfig, timeout_s=args.timeout)
        except NodeSourceUnavailable as e:
            if measured is None:
                print(f"error: no node data: {aggregator_problem or 'no --aggregator given'}, and {e}; "
                      "nothing was posted", file=err)
                return EXIT_NO_NODES
            print(f"warning: {e}; cannot check for Nodes without an agent or without the nodeID label", file=err)
    if measured is None and kube_nodes is None:
        print(f"error: no node data: {aggregator_problem or 'no --aggregator given'}, and --no-kubernetes is set "
              "(the Kubernetes API was not asked); nothing was posted", file=err)
        return EXIT_NO_NODES

    gathered = gather_nodes(measured, kube_nodes)
    for warning in gathered.warnings:
        print(f"warning: {warning}", file=err)
    if config["nodes"]["nodeData"]:
        print(f"warning: nodes.nodeData: the {len(config['nodes']['nodeData'])} entries of the input "
              "were replaced by the nodes found", file=err)
    if not gathered.entries:
        print("error: no nodes found; nothing was posted", file=err)
        return EXIT_NO_NODES

    # 3. the populated document
    document = populate_document(config, gathered.entries)
    path = write_document(document, args.output)
    print(f"wrote {path}: {len(gathered.entries)} nodes ({len(gathered.measured_ids)} measured by agents, "
          f"{len(gathered.unmeasured_ids)} from Kubernetes only)", file=err)
    if parser_client is None:
        return EXIT_OK

    # 4. registration
    try:
        answer = parser_client.create_cluster(document)
    except ParserRefused as e:
        print(f"the parser refused the cluster (HTTP {e.status}):", file=err)
        print(e.message, file=err)
        return EXIT_PARSER
    except ParserFailed as e:
        print(f"the parser failed: {e.message}", file=err)
        print(e.body, file=err)
        return EXIT_PARSER
    except ParserUnreachable as e:
        print(f"the parser could not be reached: {e}", file=err)
        return EXIT_PARSER
    print(answer.text, file=out)
    _store(document, args, token, err)
    return EXIT_OK


def _store(document: dict[str, Any], args: argparse.Namespace, token: str | None, err: TextIO) -> None:
    """Hand the document to the aggregator; the cluster is registered either way."""
    try:
        if args.aggregator:
            store_in_aggregator(args.aggregator, document, token=token, timeout_s=args.timeout)
        elif args.db:
            from aggregator.cluster.store import ClusterStore
            from aggregator.db import Database

            db = Database(args.db)
            try:
                ClusterStore(db).put(document["id"], document)
            finally:
                db.close()
        else:
            print("warning: the document was not stored in an aggregator (no --aggregator or --db): "
                  "nodes joining later will not be enrolled automatically", file=err)
            return
        print(f"stored the document of cluster {document['id']} in the aggregator", file=err)
    except (OnboardingError, OSError, sqlite3.Error) as e:
        print(f"warning: registered with the network, but not stored in the aggregator: {e}; "
              "nodes joining later will not be enrolled automatically", file=err)


def main(argv: Sequence[str] | None = None, *, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    parser = argparse.ArgumentParser(prog="aios-aggregator onboard", description=__doc__.split("\n\n")[1])
    add_arguments(parser)
    return run(parser.parse_args(argv), out=out, err=err)

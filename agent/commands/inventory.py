"""`aios-agent inventory`: what this node has, as JSON, with the annotation the agent would write."""

from __future__ import annotations

import argparse

from agent.commands.common import common_parser, open_reader_from_args, print_json, to_jsonable
from agent.kube.annotation import ANNOTATION_KEY, gpu_annotation_value
from proto.telemetry.v1.readings import NodeInventory

__all__ = ["inventory_document", "register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "inventory",
        parents=[common_parser()],
        help="print the node's GPUs and host as JSON, with the gpu.aios/info annotation value",
    )
    parser.set_defaults(run=run)


def inventory_document(inventory: NodeInventory) -> dict:
    document = to_jsonable(inventory)
    if inventory.host is not None:
        document["host"]["disk_total_bytes"] = inventory.host.disk_total_bytes
    document["gpu_count"] = len(inventory.gpus)
    # the exact string the annotator writes on the Node
    document["annotations"] = {ANNOTATION_KEY: gpu_annotation_value(inventory.gpus)}
    return document


def run(args: argparse.Namespace) -> int:
    with open_reader_from_args(args) as reader:
        inventory = reader.inventory()
    print_json(inventory_document(inventory))
    return 0

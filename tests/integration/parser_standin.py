"""A stand-in for the network's parser API: a real HTTP server on 127.0.0.1.

It checks what it receives exactly as docs/network-formats.md §3 says (the
wrapped spec, field names, integer MB / Mbps values, totals that add up) and
records every problem it finds, then answers as told: success (200),
refusal (400) or failure (500).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NODE_KEYS = {"id", "gpus", "vcpus", "memory", "swap", "storage", "network"}
GPUS_KEYS = {"count", "memory", "gpus", "features", "modelNames"}
# MB and Mbps stay far below this; the same figures in bytes or bits would not
UNIT_CEILING = 2**31


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def entry_problems(entry, where: str, *, extra_keys=frozenset()) -> list[str]:
    problems = []
    if not isinstance(entry, dict):
        return [f"{where}: not an object"]
    if set(entry) - extra_keys != NODE_KEYS:
        problems.append(f"{where}: keys {sorted(entry)}")
        return problems
    gpus = entry["gpus"]
    if not isinstance(gpus, dict) or set(gpus) != GPUS_KEYS:
        return problems + [f"{where}.gpus: keys {sorted(gpus) if isinstance(gpus, dict) else gpus}"]
    for gpu in gpus["gpus"]:
        if set(gpu) != {"modelName", "memory"} or not _is_int(gpu["memory"]) or gpu["memory"] >= UNIT_CEILING:
            problems.append(f"{where}.gpus.gpus: {gpu}")
    if gpus["count"] != len(gpus["gpus"]):
        problems.append(f"{where}.gpus.count {gpus['count']} != {len(gpus['gpus'])} GPUs listed")
    if gpus["memory"] != sum(g.get("memory", 0) for g in gpus["gpus"]):
        problems.append(f"{where}.gpus.memory is not the sum of the GPUs' memory")
    names = []
    for g in gpus["gpus"]:
        if g.get("modelName") not in names:
            names.append(g.get("modelName"))
    if sorted(gpus["modelNames"]) != sorted(names):
        problems.append(f"{where}.gpus.modelNames {gpus['modelNames']} != {names}")
    if not all(isinstance(f, str) for f in gpus["features"]):
        problems.append(f"{where}.gpus.features: {gpus['features']}")
    numbers = {
        "vcpus.count": entry["vcpus"].get("count") if isinstance(entry["vcpus"], dict) else None,
        "memory": entry["memory"],
        "swap": entry["swap"],
        "storage.disks": entry["storage"].get("disks"),
        "storage.size": entry["storage"].get("size"),
        "network.interfaces": entry["network"].get("interfaces"),
        "network.txBandwidth": entry["network"].get("txBandwidth"),
        "network.rxBandwidth": entry["network"].get("rxBandwidth"),
    }
    for name, value in numbers.items():
        if not _is_int(value) or not 0 <= value < UNIT_CEILING:
            problems.append(f"{where}.{name}: {value!r} is not an integer in MB/Mbps")
    if set(entry["storage"]) != {"disks", "size"}:
        problems.append(f"{where}.storage: keys {sorted(entry['storage'])}")
    if set(entry["network"]) != {"interfaces", "txBandwidth", "rxBandwidth"}:
        problems.append(f"{where}.network: keys {sorted(entry['network'])}")
    return problems


def document_problems(doc) -> list[str]:
    if not isinstance(doc, dict):
        return ["values: not an object"]
    problems = [f"values.{k}: missing" for k in ("id", "regionId", "config", "nodes", "clusterMetadata") if k not in doc]
    nodes = doc.get("nodes") or {}
    if "nodesData" in nodes:
        problems.append("values.nodes.nodesData: the consumers read nodeData")
    entries = nodes.get("nodeData")
    if not isinstance(entries, list):
        return problems + ["values.nodes.nodeData: not a list"]
    if nodes.get("count") != len(entries):
        problems.append(f"values.nodes.count {nodes.get('count')} != {len(entries)}")
    for i, entry in enumerate(entries):
        problems += entry_problems(entry, f"values.nodes.nodeData[{i}]")
    if problems:
        return problems
    sums = {
        ("gpus", "count"): 0, ("gpus", "memory"): 0, ("vcpus", "count"): 0, ("memory",): 0, ("swap",): 0,
        ("storage", "disks"): 0, ("storage", "size"): 0, ("network", "interfaces"): 0,
        ("network", "txBandwidth"): 0, ("network", "rxBandwidth"): 0,
    }
    for entry in entries:
        for path in sums:
            value = entry
            for key in path:
                value = value[key]
            sums[path] += value
    for path, total in sums.items():
        value = doc
        for key in path:
            value = value.get(key, {}) if isinstance(value, dict) else None
        if value != total:
            problems.append(f"values.{'.'.join(path)}: {value!r} != sum over nodes {total}")
    return problems


class ParserStandIn:
    def __init__(self, port: int = 0) -> None:
        self.requests: list[tuple[str, dict]] = []
        self.problems: list[str] = []
        self.mode = "success"  # "success" | "refuse" | "fail"
        self.refusal_message = "add_cluster pre-check: region eu-west-9 is closed to new clusters"
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                with standin._lock:
                    standin.requests.append((self.path, body))
                    found = standin.check(self.path, body, self.headers.get("Content-Type", ""))
                    standin.problems += found
                    mode = standin.mode
                if found:
                    self._answer(422, {"success": False, "message": "; ".join(found)})
                elif mode == "refuse":
                    self._answer(400, {"success": False, "message": standin.refusal_message})
                elif mode == "fail":
                    self._answer(500, {"error": "database is locked"})
                else:
                    self._answer(200, {"success": True, "task_id": f"task-{len(standin.requests)}",
                                       "result": {"path": self.path}})

            def _answer(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def check(self, path: str, body, content_type: str) -> list[str]:
        if not content_type.startswith("application/json"):
            return [f"{path}: Content-Type {content_type!r}"]
        if not isinstance(body, dict) or set(body) != {"header", "body"}:
            return [f"{path}: not the wrapped spec: {sorted(body) if isinstance(body, dict) else body!r}"]
        if body["header"] != {"templateUri": "Parser/V1", "parameters": {}}:
            return [f"{path}: header {body['header']}"]
        if not isinstance(body["body"], dict) or set(body["body"]) != {"spec"} or set(body["body"]["spec"]) != {"values"}:
            return [f"{path}: body is not {{spec: {{values}}}}"]
        values = body["body"]["spec"]["values"]
        if path == "/api/createCluster":
            return document_problems(values)
        if path == "/api/addNode":
            if not isinstance(values, dict) or set(values) != {"clusterId", "nodeData"}:
                return [f"{path}: values keys {sorted(values) if isinstance(values, dict) else values!r}"]
            return entry_problems(values["nodeData"], "values.nodeData", extra_keys=frozenset({"tags", "nodeMetadata"}))
        return [f"unknown path {path}"]

    def bodies(self, path: str) -> list[dict]:
        with self._lock:
            return [b for p, b in self.requests if p == path]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

"""Reading the Grafana dashboard's PromQL back out, with Grafana's variables filled in."""

from __future__ import annotations

import json
import re
from pathlib import Path

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "aios-cluster-dashboard.json"

# What Grafana puts in place of its variables when it sends a query.
VARIABLES = {
    "$__rate_interval": "1m",
    "$__range": "5m",
    "$cluster": ".*",
    "$node": ".*",
}

METRIC_NAME = re.compile(r"\baios_[a-z0-9_]+")
SELECTOR = re.compile(r"\b(aios_[a-z0-9_]+)\{([^}]*)\}")
MATCHER_LABEL = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")


def load_dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def all_panels(dashboard: dict) -> list[dict]:
    out = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def expressions(dashboard: dict) -> list[tuple[str, str]]:
    """(panel title, PromQL with variables filled in) for every target."""
    out = []
    for panel in all_panels(dashboard):
        for target in panel.get("targets", []):
            expr = target["expr"]
            for name, value in VARIABLES.items():
                expr = expr.replace(name, value)
            out.append((panel["title"], expr))
    return out


def template_queries(dashboard: dict) -> list[str]:
    return [v["definition"] for v in dashboard["templating"]["list"] if v["type"] == "query"]


def selector_labels(expr: str) -> list[tuple[str, set[str]]]:
    """(metric name, label names its matchers use) for each `metric{...}` selector."""
    return [(m.group(1), set(MATCHER_LABEL.findall(m.group(2)))) for m in SELECTOR.finditer(expr)]

"""Helpers for reading an exposition back: parse it, and have promtool lint it."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families


def parse_exposition(text: str) -> dict[tuple[str, frozenset], float]:
    """{(sample name, frozenset of label pairs): value} for every sample in the text.

    Labels with an empty value are left out, as Prometheus stores a series: to
    it `pod=""` is no `pod` label at all."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, frozenset((k, v) for k, v in sample.labels.items() if v != ""))
            assert key not in out, f"duplicate series {key}"
            out[key] = sample.value
    return out


def value(parsed: dict, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    if key not in parsed:
        near = sorted((dict(k[1]) for k in parsed if k[0] == name), key=str)
        raise AssertionError(f"no series {name}{labels}; series of that name: {near}")
    return parsed[key]


def names(parsed: dict) -> set[str]:
    return {name for name, _ in parsed}


def promtool_check(text: str) -> None:
    """`promtool check metrics` must accept the exposition without a lint complaint."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package `prometheus`; .ci/run installs it)")
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and not result.stdout.strip() and not result.stderr.strip(), (
        f"promtool check metrics: rc={result.returncode}\n{result.stdout}\n{result.stderr}"
    )

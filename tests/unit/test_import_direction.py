"""Imports run one way: the wiring (cli, commands, service) imports the parts, never the reverse,
and agent/ and aggregator/ never import each other (both stand on proto/).

Read from the source (every `import`, at module level or inside a function), not by importing.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, as absolute dotted names (`from a import b` counts `a` and `a.b`)."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def _sources(*tops: str) -> list[Path]:
    return sorted(p for top in tops for p in (ROOT / top).rglob("*.py") if not p.name.endswith(("_pb2.py", "_pb2_grpc.py")))


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


# (imported module, the modules allowed to import it)
_WIRING = {
    "aggregator": [
        ("aggregator.cli", ()),
        ("aggregator.commands", ("aggregator.cli", "aggregator.commands")),
        ("aggregator.service", ("aggregator.cli", "aggregator.commands")),
    ],
    "agent": [
        ("agent.cli", ()),
        ("agent.commands", ("agent.cli", "agent.commands")),
    ],
}


def upward_imports(path: Path) -> list[str]:
    """What `path` imports that it must not; empty when its imports run the right way."""
    module = _module_name(path)
    top = module.split(".")[0]
    problems = []
    imported = _imports(path)
    for other in ("agent", "aggregator"):
        if other != top and any(_within(name, other) for name in imported):
            problems.append(f"{module} imports {other}: agent/ and aggregator/ are separate programs on proto/")
    for wiring, allowed in _WIRING.get(top, []):
        if _within(module, wiring) or any(_within(module, a) for a in allowed):
            continue
        if any(_within(name, wiring) for name in imported):
            problems.append(f"{module} imports {wiring}, the wiring above it")
    return problems


@pytest.mark.parametrize("path", _sources("agent", "aggregator", "proto"), ids=_module_name)
def test_no_module_imports_the_wiring_above_it_or_the_other_program(path):
    assert upward_imports(path) == []


def test_the_rule_sees_an_upward_import(tmp_path, monkeypatch):
    # the check itself can fail: a stability module importing the service, an agent module importing the aggregator
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    (tmp_path / "aggregator" / "stability").mkdir(parents=True)
    (tmp_path / "agent" / "gpu").mkdir(parents=True)
    upward = tmp_path / "aggregator" / "stability" / "x.py"
    upward.write_text("def late():\n    from aggregator.service import Aggregator\n")
    across = tmp_path / "agent" / "gpu" / "y.py"
    across.write_text("from aggregator import db\n")
    relative = tmp_path / "aggregator" / "stability" / "z.py"
    relative.write_text("from ..commands import serve\n")
    assert upward_imports(upward) == ["aggregator.stability.x imports aggregator.service, the wiring above it"]
    assert upward_imports(across) == ["agent.gpu.y imports aggregator: agent/ and aggregator/ are separate programs on proto/"]
    assert upward_imports(relative) == ["aggregator.stability.z imports aggregator.commands, the wiring above it"]


def test_the_roots_stay_small():
    # at most 8 modules at each program's root (the layout rule); the rest lives in packages
    for top in ("agent", "aggregator"):
        modules = sorted(p.name for p in (ROOT / top).glob("*.py") if p.name != "__init__.py")
        assert len(modules) <= 8, f"{top}/ root holds {len(modules)} modules: {modules}"

"""The layout of ``sync/``: wings whose imports point down, and no import cycle.

The layers below are the ones docs/architecture.md describes; a module may import its own wing
and any wing below its own, never one above. Every import counts, those inside functions and
under ``TYPE_CHECKING`` included: a circle that only type checking sees is still a circle for
the reader.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SYNC = ROOT / "sync"

LAYERS: tuple[tuple[str, ...], ...] = (
    ("sync.__main__",),
    ("sync.cli",),
    ("sync.local",),
    ("sync.ops", "sync.entry"),
    ("sync.services",),
    ("sync.plan",),
    ("sync.work",),
    ("sync.safety",),
    ("sync.budget",),
    ("sync.state",),
    ("sync.clients",),
    ("sync.telemetry",),
    ("sync.message",),
    ("sync.config",),
    ("sync.failures",),
    ("sync.clock",),
)
"""Top first. Wings on one line are siblings: neither imports the other."""


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(SYNC.rglob("*.py"))}


def imported(name: str, path: Path) -> Iterator[str]:
    """Every module of ``sync`` that ``name`` imports, wherever the import stands."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            for alias in node.names:  # a submodule by name, else a name of the module
                submodule = f"{base}.{alias.name}"
                yield submodule if submodule in modules() else base


@cache
def graph() -> dict[str, frozenset[str]]:
    known = modules()
    return {name: frozenset(target for target in imported(name, path)
                            if target in known and target != name)
            for name, path in known.items()}


def wing_of(module: str) -> str:
    """The wing a module lives in: its sub-package of ``sync``, or the module at the top."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else module


def layer_of(wing: str) -> int:
    for index, layer in enumerate(LAYERS):
        if wing in layer:
            return index
    raise LookupError(wing)


def test_every_module_lives_in_a_declared_wing() -> None:
    unknown = sorted({wing_of(m) for m in modules()} - {w for layer in LAYERS for w in layer}
                     - {"sync"})
    assert unknown == [], f"wings missing from LAYERS and docs/architecture.md: {unknown}"


def test_the_top_keeps_only_the_entry_points_and_the_clock() -> None:
    top = sorted(p.name for p in SYNC.glob("*.py"))
    assert top == ["__init__.py", "__main__.py", "cli.py", "clock.py", "entry.py",
                   "services.py"]


def upward_imports() -> list[str]:
    found = []
    for source, targets in graph().items():
        if source == "sync":
            continue
        for target in targets:
            here, there = wing_of(source), wing_of(target)
            if there in {"sync", here}:
                continue
            if layer_of(there) <= layer_of(here):
                found.append(f"{source} -> {target}")
    return sorted(found)


def test_imports_point_down() -> None:
    assert upward_imports() == []


def cycle_through(start: str) -> list[str] | None:
    """A path of imports from ``start`` back to itself, if there is one."""
    edges = graph()
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    seen: set[str] = set()
    while stack:
        node, path = stack.pop()
        for target in edges[node]:
            if target == start:
                return [*path, start]
            if target not in seen:
                seen.add(target)
                stack.append((target, [*path, target]))
    return None


def test_no_import_cycle() -> None:
    cycles = [cycle for name in modules() if (cycle := cycle_through(name)) is not None]
    assert cycles == [], " ; ".join(" -> ".join(cycle) for cycle in cycles[:5])


@pytest.mark.parametrize("wing", sorted({wing_of(m) for m in modules()
                                         if m.count(".") >= 2 and "." in wing_of(m)}))
def test_every_wing_says_in_one_line_what_lives_there(wing: str) -> None:
    init = SYNC / wing.split(".")[1] / "__init__.py"
    docstring = ast.get_docstring(ast.parse(init.read_text())) or ""
    assert docstring.split("\n")[0].strip(), f"{init} has no one-line docstring"

"""Imports run downhill only: each room of sdprobe imports from the rooms below it, never above,
and no two modules import each other, however indirectly (imports inside functions count too;
those under ``if TYPE_CHECKING:`` never run and do not)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from sdprobe.paths import REPO_ROOT

LIB = REPO_ROOT / "lib"

#: The rooms from the bottom up (book/api.md's table says the same). A module may import from its
#: own room and from those before it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("leaves", ("sdprobe._quiet", "sdprobe.arithmetic", "sdprobe.paths", "sdprobe.progress", "sdprobe.images",
                "sdprobe.formatting")),
    ("models", ("sdprobe.models",)),
    ("world", ("sdprobe.world",)),
    ("analysis", ("sdprobe.analysis",)),
    ("probes", ("sdprobe.probes",)),
    ("experiments", ("sdprobe.experiments",)),
    ("book", ("sdprobe.book",)),
    ("toy", ("sdprobe.toy",)),
    ("the package face", ("sdprobe",)),
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(LIB).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted((LIB / "sdprobe").rglob("*.py"))}


def layer_of(module: str) -> int:
    """The index in LAYERS of the room holding ``module`` (the longest matching prefix)."""
    best, length = None, -1
    for rank, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > length:
                best, length = rank, len(prefix)
    if best is None:
        raise LookupError(f"{module} belongs to no room of LAYERS")
    return best


def _type_checking_only(tree: ast.Module) -> set[ast.AST]:
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(n for child in node.body for n in ast.walk(child))
    return skipped


def imports_of(module: str, source: str, is_package: bool) -> set[str]:
    """The sdprobe modules ``module`` imports (``from a import b`` counts as ``a.b`` when b is a module)."""
    tree = ast.parse(source)
    skipped = _type_checking_only(tree)
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if node in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "sdprobe")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "sdprobe":
                continue
            for alias in node.names:
                found.add(f"{target}.{alias.name}" if f"{target}.{alias.name}" in MODULES else target)
    found.discard(module)
    return found


GRAPH = {m: imports_of(m, p.read_text(), p.name == "__init__.py") for m, p in MODULES.items()}


def uphill(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{src} ({LAYERS[layer_of(src)][0]}) imports {dst} ({LAYERS[layer_of(dst)][0]})"
                  for src, targets in graph.items() for dst in targets if layer_of(dst) > layer_of(src))


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import cycle, each as the path that closes it (depth-first, one per back edge)."""
    found, state, path = [], {}, []

    def visit(node: str) -> None:
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                found.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def test_every_module_belongs_to_a_room():
    assert [m for m in MODULES if not any(m == p or m.startswith(p + ".") for _, ps in LAYERS for p in ps)] == []


def test_no_module_imports_from_a_room_above_its_own():
    assert uphill(GRAPH) == []


def test_no_modules_import_each_other():
    assert cycles(GRAPH) == []


@pytest.mark.parametrize("graph, expected", [
    ({"sdprobe.analysis.x": {"sdprobe.probes.y"}, "sdprobe.probes.y": set()},
     ["sdprobe.analysis.x (analysis) imports sdprobe.probes.y (probes)"]),
    ({"sdprobe.probes.y": {"sdprobe.analysis.x"}, "sdprobe.analysis.x": set()}, []),
])
def test_the_order_check_catches_an_uphill_import(graph, expected):
    assert uphill(graph) == expected


def test_the_cycle_check_catches_a_cycle_through_three_modules():
    graph = {"sdprobe.book.a": {"sdprobe.book.b"}, "sdprobe.book.b": {"sdprobe.book.c"}, "sdprobe.book.c": {"sdprobe.book.a"}}
    assert cycles(graph) == [["sdprobe.book.a", "sdprobe.book.b", "sdprobe.book.c", "sdprobe.book.a"]]


def test_imports_inside_functions_count_and_type_checking_ones_do_not():
    source = ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from sdprobe.probes.trajectory import Trajectory\n"
              "def f():\n    from sdprobe.book.plots import new_figure\n")
    assert imports_of("sdprobe.analysis.example", source, False) == {"sdprobe.book.plots"}

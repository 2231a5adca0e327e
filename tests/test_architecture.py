"""The import rules of README's Architecture section, checked on the source (ast, no imports run).

Every `import` counts, also those inside functions. The table below is the one place that says
which layer each top-level part of idface belongs to; a new part fails here until it is added.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "idface"

# Top-level part of idface -> layer (0 = bottom). A module may import its own layer or below.
LAYERS: dict[str, int] = {
    "errors": 0,
    "labels": 1, "images": 1, "weights": 1, "hub": 1, "tensors": 1, "metrics": 1, "threads": 1, "optim": 1, "tfjs": 1,
    "faces": 2, "identity": 2, "model": 2,
    "pipeline": 3, "conceal": 3, "training": 3, "evaluation": 3, "fitting": 3,
    "engine": 4, "outputs": 4,
    "cli": 5, "__main__": 5, "generate_cli": 5, "bench": 5, "weights_cli": 5,
    "ui": 6,
    "testing": 7,  # test support for tests/ and scripts/; nothing in idface imports it
}
# Command-line modules inside a package sit in the CLI layer, not their package's.
CLI_LAYER = LAYERS["cli"]
UI_LAYER = LAYERS["ui"]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def is_module(name: str) -> bool:
    rel = Path(*name.split("."))
    return (ROOT / rel.with_suffix(".py")).is_file() or (ROOT / rel / "__init__.py").is_file()


def imports_of(path: Path) -> set[str]:
    """Fully qualified idface (or app) modules that a file imports, anywhere in it."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:  # `from idface import weights` imports the module idface.weights
                full = f"{node.module}.{alias.name}"
                out.add(full if is_module(full) else node.module)
    return {m for m in out if m == "app" or m.split(".")[0] == "idface"}


def part(module: str) -> str | None:
    """idface.faces.parse -> faces; the package root (a lazy facade) -> None."""
    bits = module.split(".")
    return bits[1] if bits[0] == "idface" and len(bits) > 1 else None


def layer(module: str) -> int:
    bits = module.split(".")
    if len(bits) >= 3 and bits[-1] == "cli":
        return CLI_LAYER
    return LAYERS[part(module)]


SOURCES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
GRAPH = {name: imports_of(path) for name, path in SOURCES.items()}


def test_every_part_of_idface_has_a_layer():
    unknown = sorted({part(m) for m in SOURCES} - set(LAYERS) - {None})
    assert not unknown, f"add {unknown} to LAYERS here and to the README's Architecture table"


def test_nothing_below_the_ui_imports_the_ui_or_the_app():
    bad = [f"{m} imports {i}" for m, imports in GRAPH.items() if part(m) and layer(m) < UI_LAYER
           for i in imports if i == "app" or part(i) == "ui"]
    assert not bad, bad


def test_faces_never_imports_identity():
    bad = [f"{m} imports {i}" for m, imports in GRAPH.items() if part(m) == "faces"
           for i in imports if part(i) == "identity"]
    assert not bad, bad


def test_layers_import_only_downwards():
    bad = [f"{m} (layer {layer(m)}) imports {i} (layer {layer(i)})"
           for m, imports in GRAPH.items() if part(m)
           for i in imports if part(i) and part(i) in LAYERS and layer(i) > layer(m)]
    assert not bad, bad


def test_nothing_in_the_library_imports_the_test_support():
    bad = [f"{m} imports {i}" for m, imports in GRAPH.items() if part(m) and part(m) != "testing"
           for i in imports if part(i) == "testing"]
    assert not bad, bad


def test_no_cycles_between_parts():
    edges: dict[str, set[str]] = {}
    for m, imports in GRAPH.items():
        if part(m) is None:
            continue
        for i in imports:
            if part(i) and part(i) != part(m):
                edges.setdefault(part(m), set()).add(part(i))
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for start in sorted(edges):
        if start not in state:
            visit(start, [start])


SYS_PATH_EDIT = re.compile(r"sys\.path\s*(\.\s*(insert|append|extend)\b|\[[^\]]*\]\s*=|\+?=(?!=))")


def test_no_sys_path_edits_and_scripts_do_not_import_tests():
    """The package is installed (pip install -e .); nothing edits sys.path to find code."""
    files = sorted(ROOT.glob("*.py")) + sorted(PACKAGE.rglob("*.py")) + sorted((ROOT / "scripts").rglob("*.py")) \
        + sorted((ROOT / "tests").rglob("*.py"))
    bad = []
    for path in files:
        text = path.read_text()
        for n, line in enumerate(text.splitlines(), 1):
            if SYS_PATH_EDIT.search(line) and "SYS_PATH_EDIT" not in line:
                bad.append(f"{path.relative_to(ROOT)}:{n} edits sys.path")
        if path.relative_to(ROOT).parts[0] == "scripts":
            for node in ast.walk(ast.parse(text, str(path))):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                bad += [f"{path.relative_to(ROOT)} imports {m} (use idface.testing)" for m in names
                        if m.split(".")[0] in ("tests", "conftest", "ui_browser", "rawdata", "conceal_reference")]
    assert not bad, bad

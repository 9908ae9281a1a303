"""The library's shape (docs/architecture.md): layers in folders, imports that run one way, no import circle,
small modules, and no GUI toolkit below the one MRML adapter.

Every import counts, including those inside functions and under TYPE_CHECKING: a lazy import up the layers
is still a dependency up the layers.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

LIB = Path(__file__).resolve().parents[1] / "CollaGANImpute" / "CollaGANImputeLib"
PACKAGE = LIB.name
# Lower layers never import higher ones; layers of equal rank do not import each other.
RANKS = {"core": 0, "io": 1, "preparation": 2, "model": 3, "inference": 4, "training": 5, "analysis": 5,
         "reading": 6, "scene": 6, "cli": 7}
GUI_MODULES = ("qt", "ctk", "slicer", "vtk", "PySide6", "PyQt5")
MRML_ADAPTER = f"{PACKAGE}.io.mrml"
MAX_LINES = 400
MAX_SLICER_MODULE_LINES = 600  # a Slicer module file: Module, Widget, Logic, Test, wiring only


def module_name(path: Path) -> str:
    parts = path.relative_to(LIB.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> list[tuple[str, int, bool]]:
    """(imported module, line, top level) for every import in the file, relative ones resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module_name(path).split(".") if path.name == "__init__.py" else module_name(path).split(".")[:-1]
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno, id(node) in top) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module
            found.append((target, node.lineno, id(node) in top))
            # `from . import x` and `from ..layer import x` import the modules named x
            found += [(f"{target}.{alias.name}", node.lineno, id(node) in top) for alias in node.names
                      if (LIB.parent / Path(*f"{target}.{alias.name}".split("."))).with_suffix(".py").exists()]
    return found


FILES = sorted(p for p in LIB.rglob("*.py") if "__pycache__" not in p.parts)
MODULES = {module_name(p): p for p in FILES}


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 and parts[0] == PACKAGE else None


def test_every_module_lives_in_a_layer_folder():
    loose = [p.name for p in FILES if p.parent == LIB and p.name not in ("__init__.py", "__main__.py")]
    assert loose == [], f"modules outside the layer folders: {loose}"
    assert {p.parent.name for p in FILES if p.parent != LIB} == set(RANKS)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(LIB)))
def test_imports_run_down_the_layers(path: Path):
    here = layer_of(module_name(path))
    if here is None:
        return  # the package's __init__ and __main__ sit above every layer
    wrong = [f"line {line}: {target}" for target, line, _ in imports_of(path)
             if (there := layer_of(target)) is not None and there != here and RANKS[there] >= RANKS[here]]
    assert wrong == [], f"{path.relative_to(LIB)} ({here}) imports up or across the layers: {wrong}"


def test_no_import_circle():
    graph = {m: {t for t, _, _ in imports_of(p) if t in MODULES and t != m} for m, p in MODULES.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                circle = path[path.index(target):] + [target]
                pytest.fail("import circle: " + " -> ".join(circle))
            if target not in state:
                visit(target)
        path.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)


def test_a_circle_would_be_found():
    """The walk above sees lazy imports: the function-level import that once closed inference <-> reliability."""
    found = imports_of(MODULES[f"{PACKAGE}.inference.imputation"])
    assert any(t == f"{PACKAGE}.inference.reliability" and not top for t, _, top in found)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(LIB)))
def test_library_modules_stay_small(path: Path):
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(LIB)} has {lines} lines (at most {MAX_LINES}): split it by what changes together"


@pytest.mark.parametrize("path", sorted(LIB.parent.glob("*.py")), ids=lambda p: p.name)
def test_slicer_module_files_stay_thin(path: Path):
    """What a module decides or says lives in the library (scene/, reading/), where it is tested without Slicer."""
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_SLICER_MODULE_LINES, f"{path.name} has {lines} lines (at most {MAX_SLICER_MODULE_LINES}): move logic into the library"


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(LIB)))
def test_no_gui_toolkit_in_the_library(path: Path):
    """Only the MRML adapter touches Slicer, and only inside functions, so the library imports without it."""
    gui = [(t, line, top) for t, line, top in imports_of(path) if t.split(".")[0] in GUI_MODULES]
    if module_name(path) == MRML_ADAPTER:
        assert all(not top for _, _, top in gui), "io/mrml.py must import slicer lazily, inside functions"
    else:
        assert gui == [], f"{path.relative_to(LIB)} imports a GUI toolkit: {gui}"

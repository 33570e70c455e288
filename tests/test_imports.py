"""The package's import structure: every module imports, the library never imports the CLI,
no module-level import cycles, and no module uses another module's private names."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import pkgutil
from pathlib import Path

import pytest

import semloc

SRC = Path(semloc.__file__).parent
MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages([str(SRC)], prefix="semloc.")
    if not m.name.endswith("__main__")
)


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(tree: ast.AST, module: str, *, top_level_only: bool) -> list[tuple[str, list[str]]]:
    """(imported module, names) for every import; relative imports resolved."""
    found: list[tuple[str, list[str]]] = []
    body = tree.body if top_level_only else list(ast.walk(tree))
    for node in body:
        if isinstance(node, ast.If) and top_level_only:
            continue  # `if TYPE_CHECKING:` blocks never run
        if isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against the module's package
                is_package = SRC.joinpath(*module.split(".")[1:], "__init__.py").exists()
                package = module if is_package else module.rpartition(".")[0]
                base = importlib.util.resolve_name("." * node.level + base, package)
            found.append((base, [a.name for a in node.names]))
    return found


def _sources() -> dict[str, ast.AST]:
    return {_module_name(p): ast.parse(p.read_text()) for p in SRC.rglob("*.py")}


@pytest.mark.parametrize("name", MODULES)
def test_every_module_imports(name: str) -> None:
    importlib.import_module(name)


def test_no_module_below_the_cli_imports_the_cli() -> None:
    upward = [
        f"{mod} imports {target}"
        for mod, tree in _sources().items()
        if not mod.startswith("semloc.cli") and mod != "semloc.__main__"
        for target, _ in _imports(tree, mod, top_level_only=False)
        if target == "semloc.cli" or target.startswith("semloc.cli.")
    ]
    assert upward == []


def test_no_module_level_import_cycles() -> None:
    sources = _sources()
    graph: dict[str, set[str]] = {}
    for mod, tree in sources.items():
        deps = set()
        for target, names in _imports(tree, mod, top_level_only=True):
            for cand in [f"{target}.{n}" for n in names] + [target]:
                if cand in sources and cand != mod:
                    deps.add(cand)
                    break
        graph[mod] = deps
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycles.append([*stack[stack.index(dep) :], dep])
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert graph["semloc.runs"] >= {"semloc.training.trainer", "semloc.config"}  # edges seen
    assert cycles == []


def test_no_module_imports_another_modules_private_names() -> None:
    """A private name is its module's own: another module using it breaks silently on a rename
    (as a renamed helper once broke the Ray engine). A package may use its own private
    submodules (`semloc.demo._scenes` from `semloc.demo.world`)."""
    private = []
    for mod, tree in _sources().items():
        for target, names in _imports(tree, mod, top_level_only=False):
            if not target.startswith("semloc"):
                continue
            for name in names:
                own_package = target == mod.rpartition(".")[0]  # its private submodules
                if name.startswith("_") and not name.startswith("__") and not own_package:
                    private.append(f"{mod} imports {target}.{name}")
    assert private == []

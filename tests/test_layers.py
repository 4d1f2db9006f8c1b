"""The architecture, checked from the code itself: layers whose imports only point down, and sizes.

Layers, lowest first (docs/README.md): the data layer (``augment.data``), the embedded dataset
(``augment.synth``), the runtime (``augment.runtime``), ``generators``, the service (the rest of
``augment``), ``cluster``, ``reid_eval``. Every import of a project module, at module level or inside
a function, must point to the same layer or one below, with two sharper rules: the data layer imports
nothing else of the project, and ``reid_eval`` does not import ``cluster`` (re-ID runs without Ray).
The one exception is a command's ``main()``, which may reach for an implementation to choose
(``augment.run.main`` and ``reid_eval.bench.main`` pick the Ray executor, ``generators.train.main``
picks multi-worker training).

Sizes: no function over ``MAX_FUNCTION_LINES`` and no file over ``MAX_FILE_LINES`` unless the file says
why in a ``# Long file: <reason>`` line at its top.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("augment", "generators", "cluster", "reid_eval")
LAYERS = ["augment.data", "augment.synth", "augment.runtime", "generators", "augment", "cluster", "reid_eval"]
FORBIDDEN = {("reid_eval", "cluster")}  # lower, but not a dependency re-ID may have (it runs without Ray)
MAX_FUNCTION_LINES = 80
MAX_FILE_LINES = 600
LONG_FILE_MARK = "# Long file:"


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def layer_of(module: str) -> str | None:
    """The layer a dotted module name belongs to (the longest matching prefix), None outside the project."""
    for layer in sorted(LAYERS, key=len, reverse=True):
        if module == layer or module.startswith(layer + "."):
            return layer
    return None


def project_files() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py") if "__pycache__" not in p.parts)


def imports_with_scope(path: Path, root: Path = ROOT) -> list[tuple[str, int, tuple[str, ...]]]:
    """(imported module, line, enclosing function names) for every import in the file, nested ones included."""
    tree = ast.parse(path.read_text(), filename=str(path))
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []

    def visit(node: ast.AST, scope: tuple[str, ...]) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                visit(child, (*scope, child.name))
                continue
            if isinstance(child, ast.Import):
                found.extend((alias.name, child.lineno, scope) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:  # relative import: resolve against this file's package
                    base = package.split(".")[: len(package.split(".")) - child.level + 1]
                    target = ".".join([*base, child.module] if child.module else base)
                else:
                    target = child.module or ""
                found.append((target, child.lineno, scope))
                # "from pkg import module" imports a submodule: judge it by the submodule's layer
                found.extend((f"{target}.{alias.name}", child.lineno, scope) for alias in child.names)
            visit(child, scope)

    visit(tree, ())
    return found


def violations() -> list[str]:
    bad = []
    for path in project_files():
        source = layer_of(module_name(path))
        for target, line, scope in imports_with_scope(path):
            dest = layer_of(target)
            if dest is None or dest == source:
                continue
            upward = LAYERS.index(dest) > LAYERS.index(source)
            if source == "augment.data" or (((source, dest) in FORBIDDEN or upward) and "main" not in scope):
                where = f"{path.relative_to(ROOT)}:{line}"
                bad.append(f"{where}: {source} imports {dest}{' in ' + scope[-1] + '()' if scope else ''}")
    return sorted(set(bad))


def test_layer_map_covers_every_module():
    assert all(layer_of(module_name(p)) for p in project_files())
    assert layer_of("augment.data.market") == "augment.data" and layer_of("augment.run") == "augment"
    assert layer_of("augment.synth.draw") == "augment.synth" and layer_of("torch") is None


def test_imports_point_down():
    assert violations() == []


def test_the_checker_sees_nested_and_relative_imports(tmp_path):
    """The walker finds an upward import inside a helper function, and forgives one inside main()."""
    pkg = tmp_path / "generators"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "x.py").write_text(
        "def helper():\n    from cluster import ray_executor\n\n"
        "def main():\n    import reid_eval.bench\n\n"
        "from . import base\n"
    )
    found = imports_with_scope(pkg / "x.py", root=tmp_path)
    assert ("cluster", 2, ("helper",)) in found and ("reid_eval.bench", 5, ("main",)) in found
    assert ("generators", 7, ()) in found and ("generators.base", 7, ()) in found


def test_no_package_cycle():
    """The package-level graph (any import, main() included) has no cycle."""
    graph: dict[str, set[str]] = {layer: set() for layer in LAYERS}
    for path in project_files():
        source = layer_of(module_name(path))
        for target, _, scope in imports_with_scope(path):
            dest = layer_of(target)
            if dest and dest != source and "main" not in scope:
                graph[source].add(dest)
    state: dict[str, int] = {}

    def cyclic(node: str) -> bool:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1 or (nxt not in state and cyclic(nxt)):
                return True
        state[node] = 2
        return False

    assert not any(cyclic(n) for n in LAYERS if n not in state), graph


def _long_functions(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            n = node.end_lineno - start + 1
            if n > MAX_FUNCTION_LINES:
                out.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}() is {n} lines")
    return out


@pytest.mark.parametrize("kind", ["functions", "files"])
def test_sizes(kind):
    bad = []
    for path in project_files():
        if kind == "functions":
            bad += _long_functions(path)
        else:
            lines = path.read_text().splitlines()
            if len(lines) > MAX_FILE_LINES and not any(line.startswith(LONG_FILE_MARK) for line in lines[:3]):
                bad.append(f"{path.relative_to(ROOT)} is {len(lines)} lines with no '{LONG_FILE_MARK} ...' line")
    assert bad == []

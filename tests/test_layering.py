"""The layering of ``common`` (design document, section 2), checked by reading the imports of every module.

Layers, lowest first; a module imports only from its own layer or the layers before it:

    utils -> losses -> data -> networks = transforms -> metrics -> handlers -> engines -> evaluation
    -> tools (experiments = bundle)

Checked here:

- no module imports from a layer above its own (module-level imports, imports inside functions and under
  ``if TYPE_CHECKING:`` alike; relative imports are resolved);
- no import cycle between modules of ``common`` through module-level imports (an import inside a function runs
  later, and one under ``if TYPE_CHECKING:`` never runs);
- no import of ``common`` inside a function unless its line carries :data:`CYCLE_MARKER` followed by the reason;
- ``import common`` loads no tool package and no matplotlib module beyond what ``import monai`` loads itself, and
  works without matplotlib installed.

Importing a module also runs the ``__init__`` of each package above it; those implicit imports are not edges of
the import graph (every package's ``__init__`` imports its own modules, which would make every package a cycle).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "common"

LAYERS: tuple[tuple[str, ...], ...] = (
    ("utils",),
    ("losses",),
    ("data",),
    ("networks", "transforms"),
    ("metrics",),
    ("handlers",),
    ("engines",),
    ("evaluation",),
    ("experiments", "bundle"),
)
"""Subpackages of ``common`` by layer, lowest first; subpackages in one tuple share a layer."""

TOOLS: tuple[str, ...] = LAYERS[-1]
"""Subpackages that ``import common`` must not load."""

CYCLE_MARKER = "# cycle:"
"""Comment that allows an import of ``common`` inside a function, followed by the cycle it breaks, e.g.
``from common.engines import StepTrainer  # cycle: common.engines imports this module``."""


@dataclass(frozen=True)
class Import:
    """One import of a module of the package, resolved to the module it loads.

    Attributes:
        source: dotted name of the importing module.
        target: dotted name of the imported module (a package's ``__init__`` when the name is not a module).
        line: line number of the import statement.
        in_function: the statement is inside a function (it runs when the function is called).
        type_checking: the statement is under ``if TYPE_CHECKING:`` (it never runs).
        marked: a line of the statement carries :data:`CYCLE_MARKER`.
    """

    source: str
    target: str
    line: int
    in_function: bool
    type_checking: bool
    marked: bool


def discover_modules(root: Path, package: str) -> dict[str, Path]:
    """All modules of ``package`` found under ``root`` (the folder that contains the package's folder).

    Args:
        root: folder holding the package folder.
        package: name of the top-level package.

    Returns:
        dotted module name -> file path; a package is named by its ``__init__.py``.
    """
    modules = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        if all(part.isidentifier() for part in parts):
            modules[".".join(parts)] = path
    return modules


def _resolve(name: str, modules: Mapping[str, Path]) -> str:
    """The module that ``import name`` loads last: ``name`` itself or its longest prefix that is a module."""
    parts = name.split(".")
    while parts and ".".join(parts) not in modules:
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _statements(tree: ast.AST, in_function: bool = False, type_checking: bool = False) -> Iterator[tuple]:
    """Yield ``(import node, in_function, type_checking)`` for every import statement below ``tree``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, in_function, type_checking
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            yield from _statements(node, True, type_checking)
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                yield from _statements(ast.Module(body=[child], type_ignores=[]), in_function, True)
            for child in node.orelse:
                yield from _statements(ast.Module(body=[child], type_ignores=[]), in_function, type_checking)
        else:
            yield from _statements(node, in_function, type_checking)


def read_imports(root: Path, package: str) -> dict[str, list[Import]]:
    """Read the imports of every module of ``package`` that load a module of ``package``.

    Args:
        root: folder holding the package folder.
        package: name of the top-level package.

    Returns:
        importing module -> its imports of the package's modules, in source order.
    """
    modules = discover_modules(root, package)
    imports: dict[str, list[Import]] = {}
    for name, path in modules.items():
        source = path.read_text()
        lines = source.splitlines()
        is_package = path.name == "__init__.py"
        found = []
        for node, in_function, type_checking in _statements(ast.parse(source, str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:  # relative: the importing module's package, then ``level - 1`` packages up
                    base = name.split(".")[: len(name.split(".")) - node.level + (1 if is_package else 0)]
                    base_name = ".".join(base + ([node.module] if node.module else []))
                else:
                    base_name = node.module or ""
                targets = [
                    f"{base_name}.{alias.name}" if f"{base_name}.{alias.name}" in modules else base_name
                    for alias in node.names
                ]
            text = "\n".join(lines[node.lineno - 1 : (node.end_lineno or node.lineno)])
            for target in dict.fromkeys(targets):  # once per statement and module
                if target != package and not target.startswith(package + "."):
                    continue
                resolved = _resolve(target, modules)
                if resolved and resolved != name:
                    found.append(Import(name, resolved, node.lineno, in_function, type_checking, CYCLE_MARKER in text))
        imports[name] = found
    return imports


def layer_rank(module: str, package: str, layers: Sequence[Sequence[str]]) -> tuple[int | None, str]:
    """Layer of a module of ``package``.

    The package root (whose ``__init__`` imports every runtime package) is in the top runtime layer, the one
    below the tools: importing the root counts as importing every runtime layer, and the root imports no tool.

    Args:
        module: dotted module name.
        package: name of the top-level package.
        layers: subpackage names by layer, lowest first, the tools last.

    Returns:
        the layer index (``None`` for a subpackage in no layer) and a readable name of the layer.
    """
    parts = module.split(".")
    if len(parts) == 1:
        return len(layers) - 2, f"{package} (the package root)"
    for rank, names in enumerate(layers):
        if parts[1] in names:
            return rank, " = ".join(names)
    return None, parts[1]


def layering_violations(
    imports: Mapping[str, Sequence[Import]], package: str, layers: Sequence[Sequence[str]]
) -> list[str]:
    """Imports from a layer above the importer's, and modules in no layer.

    Args:
        imports: output of :func:`read_imports`.
        package: name of the top-level package.
        layers: subpackage names by layer, lowest first.

    Returns:
        one readable line per violation.
    """
    problems = []
    for source, found in sorted(imports.items()):
        rank, layer = layer_rank(source, package, layers)
        if rank is None:
            problems.append(f"{source}: package {layer!r} is in no layer of the layering")
            continue
        for item in found:
            target_rank, target_layer = layer_rank(item.target, package, layers)
            if target_rank is not None and target_rank > rank:
                where = " (inside a function)" if item.in_function else ""
                problems.append(
                    f"{source}:{item.line} ({layer}) imports {item.target} ({target_layer}), a layer above{where}"
                )
    return problems


def find_cycles(imports: Mapping[str, Sequence[Import]]) -> list[list[str]]:
    """Import cycles through module-level imports (those that run when the module is imported).

    Args:
        imports: output of :func:`read_imports`.

    Returns:
        one cycle per strongly connected component of the import graph that has one, as the path
        ``[a, b, ..., a]``.
    """
    graph: dict[str, list[str]] = {
        source: sorted({i.target for i in found if not i.in_function and not i.type_checking})
        for source, found in imports.items()
    }
    # Tarjan's strongly connected components, iterative
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(graph.get(start, [])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(graph.get(child, []))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    cycles = []
    for component in sorted(components):
        members, first = set(component), component[0]
        # shortest path from ``first`` back to itself inside the component (breadth first)
        parents: dict[str, str] = {}
        queue, end = [first], None
        while queue and end is None:
            node = queue.pop(0)
            for child in graph.get(node, []):
                if child == first:
                    end = node
                    break
                if child in members and child not in parents:
                    parents[child] = node
                    queue.append(child)
        path = [first]
        while end is not None and end != first:
            path.append(end)
            end = parents[end]
        cycles.append([first, *reversed(path[1:]), first])
    return cycles


def unmarked_function_imports(imports: Mapping[str, Sequence[Import]]) -> list[str]:
    """Imports of the package inside functions whose statement does not carry :data:`CYCLE_MARKER`.

    Args:
        imports: output of :func:`read_imports`.

    Returns:
        one readable line per such import.
    """
    return [
        f"{item.source}:{item.line} imports {item.target} inside a function without a '{CYCLE_MARKER}' comment"
        for found in imports.values()
        for item in found
        if item.in_function and not item.marked
    ]


def _run_python(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False
    )


# ------------------------------------------------------------------------------------------------------------
# the package
# ------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def imports() -> dict[str, list[Import]]:
    return read_imports(REPO, PACKAGE)


def test_every_package_is_in_a_layer(imports):
    subpackages = {path.parent.name for path in (REPO / PACKAGE).glob("*/__init__.py")}
    assert subpackages == {name for layer in LAYERS for name in layer}


def test_no_import_from_a_layer_above(imports):
    problems = layering_violations(imports, PACKAGE, LAYERS)
    assert not problems, "imports against the layering:\n" + "\n".join(problems)


def test_no_import_cycle(imports):
    cycles = find_cycles(imports)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(cycle) for cycle in cycles)


def test_no_unmarked_import_inside_functions(imports):
    problems = unmarked_function_imports(imports)
    assert not problems, "\n".join(problems)


def test_import_common_loads_no_tools_and_no_plotting():
    """What ``import common`` adds to what ``import monai`` loads (MONAI imports ``matplotlib.pyplot`` itself
    whenever matplotlib is installed, in ``monai.utils.jupyter_utils``)."""
    code = textwrap.dedent("""
        import json, sys
        import monai
        before = set(sys.modules)
        import common
        print(json.dumps(sorted(set(sys.modules) - before)))
        """)
    result = _run_python(code)
    assert result.returncode == 0, result.stderr
    added = json.loads(result.stdout.strip().splitlines()[-1])
    assert "common" in added
    prefixes = ("matplotlib", "mpl_toolkits", *(f"{PACKAGE}.{tool}" for tool in TOOLS))
    unwanted = [m for m in added if any(m == p or m.startswith(p + ".") for p in prefixes)]
    assert not unwanted, f"import common loads: {unwanted}"


def test_import_common_without_matplotlib():
    """With matplotlib not installed (a meta path finder answers as if it were absent), ``import common`` works."""
    code = textwrap.dedent("""
        import sys

        class NoMatplotlib:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("matplotlib", "mpl_toolkits"):
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
                return None

        sys.meta_path.insert(0, NoMatplotlib())
        import common, sys; print('matplotlib' in sys.modules)
        """)
    result = _run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "False"


def test_bundle_configs_use_no_tools():
    for config in sorted((REPO / "bundles").glob("*/configs/**/*.yaml")):
        text = config.read_text()
        for tool in TOOLS:
            assert f"{PACKAGE}.{tool}" not in text, f"{config.relative_to(REPO)} uses {PACKAGE}.{tool}"


# ------------------------------------------------------------------------------------------------------------
# the checker, on a tiny package
# ------------------------------------------------------------------------------------------------------------


def _write_package(root: Path, files: Mapping[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def test_checker_reports_upward_imports_cycles_and_unmarked_function_imports(tmp_path):
    _write_package(
        tmp_path,
        {
            "pkg/__init__.py": "from . import low, high\n",
            "pkg/low/__init__.py": "from .a import A\n",
            "pkg/low/a.py": """
                from typing import TYPE_CHECKING

                import numpy as np

                from pkg.high.b import B  # upward, and half of a cycle

                if TYPE_CHECKING:
                    from pkg.high import c  # upward, never run: not in a cycle

                A = 1


                def late():
                    from ..high import c  # upward and unmarked

                    return c


                def allowed():
                    from pkg.low import d  # cycle: pkg.low.d imports this module

                    return d
                """,
            "pkg/low/d.py": "from .a import A\n",
            "pkg/high/__init__.py": "",
            "pkg/high/b.py": "from ..low import a\nB = 2\n",
            "pkg/high/c.py": "from pkg.high import b\nfrom pkg import low\n",
        },
    )
    layers = (("low",), ("high",), ("tools",))
    imports = read_imports(tmp_path, "pkg")
    targets = {(i.source, i.target, i.in_function, i.type_checking) for i in imports["pkg.low.a"]}
    assert targets == {
        ("pkg.low.a", "pkg.high.b", False, False),
        ("pkg.low.a", "pkg.high.c", False, True),
        ("pkg.low.a", "pkg.high.c", True, False),
        ("pkg.low.a", "pkg.low.d", True, False),
    }
    assert {i.target for i in imports["pkg"]} == {"pkg.low", "pkg.high"}
    assert {i.target for i in imports["pkg.high.c"]} == {"pkg.high.b", "pkg.low"}

    violations = layering_violations(imports, "pkg", layers)
    assert len(violations) == 3 and all(v.startswith("pkg.low.a:") for v in violations)
    assert any("imports pkg.high.b (high), a layer above" in v for v in violations)
    assert sum("inside a function" in v for v in violations) == 1

    assert find_cycles(imports) == [["pkg.high.b", "pkg.low.a", "pkg.high.b"]]

    unmarked = unmarked_function_imports(imports)
    assert len(unmarked) == 1 and unmarked[0].startswith("pkg.low.a:") and "pkg.high.c" in unmarked[0]

    # an unknown subpackage is reported; a longer cycle is reported with its whole path
    _write_package(
        tmp_path,
        {
            "pkg/other/__init__.py": "",
            "pkg/high/b.py": "from pkg.high.c import x\nB = 2\n",
            "pkg/high/c.py": "from pkg.high.e import y\nx = 1\n",
            "pkg/high/e.py": "from . import b\ny = 1\n",
        },
    )
    imports = read_imports(tmp_path, "pkg")
    assert "pkg.other: package 'other' is in no layer of the layering" in layering_violations(imports, "pkg", layers)
    assert find_cycles(imports) == [["pkg.high.b", "pkg.high.c", "pkg.high.e", "pkg.high.b"]]

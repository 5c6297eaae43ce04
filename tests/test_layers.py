"""feedgen's layers import downwards only (docs/internals.md, "Layers").

Every ``.py`` file of the installed packages is parsed with ``ast``; each import of a feedgen
module, at module level or inside a function, is mapped to a layer and checked against two
rules: (1) a module imports its own layer or a lower one, never a higher one nor a sibling;
(2) outside the CLI layer, an import of another layer sits at module level (a function-local
import between layers is how a cycle hides), unless its line says what it defers with a
``# lazy:`` comment (``# lazy: pyspark, only when asked``). Inside one layer, imports
are not checked.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# Bottom to top. Packages in one tuple are siblings: neither may import the other.
LAYERS = [("core",), ("aggregator",), ("generator",), ("registry",), ("pipeline",),
          ("fileserver", "connectors"), ("console",), ("cli",)]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}
CLI_MODULES = {"feedgen.jobs.cli", "feedgen.jobs.commands", "feedgen.jobs.options"}


def layer_of(module: str) -> str | None:
    """The layer of a ``feedgen.*`` module name, or None for a module outside every layer."""
    parts = module.split(".")
    if parts[:3] == ["feedgen", "console", "registry"]:
        return "registry"
    if parts[:2] == ["feedgen", "jobs"]:
        cli = module in CLI_MODULES or (len(parts) > 2 and parts[2].startswith("cmd_"))
        return "cli" if cli else "pipeline"
    top = parts[1] if len(parts) > 1 else ""
    return top if top in RANK else None


def package_dirs() -> dict[str, Path]:
    """Every installed package but the ``feedgen`` root, by name → folder (pyproject.toml)."""
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    return {name: REPO / setuptools["package-dir"][name] for name in setuptools["packages"] if name != "feedgen"}


def modules() -> dict[str, Path]:
    """Module name → file, for every module of every installed package."""
    out = {}
    for package, folder in package_dirs().items():
        for path in sorted(folder.glob("*.py")):
            out[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    return out


def imports(module: str, source: str, known: set[str]):
    """(line, imported feedgen module, function-local?, marked ``# lazy:``?) for each feedgen
    import in ``source``."""
    package = module if module in package_dirs() else module.rpartition(".")[0]
    lines = source.splitlines()
    found = []

    def lazy(node: ast.stmt) -> bool:
        return any("# lazy:" in line for line in lines[node.lineno - 1: node.end_lineno])

    def visit(node: ast.AST, local: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = local or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            if isinstance(child, ast.Import):
                found.extend((child.lineno, a.name, local, lazy(child))
                             for a in child.names if a.name.startswith("feedgen."))
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join([*anchor, *([child.module] if child.module else [])])
                if base == "feedgen" or base.startswith("feedgen."):
                    targets = {f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in child.names}
                    found.extend((child.lineno, target, local, lazy(child)) for target in sorted(targets))
            visit(child, inner)

    visit(ast.parse(source), False)
    return found


def violations(module: str, path: Path, source: str, known: set[str]) -> list[str]:
    """The broken rules of one module, as ``file:line: what`` lines."""
    here = layer_of(module)
    where = path.relative_to(REPO) if path.is_relative_to(REPO) else path
    if here is None:
        return [f"{where}: {module} is in no layer; add its package to LAYERS in {Path(__file__).name}"]
    out = []
    for line, target, local, lazy in imports(module, source, known):
        there = layer_of(target)
        if there is None:
            out.append(f"{where}:{line}: imports {target}, which is in no layer")
        elif there != here and RANK[there] >= RANK[here]:
            out.append(f"{where}:{line}: {here} imports {target} ({there}): upwards or sideways; move the "
                       f"shared code down to a layer both may import")
        elif there != here and local and here != "cli" and not lazy:
            out.append(f"{where}:{line}: {here} imports {target} ({there}) inside a function; import it "
                       "at the top of the module")
    return out


def test_every_installed_package_is_in_a_layer():
    assert {p: layer_of(p) for p in package_dirs() if layer_of(p) is None} == {}


def test_imports_go_down_the_layers_and_sit_at_module_level():
    known = set(modules())
    problems = [v for module, path in sorted(modules().items())
                for v in violations(module, path, path.read_text(encoding="utf-8"), known)]
    assert not problems, "imports against the layers (docs/internals.md, \"Layers\"):\n" + "\n".join(problems)


@pytest.mark.parametrize(("module", "source", "broken"), [
    ("feedgen.generator.x", "from feedgen.jobs.pipeline import run_pipeline\n", "upwards"),
    ("feedgen.fileserver.x", "from feedgen.connectors.base import Item\n", "sideways"),
    ("feedgen.console.x", "def f():\n    from feedgen.core.runs import read_run\n", "inside a function"),
    ("feedgen.console.x", "def f():\n    from feedgen.core.runs import read_run  # lazy: x\n", None),
    ("feedgen.jobs.cmd_x", "def f():\n    from feedgen.jobs.pipeline import run_pipeline\n", None),
    ("feedgen.generator.x", "def f():\n    from .render import get_renderer\n", None),
])
def test_the_checker_names_each_broken_rule(module, source, broken):
    known = {"feedgen.jobs.pipeline", "feedgen.connectors.base", "feedgen.core.runs", "feedgen.generator.render"}
    found = violations(module, REPO / "x.py", source, known)
    assert [broken in v for v in found] == ([True] if broken else [])

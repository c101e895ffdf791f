"""The package's folders are its layers: a module imports only its own package and those below.

Every import counts, at any depth (function-level imports and ``TYPE_CHECKING`` blocks too), so
an upward import cannot hide inside a function. The one exception is the package root's PEP 562
``__getattr__``, which is the public facade (``from gitvault import Vault``) and re-exports the
API lazily; the root itself holds only names, so nothing that imports ``__version__`` from it
reaches upward.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "gitvault"

# Lowest first. Packages of one rank are peers and may not import each other.
LAYERS: list[set[str]] = [
    {"errors"},
    {"core"},
    {"git"},
    {"model"},
    {"history"},
    {"engine"},
    {"api"},
    {"daemon"},
    {"hooks", "mcp", "web"},
    {"cli"},
    {"console"},
    {"__main__"},
]
RANK = {name: i for i, names in enumerate(LAYERS) for name in names}
NO_PYGIT2 = {"core", "errors"}


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports, as absolute dotted names (``from x import y`` gives
    ``x.y`` when ``y`` is a module of the package, else ``x``)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    if path == PKG / "__init__.py":  # the facade: its lazy re-exports and their types
        tree.body = [n for n in tree.body if not isinstance(n, ast.FunctionDef | ast.If)]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join([*base, *([node.module] if node.module else [])])
            else:
                mod = node.module or ""
            subs = {f"{mod}.{a.name}" for a in node.names}
            modules = {s for s in subs if is_module(s)}
            found |= modules
            if len(modules) < len(subs):
                found.add(mod)  # names defined in mod itself (from the root: __version__)
    return found


def is_module(dotted: str) -> bool:
    path = PKG.parent / Path(*dotted.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def graph() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for path in sorted(PKG.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        out[module_name(path)] = imports_of(path)
    return out


def layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "gitvault":
        return None
    return parts[1] if len(parts) > 1 else ""


def test_every_module_lives_in_a_known_layer() -> None:
    unknown = sorted(m for m in graph() if layer(m) not in RANK and layer(m) != "")
    assert not unknown, f"modules outside every layer (add the package to LAYERS): {unknown}"


def test_no_import_points_up_or_sideways_a_layer() -> None:
    bad = []
    for mod, deps in graph().items():
        here = layer(mod)
        if here == "":
            continue  # the root: names only (its lazy facade is left out, see above)
        for dep in deps:
            there = layer(dep)
            if there is None or there == here or there == "" or here is None:
                continue
            if RANK[there] >= RANK[here]:
                bad.append(f"{mod} -> {dep}")
    assert not bad, "imports that point up (or across to a peer) a layer:\n" + "\n".join(bad)


def test_the_import_graph_has_no_cycle() -> None:
    g = {m: {d for d in deps if d in graph_cache and d != m} for m, deps in graph_cache.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for d in sorted(g[m]):
            if state.get(d) == 1:
                return [*stack[stack.index(d) :], d]
            if d not in state and (cycle := visit(d)) is not None:
                return cycle
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(g):
        if m not in state and (cycle := visit(m)) is not None:
            pytest.fail("import cycle: " + " -> ".join(cycle))


@pytest.mark.parametrize("package", sorted(NO_PYGIT2))
def test_the_lowest_layers_use_no_git(package: str) -> None:
    users = sorted(
        m
        for m, deps in graph_cache.items()
        if layer(m) == package and any(d.split(".")[0] == "pygit2" for d in deps)
    )
    assert not users, f"{package} must not import pygit2: {users}"


def test_the_console_script_imports_neither_pygit2_nor_typer_at_module_level() -> None:
    tree = ast.parse((PKG / "console.py").read_text(encoding="utf-8"))
    top = {a.name for n in tree.body if isinstance(n, ast.Import) for a in n.names}
    top |= {n.module or "" for n in tree.body if isinstance(n, ast.ImportFrom)}
    assert not {m.split(".")[0] for m in top} & {"pygit2", "typer", "click"}
    assert top <= {"__future__", "os", "sys", "gitvault.daemon.client"}  # the rest: lazily


graph_cache = graph()

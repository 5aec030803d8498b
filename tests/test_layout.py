"""The checks a newcomer makes of the package's layout, kept true from now on.

- no module under ``src/conveyor`` over 600 lines;
- no module imports another's private names (``from .x import _y``), whatever
  ``x`` is: what modules share lives in an internal module (one whose own name
  starts with ``_``: ``_scripts``, ``_render``, ``_schedule``) under a name
  without the underscore, which is the package's internal API;
- no circular import at run time: the module-level imports between conveyor
  modules (not those under ``if TYPE_CHECKING:`` or inside functions) form no
  cycle;
- every Redis script call goes through ``conveyor._scripts``.

The modules are read with :mod:`ast`, not imported.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import conveyor

SRC = Path(conveyor.__file__).parent
MAX_LINES = 600

KNOWN_LONG: set[str] = set()
# Script calls outside conveyor._scripts, as (file, the call): none left.
KNOWN_SCRIPT_CALLS: set[tuple[str, str]] = set()


def modules() -> Iterator[tuple[str, Path]]:
    """(dotted name, path) of every module of the package."""
    for path in sorted(SRC.rglob("*.py")):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        yield ".".join(parts), path


def is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def resolve(module: str, path: Path, node: ast.ImportFrom) -> str:
    """The absolute name that ``from <node.module> import ...`` in ``module`` reads."""
    if node.level == 0:
        return node.module or ""
    package = module.split(".") if is_package(path) else module.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def runtime_imports(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    """Imports run when the module is imported: at module level, outside
    ``if TYPE_CHECKING:`` (its ``else:`` branch does run), and inside ``try:``."""

    def walk(body: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
        for stmt in body:
            if isinstance(stmt, ast.Import | ast.ImportFrom):
                yield stmt
            elif isinstance(stmt, ast.If):
                test = ast.unparse(stmt.test)
                if test not in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
                    yield from walk(stmt.body)
                yield from walk(stmt.orelse)
            elif isinstance(stmt, ast.Try):
                for block in (stmt.body, stmt.orelse, stmt.finalbody):
                    yield from walk(block)
                for handler in stmt.handlers:
                    yield from walk(handler.body)
            elif isinstance(stmt, ast.With):
                yield from walk(stmt.body)

    yield from walk(tree.body)


def private_imports() -> set[tuple[str, str]]:
    """(importer, "module._name") for each ``from .x import _y`` across modules."""
    names = {module for module, _ in modules()}
    found = set()
    for module, path in modules():
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if not isinstance(node, ast.ImportFrom):
                continue
            source = resolve(module, path, node)
            if not source.startswith("conveyor"):
                continue
            for alias in node.names:
                # ``from . import _render`` names an internal module: allowed.
                if (alias.name.startswith("_") and not alias.name.startswith("__")
                        and f"{source}.{alias.name}" not in names):
                    found.add((module, f"{source}.{alias.name}"))
    return found


def import_graph() -> dict[str, set[str]]:
    """module -> the conveyor modules its run-time imports load."""
    names = {module for module, _ in modules()}
    graph: dict[str, set[str]] = {module: set() for module in names}
    for module, path in modules():
        for node in runtime_imports(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                source = resolve(module, path, node)
                # ``from . import x`` loads the submodule x when there is one.
                targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in names else source
                           for a in node.names]
            for target in targets:
                # Importing a.b.c first imports the packages a and a.b; those that
                # hold the importer are loaded before it anyway, so are no edge
                # unless named themselves (``from .. import Queue``).
                parts = target.split(".")
                for i in range(1, len(parts) + 1):
                    name = ".".join(parts[:i])
                    held = module.startswith(name + ".") and name != target
                    if name in names and name != module and not held:
                        graph[module].add(name)
    return graph


def cycles(graph: dict[str, set[str]]) -> set[tuple[str, ...]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: set[tuple[str, ...]] = set()

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.add(tuple(sorted(component)))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


# -- the checks ----------------------------------------------------------------------


def test_no_module_is_over_600_lines() -> None:
    long = {
        str(path.relative_to(SRC)): n
        for _, path in modules()
        if (n := len(path.read_text("utf-8").splitlines())) > MAX_LINES
    }
    assert {name for name in long if name not in KNOWN_LONG} == set(), long
    assert set(long) >= KNOWN_LONG, "a module listed as long is no longer: drop it from KNOWN_LONG"


def test_no_module_imports_another_modules_private_names() -> None:
    assert private_imports() == set()


def test_no_import_cycle_at_run_time() -> None:
    assert cycles(import_graph()) == set()


SCRIPT_CALL = re.compile(r"\bevalsha(_ro)?\b|\bregister_script\b|\bfcall(_ro)?\b|\.eval(_ro)?\(|"
                         r"\bscripts\.call\(|\bscript_load\b|\bfunction_load\b", re.IGNORECASE)


def test_every_script_call_goes_through_the_scripts_module() -> None:
    outside = {
        (str(path.relative_to(SRC)), line.strip())
        for module, path in modules() if not module.startswith("conveyor._scripts")
        for line in path.read_text("utf-8").splitlines()
        if SCRIPT_CALL.search(line)
    }
    known = {(name, line) for name, line in outside
             if any(name == file and call in line for file, call in KNOWN_SCRIPT_CALLS)}
    assert outside - known == set()
    assert len(known) == len(KNOWN_SCRIPT_CALLS), "fixed: drop it from KNOWN_SCRIPT_CALLS"


# -- the checks check ------------------------------------------------------------------


def test_the_checks_see_what_they_look_for() -> None:
    """The walkers skip TYPE_CHECKING and function-level imports, find a cycle,
    see the package's real imports, and the pattern sees a script call."""
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "from .a import b\n"
        "if TYPE_CHECKING:\n    from .c import d\n"
        "def f():\n    from .e import g\n"
    )
    assert [ast.unparse(n) for n in runtime_imports(tree)] == [
        "from typing import TYPE_CHECKING", "from .a import b"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == {("a", "b", "c")}
    graph = import_graph()
    assert "conveyor.queue" in graph["conveyor"]
    assert "conveyor.keys" in graph["conveyor.queue"]
    assert "conveyor.queue" not in graph["conveyor.admin"]  # under TYPE_CHECKING only
    assert SCRIPT_CALL.search("await client.evalsha(sha, 1, key)")
    assert SCRIPT_CALL.search('client.execute_command("EVALSHA", sha, 0)')
    assert not SCRIPT_CALL.search("await self.scripts.add_jobs(None, jobs)")

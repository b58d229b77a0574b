"""The TLS engine's modules import each other without cycles (issue 13) and never import upward into the
daemons (edge, client, server, cli). Static: every import statement counts, TYPE_CHECKING ones included."""

from __future__ import annotations

import ast
from pathlib import Path

import keyless.tls

PACKAGE = Path(keyless.tls.__file__).parent
HIGHER = ("keyless.edge", "keyless.client", "keyless.server", "keyless.cli")


def imports_of(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def graph() -> dict[str, set[str]]:
    modules = {f"keyless.tls.{p.stem}": p for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    return {name: {m for m in imports_of(path) if m in modules and m != name} for name, path in modules.items()}


def test_no_import_cycle_between_tls_modules() -> None:
    edges = graph()
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(edges[module]):
            if state.get(target) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*path[path.index(target):], target]))
            if target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])


def test_tls_never_imports_the_daemons() -> None:
    upward = {
        path.name: sorted(m for m in imports_of(path) if m.startswith(HIGHER))
        for path in PACKAGE.glob("*.py")
    }
    assert {name: found for name, found in upward.items() if found} == {}

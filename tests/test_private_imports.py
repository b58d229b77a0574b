"""Each part of keyless uses the others through their public names only (no ``_private`` imports across parts)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "keyless"
PARTS = tuple(sorted(p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").exists()))


def private_imports_across_parts(part: str) -> list[str]:
    found = []
    for path in sorted((SRC / part).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.ImportFrom) or not node.module or not node.module.startswith("keyless."):
                continue
            if node.module.split(".")[1] == part:
                continue  # within one part, private helpers are fine
            found += [f"{path.relative_to(SRC)}: {node.module}.{alias.name}" for alias in node.names
                      if alias.name.startswith("_") or any(p.startswith("_") for p in node.module.split("."))]
    return found


@pytest.mark.parametrize("part", PARTS)
def test_no_private_imports_from_other_parts(part: str) -> None:
    assert private_imports_across_parts(part) == []

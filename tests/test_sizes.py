"""Sizes that fit in a head: a module past ~500 lines, or a function past ~60 of its own, is
probably two things. A function's own lines leave out the functions nested in it, so a
``register`` that defines a group of small tools counts as the table it is.
"""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "gitvault"
MODULE_LINES = 520
FUNCTION_LINES = 70


def own_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    total = (node.end_lineno or node.lineno) - node.lineno + 1
    for child in ast.walk(node):
        if child is not node and isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
            total -= (child.end_lineno or child.lineno) - child.lineno + 1
    return total


def modules() -> list[Path]:
    return sorted(p for p in PKG.rglob("*.py") if "__pycache__" not in p.parts)


def test_no_module_is_past_the_limit() -> None:
    big = {
        str(p.relative_to(PKG)): n
        for p in modules()
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MODULE_LINES
    }
    assert not big, f"modules over {MODULE_LINES} lines (split them by concern): {big}"


def test_no_function_is_past_the_limit() -> None:
    long = {}
    for p in modules():
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = own_lines(node)
                if n > FUNCTION_LINES:
                    long[f"{p.relative_to(PKG)}:{node.lineno} {node.name}"] = n
    assert not long, f"functions over {FUNCTION_LINES} lines of their own: {long}"

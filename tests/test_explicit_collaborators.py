"""Services get their collaborators as arguments (docs/conventions.md, "Routes"): from their context
(``<service>.context``), never from ``app.state`` or from what every session of the database shares
(``Database.session_info``), where a missing one goes unnoticed until a request needs it. A session's own
``info`` may still carry what is true of that session alone (changes to count once it commits)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _ends_with_app(node: ast.expr) -> bool:
    return (isinstance(node, ast.Name) and node.id == "app") or (
        isinstance(node, ast.Attribute) and node.attr == "app"
    )


def hidden_collaborators(source: str) -> list[int]:
    """The lines of ``source`` that reach ``app.state`` or ``session_info``."""
    return sorted(
        node.lineno
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Attribute)
        and ((node.attr == "state" and _ends_with_app(node.value)) or node.attr == "session_info")
    )


def test_the_check_finds_each_way_in() -> None:
    source = (
        "a = request.app.state.protection\nb = app.state.x\nc = db.session_info['k']\nd = request.state.c\n"
    )
    assert hidden_collaborators(source) == [1, 2, 3]


def test_no_service_looks_its_collaborators_up() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in sorted(ROOT.glob("services/*/src/**/*.py"))
        for line in hidden_collaborators(path.read_text(encoding="utf-8"))
    ]
    assert found == []

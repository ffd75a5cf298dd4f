"""Insert-or-ignore and upserts go through servicekit.db's portable helpers: no ``postgresql.insert`` or
``sqlite.insert`` anywhere else (docs/conventions.md)."""

from __future__ import annotations

import ast
from pathlib import Path

from _lintkit import Violation, imports, main, parse, python_files

RULE = "portable-upsert"
HELPER = Path("libs/servicekit/src/servicekit/db.py")
DIALECTS = ("sqlalchemy.dialects.postgresql", "sqlalchemy.dialects.sqlite")


def dialect_aliases(tree: ast.Module) -> set[str]:
    """Names bound to a dialect module (``from sqlalchemy.dialects import postgresql as pg`` → ``pg``)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "sqlalchemy.dialects":
            names |= {
                alias.asname or alias.name for alias in node.names if alias.name in ("postgresql", "sqlite")
            }
        elif isinstance(node, ast.Import):
            names |= {alias.asname for alias in node.names if alias.name in DIALECTS and alias.asname}
    return names


def inserts(path: Path) -> list[Violation]:
    """Each dialect insert ``path`` imports or builds."""
    tree = parse(path)
    found: list[Violation] = []
    for imported in imports(path, tree):
        if any(module in (f"{d}.insert" for d in DIALECTS) for module in imported.modules):
            found.append(Violation(path, imported.line, f"{RULE}: a dialect's insert; use servicekit.db"))
    aliases = dialect_aliases(tree)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr == "insert"
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
        ):
            found.append(Violation(path, node.lineno, f"{RULE}: {node.value.id}.insert; use servicekit.db"))
    return found


def check(root: Path) -> list[Violation]:
    return [
        violation
        for path in python_files(root, "services/*", "libs/*")
        if path.relative_to(root) != HELPER
        for violation in inserts(path)
    ]


if __name__ == "__main__":
    main(check)

"""Insert-or-ignore and upserts go through servicekit.db's portable helper: no ``postgresql.insert`` or
``sqlite.insert`` anywhere else (docs/conventions.md). Files still to convert are listed, one path a line, in
``scripts/linters/portable_upsert_allowed.txt``; the list only shrinks: a listed file that builds no dialect
insert any more is reported until its line goes."""

from __future__ import annotations

import ast
from pathlib import Path

from _lintkit import Violation, imports, main, parse, python_files

RULE = "portable-upsert"
HELPER = Path("libs/servicekit/src/servicekit/db.py")
DIALECTS = ("sqlalchemy.dialects.postgresql", "sqlalchemy.dialects.sqlite")
ALLOWED = Path("scripts/linters/portable_upsert_allowed.txt")


def listed(root: Path) -> dict[Path, int]:
    """The files of the allow-list (relative to ``root``), each with its line in the list."""
    allow_list = root / ALLOWED
    lines = allow_list.read_text().splitlines() if allow_list.is_file() else []
    return {
        Path(line.strip()): number
        for number, line in enumerate(lines, start=1)
        if line.strip() and not line.startswith("#")
    }


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
    allowed = listed(root)
    found: list[Violation] = []
    for path in python_files(root, "services/*", "libs/*"):
        relative = path.relative_to(root)
        if relative != HELPER and relative not in allowed:
            found += inserts(path)
    for relative, line in allowed.items():
        if not (root / relative).is_file() or not inserts(root / relative):
            message = f"{RULE}: {relative} builds no dialect insert any more; remove it from this list"
            found.append(Violation(root / ALLOWED, line, message))
    return found


if __name__ == "__main__":
    main(check)

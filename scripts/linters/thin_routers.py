"""Routers are thin: they parse, call a service function and shape the answer (docs/conventions.md). A router
(``router.py``, ``*_router.py``) imports no ORM model (a class of a ``models`` module with a ``__tablename__``)
and no repository. The enums of a ``models`` module (statuses, channels) are part of the API's vocabulary and
may be imported."""

from __future__ import annotations

import ast
from pathlib import Path

from _lintkit import Import, Violation, imports, main, parse, python_files

RULE = "thin-routers"


def is_router(path: Path) -> bool:
    return path.name == "router.py" or path.name.endswith("_router.py")


def source_of(root: Path, module: str) -> Path | None:
    """The file of ``module`` under some ``services/*/src`` (``None`` if it is not a service's module)."""
    for src in root.glob("services/*/src"):
        for candidate in (
            src / f"{module.replace('.', '/')}.py",
            src / module.replace(".", "/") / "__init__.py",
        ):
            if candidate.is_file():
                return candidate
    return None


def tables(path: Path) -> set[str]:
    """The classes of ``path`` mapped to a table."""
    return {
        node.name
        for node in parse(path).body
        if isinstance(node, ast.ClassDef)
        and any(
            isinstance(item, ast.Assign)
            and any(getattr(t, "id", None) == "__tablename__" for t in item.targets)
            for item in node.body
        )
    }


def offence(root: Path, imported: Import) -> str | None:
    base, *names = imported.modules
    last = base.rsplit(".", 1)[-1]
    if last == "repository" or any(name.endswith(".repository") for name in names):
        return f"{RULE}: a router imports {base}; call a service function"
    if any(name.endswith(".models") for name in names) or (last == "models" and not names):
        return f"{RULE}: a router imports a models module; call a service function"
    if last == "models":
        source = source_of(root, base)
        mapped = tables(source) if source else set()
        for name in names:
            if name.rsplit(".", 1)[-1] in mapped:
                return f"{RULE}: a router imports the ORM model {name}; call a service function"
    return None


def check(root: Path) -> list[Violation]:
    found: list[Violation] = []
    for path in python_files(root, "services/*/src"):
        if is_router(path):
            for imported in imports(path, parse(path)):
                message = offence(root, imported)
                if message:
                    found.append(Violation(path, imported.line, message))
    return found


if __name__ == "__main__":
    main(check)

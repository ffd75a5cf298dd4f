"""Background loops live in ``<package>/workers/`` (docs/conventions.md): outside it, no module of a service
defines a subclass of servicekit's ``PeriodicWorker`` or ``QueueWorker`` or builds one. The domain logic a
worker calls stays in its domain's service."""

from __future__ import annotations

import ast
from pathlib import Path

from _lintkit import Violation, main, parse, python_files

RULE = "workers-location"
LOOPS = ("PeriodicWorker", "QueueWorker")


def named(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def check(root: Path) -> list[Violation]:
    found: list[Violation] = []
    for path in python_files(root, "services/*/src"):
        if "workers" in path.relative_to(root).parts:
            continue
        for node in ast.walk(parse(path)):
            if isinstance(node, ast.ClassDef) and any(named(base) in LOOPS for base in node.bases):
                found.append(
                    Violation(
                        path, node.lineno, f"{RULE}: worker class {node.name} outside a workers/ package"
                    )
                )
            elif isinstance(node, ast.Call) and named(node.func) in LOOPS:
                found.append(
                    Violation(
                        path, node.lineno, f"{RULE}: {named(node.func)} built outside a workers/ package"
                    )
                )
    return found


if __name__ == "__main__":
    main(check)

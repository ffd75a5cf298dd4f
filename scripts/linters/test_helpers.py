"""Tests import their helpers from an installed package (``<package>.testing``, ``desk_testing``): no
``sys.path`` edits, no ``from conftest import``, no importing another test module or a tests folder
(docs/conventions.md)."""

from __future__ import annotations

import ast
from pathlib import Path

from _lintkit import Violation, imports, main, parse, python_files, top

RULE = "test-helpers"
TESTS = ("tests", "libs/*/tests", "services/*/tests", "testing/*")


def check(root: Path) -> list[Violation]:
    found: list[Violation] = []
    for path in python_files(root, *TESTS):
        tree = parse(path)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and node.attr == "path"
                and isinstance(node.value, ast.Name)
                and node.value.id == "sys"
            ):
                found.append(Violation(path, node.lineno, f"{RULE}: sys.path is edited or read in a test"))
        for imported in imports(path, tree):
            module = imported.modules[0]
            from_tests = "tests" in module.split(".")  # libs.servicekit.tests.x, by its rootdir-relative name
            if (
                module == "sys.path"
                or top(module) == "conftest"
                or top(module).startswith("test_")
                or from_tests
            ):
                what = module if module == "sys.path" or from_tests else top(module)
                found.append(
                    Violation(
                        path, imported.line, f"{RULE}: imports {what}; import helpers from a testing package"
                    )
                )
    return found


if __name__ == "__main__":
    main(check)

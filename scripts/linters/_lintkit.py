"""What every convention linter shares: the Python files of a part of the tree, their imports, and one line per
violation (``path:line: rule: what is wrong``).

Each linter in this folder checks one convention of docs/conventions.md. Run one with
``python scripts/linters/<name>.py [ROOT]`` (ROOT defaults to the repository); it prints its violations and
exits 1 if there are any. ``make lint`` runs them all."""

from __future__ import annotations

import ast
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]
SKIPPED = {".venv", ".tools", "__pycache__", "node_modules", ".git", "var"}


@dataclass(frozen=True, order=True)
class Violation:
    path: Path
    line: int
    message: str


@dataclass(frozen=True)
class Import:
    """One imported module (``import a.b`` → ``a.b``; ``from a.b import c`` → ``a.b`` and ``a.b.c``)."""

    line: int
    modules: tuple[str, ...]


def python_files(root: Path, *patterns: str) -> Iterator[Path]:
    """The ``.py`` files under each glob ``pattern`` (a folder), outside virtualenvs and caches."""
    for pattern in patterns:
        for folder in sorted(root.glob(pattern)):
            for path in sorted(folder.rglob("*.py")):
                if not SKIPPED & set(path.relative_to(root).parts):
                    yield path


def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def module_name(path: Path) -> str:
    """``services/x/src/pkg/a/b.py`` as ``pkg.a.b`` (relative imports resolve against it)."""
    parts = path.with_suffix("").parts
    parts = parts[parts.index("src") + 1 :] if "src" in parts else parts[-1:]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, tree: ast.Module) -> Iterator[Import]:
    """Every import in ``tree``, relative ones resolved against the file's package."""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield Import(node.lineno, tuple(alias.name for alias in node.names))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[: len(package) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            yield Import(node.lineno, (base, *(f"{base}.{alias.name}" for alias in node.names)))


def service_packages(root: Path) -> dict[str, str]:
    """Each service's import package → its folder under services/ (``order_api`` → ``order-api``)."""
    return {
        package.name: package.parents[1].name
        for package in sorted(root.glob("services/*/src/*"))
        if (package / "__init__.py").is_file()
    }


def top(module: str) -> str:
    return module.split(".", 1)[0]


def main(check: Callable[[Path], list[Violation]]) -> None:
    """Run ``check`` over ``sys.argv[1]`` (or the repository), print each violation, exit 1 if any."""
    root = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else REPOSITORY
    violations = sorted(check(root))
    for violation in violations:
        print(f"{violation.path.relative_to(root)}:{violation.line}: {violation.message}")
    sys.exit(1 if violations else 0)

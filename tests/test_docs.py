"""The guides point at code that exists: every file path written in ``docs/*.md`` and the README (in
backticks, or as a markdown link) names a file or folder of the repository, so moving code without updating
the docs fails here. And nothing refers to a design document outside the repository."""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GUIDES = sorted((ROOT / "docs").glob("*.md"))
DOCUMENTS = [ROOT / "README.md", ROOT / "deploy" / "README.md", *GUIDES]
SKIPPED_DIRECTORIES = {".git", ".venv", ".tools", "var", "node_modules", ".mypy_cache", ".ruff_cache"}
TEXT_SUFFIXES = {".py", ".md", ".toml", ".yaml", ".yml", ".sql", ".ini", ".html", ".txt", ".mako", ".sh"}
TEXT_NAMES = {"Makefile", "Dockerfile"}
GENERATED = {
    line.strip().strip("/")
    for line in (ROOT / ".gitignore").read_text().splitlines()
    if line.strip() and not line.startswith("#") and not any(sign in line for sign in "*?[!")
}
"""Files the docs may name that are written on a developer's machine and never committed (``.gitignore``)."""

FENCED_BLOCK = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
EXAMPLE_SOURCE = re.compile(r"^```\w*\n# ([\w.\-/]+\.\w+)\n", re.MULTILINE)
"""A code example whose first line names the file it comes from (``# services/…/router.py``)."""
INLINE_CODE = re.compile(r"`([^`\n]+)`")
MARKDOWN_LINK = re.compile(r"\]\(([^)\s]+)\)")
PATH_LIKE = re.compile(r"^[\w.\-*/]+(::\w+)?$")


def top_level_names() -> set[str]:
    return {entry.name for entry in ROOT.iterdir() if entry.name not in SKIPPED_DIRECTORIES} | {"docs"}


def package_roots() -> dict[str, Path]:
    """Import name → the folder holding it (``order_api`` → ``services/order-api/src``), so that a path
    written from a package (``order_api/orders/lifecycle.py``) is checked too."""
    return {
        package.name: package.parent
        for pattern in ("services/*/src/*", "libs/*/src/*")
        for package in ROOT.glob(pattern)
        if package.is_dir()
    }


def prose(document: Path) -> str:
    """The document without its fenced code blocks (code there is illustration, not a reference)."""
    return FENCED_BLOCK.sub("", document.read_text())


def written_paths(document: Path) -> Iterator[tuple[str, Path]]:
    """Every path the document names, with the folder it is relative to: backticked paths from the
    repository's root (or from a package's source folder), markdown links from the document's folder."""
    text = prose(document)
    top, packages = top_level_names(), package_roots()
    sources = EXAMPLE_SOURCE.findall(document.read_text())
    for token in [*INLINE_CODE.findall(text), *sources]:
        token = token.strip()
        if "/" not in token or not PATH_LIKE.match(token) or token.startswith(("/", "./")):
            continue  # a route, a placeholder (``<service>/…``), a command line, a MIME type
        first = token.split("/", 1)[0]
        if first in top:
            yield token, ROOT
        elif first in packages:
            yield token, packages[first]
    for target in MARKDOWN_LINK.findall(text):
        if "://" in target or target.startswith(("#", "mailto:")):
            continue
        yield target.split("#", 1)[0], document.parent


def anchors(document: Path) -> set[str]:
    """The anchors GitHub gives the document's headings (``## Measured in `make bench` `` →
    ``measured-in-make-bench``)."""
    headings = re.findall(r"^#+ (.+)$", prose(document), re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def linked_anchors(document: Path) -> Iterator[tuple[str, Path]]:
    """Every ``#anchor`` the document links to, with the document it is in."""
    for target in MARKDOWN_LINK.findall(prose(document)):
        if "://" in target or "#" not in target:
            continue
        file_part, anchor = target.split("#", 1)
        yield anchor, (document.parent / file_part).resolve() if file_part else document


def exists(path: str, base: Path) -> bool:
    file_part, _, test_name = path.partition("::")
    if file_part.rstrip("/") in GENERATED:
        return True
    matches = list(base.glob(file_part.rstrip("/"))) if "*" in file_part else [base / file_part]
    if not any(match.exists() for match in matches):
        return False
    if test_name:  # ``tests/test_x.py::test_name``: the test is there too
        return any(re.search(rf"def {re.escape(test_name)}\b", match.read_text()) for match in matches)
    return True


def test_the_guides_exist_and_the_readme_points_to_them() -> None:
    assert {guide.name for guide in GUIDES} >= {"architecture.md", "conventions.md"}
    readme = (ROOT / "README.md").read_text()
    head = readme[: readme.index("## Using the API")]  # right after the two commands and a first call
    assert "docs/architecture.md" in head
    assert "docs/conventions.md" in head


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda document: str(document.relative_to(ROOT)))
def test_every_path_a_document_names_exists(document: Path) -> None:
    paths = list(written_paths(document))
    missing = sorted({path for path, base in paths if not exists(path, base)})
    assert paths, f"{document.name} names no file at all: is the path pattern still right?"
    assert missing == [], f"{document.name} names paths that are not in the repository: {missing}"


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda document: str(document.relative_to(ROOT)))
def test_every_section_a_document_links_to_exists(document: Path) -> None:
    broken = sorted(
        f"{target.name}#{anchor}"
        for anchor, target in linked_anchors(document)
        if not target.is_file() or anchor not in anchors(target)
    )
    assert broken == [], f"{document.name} links to sections that are not there: {broken}"


def test_a_moved_file_is_caught(tmp_path: Path) -> None:
    """The check itself: a path that does not exist, and a test that is not in its file, are reported."""
    assert exists("services/order-api/src/order_api/orders/lifecycle.py", ROOT)
    assert not exists("services/order-api/src/order_api/orders/nowhere.py", ROOT)
    assert exists("tests/test_docs.py::test_a_moved_file_is_caught", ROOT)
    assert not exists("tests/test_docs.py::test_that_was_renamed", ROOT)
    page = tmp_path / "page.md"
    page.write_text(
        "See `services/order-api/src/gone.py`, `order_api/gone.py` and [x](../gone.md).\n\n"
        "```python\n# libs/servicekit/src/servicekit/gone.py\nimport gone  # `tests/in_code.py`\n```\n"
    )
    named = {path for path, _ in written_paths(page)}
    assert named == {
        "services/order-api/src/gone.py",
        "order_api/gone.py",
        "../gone.md",
        "libs/servicekit/src/servicekit/gone.py",
    }
    assert anchors(ROOT / "docs" / "architecture.md") >= {"measured-in-make-bench", "the-order-lifecycle"}


def repository_text_files() -> Iterator[Path]:
    for path in ROOT.rglob("*"):
        if any(part in SKIPPED_DIRECTORIES for part in path.relative_to(ROOT).parts):
            continue
        if path.is_file() and (path.suffix in TEXT_SUFFIXES or path.name in TEXT_NAMES):
            yield path


def test_nothing_cites_a_design_document_outside_the_repository() -> None:
    outside = re.compile("DESIGN" + r"(\.md|\s*§)")
    citing = [
        str(path.relative_to(ROOT))
        for path in repository_text_files()
        if outside.search(path.read_text(errors="replace"))
    ]
    assert citing == [], f"point to docs/architecture.md or docs/conventions.md instead: {citing}"


DOTTED_NAME = re.compile(r"^([a-z_]+)(\.[A-Za-z_]\w*)+$")


def written_names(document: Path) -> Iterator[str]:
    """Every dotted name of the desk's own code the document writes in backticks (``servicekit.db.upsert``,
    ``order_api.context.OrderApiContext``)."""
    ours = set(package_roots()) | {"desk_testing"}
    for token in INLINE_CODE.findall(prose(document)):
        token = token.strip().removesuffix("()")
        match = DOTTED_NAME.match(token)
        if match and match.group(1) in ours:
            yield token


def resolves(name: str) -> bool:
    """``name`` is a module of ours, or an attribute reached from the longest module prefix of it."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found: object = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[cut:]:
            if not hasattr(found, attribute):
                return False
            found = getattr(found, attribute)
        return True
    return False


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda document: str(document.relative_to(ROOT)))
def test_every_module_and_name_a_document_writes_exists(document: Path) -> None:
    missing = sorted({name for name in written_names(document) if not resolves(name)})
    assert missing == [], f"{document.name} names code that is not there: {missing}"


def test_a_renamed_function_is_caught() -> None:
    assert resolves("servicekit.pagination.Keyset")
    assert resolves("order_api.orders.intake")
    assert not resolves("servicekit.pagination.encode_cursor_v0")
    assert not resolves("order_api.orders.nowhere")

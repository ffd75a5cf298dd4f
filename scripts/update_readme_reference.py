"""Rewrite the configuration reference in README.md from the services' settings:
``.venv/bin/python scripts/update_readme_reference.py`` (tests/test_readme.py fails when it is stale)."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import settings_reference

README = Path(__file__).resolve().parents[1] / "README.md"
START = "<!-- settings-reference:start -->"
END = "<!-- settings-reference:end -->"


def main() -> None:
    text = README.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"README.md lacks the {START} … {END} markers")
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        settings_reference.main()
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    README.write_text(f"{head}{START}\n{buffer.getvalue().strip()}\n{END}{tail}")


if __name__ == "__main__":
    main()

"""Rewrite the generated parts of README.md: the configuration reference from the services' settings and the
event catalogues from ``desk_contracts.events`` and ``notifier.webhooks.events``: ``.venv/bin/python scripts/update_readme_reference.py``
(tests/test_readme.py fails when either is stale)."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import event_catalogue
import settings_reference

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = {
    "settings-reference": settings_reference.main,
    "event-catalogue": event_catalogue.main,
    "webhook-catalogue": event_catalogue.webhooks_main,
}
"""Each generated block of the README, between ``<!-- name:start -->`` and ``<!-- name:end -->``."""


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def block(text: str, name: str) -> str:
    """What the README holds between ``name``'s markers."""
    start, end = markers(name)
    if start not in text or end not in text:
        raise SystemExit(f"README.md lacks the {start} … {end} markers")
    return text.split(start, 1)[1].split(end, 1)[0]


def generated(name: str) -> str:
    """What belongs between ``name``'s markers, as the code says now."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        BLOCKS[name]()
    return f"\n{buffer.getvalue().strip()}\n"


def main() -> None:
    text = README.read_text()
    for name in BLOCKS:
        start, end = markers(name)
        text = text.replace(f"{start}{block(text, name)}{end}", f"{start}{generated(name)}{end}")
    README.write_text(text)


if __name__ == "__main__":
    main()

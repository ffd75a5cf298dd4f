"""``python -m notifier preview [--template NAME] [--locale ru|en] [--out DIR]``: render templates with
sample data, printed or written as ``<template>.<locale>.html/.txt`` (plus ``.subject``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from notifier.messages import LOCALES, SAMPLE_VARIABLES, TEMPLATES, render_email


def preview(*, templates: Sequence[str], locales: Sequence[str], out: Path | None) -> list[Path]:
    written: list[Path] = []
    for template in templates:
        for locale in locales:
            rendered = render_email(template, locale, SAMPLE_VARIABLES[template])
            if out is None:
                sys.stdout.write(
                    f"===== {template} [{locale}] =====\nSubject: {rendered.subject}\n\n"
                    f"--- text ---\n{rendered.text}\n--- html ---\n{rendered.html}\n"
                )
                continue
            out.mkdir(parents=True, exist_ok=True)
            for suffix, content in (
                ("subject", rendered.subject),
                ("txt", rendered.text),
                ("html", rendered.html),
            ):
                path = out / f"{template}.{locale}.{suffix}"
                path.write_text(content, encoding="utf-8")
                written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m notifier")
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser("preview", help="render every template with sample data")
    command.add_argument("--template", choices=TEMPLATES, help="only this template")
    command.add_argument("--locale", choices=LOCALES, help="only this language")
    command.add_argument("--out", type=Path, help="write files into this directory instead of printing")
    args = parser.parse_args(argv)
    written = preview(
        templates=[args.template] if args.template else list(TEMPLATES),
        locales=[args.locale] if args.locale else list(LOCALES),
        out=args.out,
    )
    for path in written:
        sys.stdout.write(f"{path}\n")


if __name__ == "__main__":
    main()

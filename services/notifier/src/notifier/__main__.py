"""The notifier's command line, for people:

    python -m notifier preview [--template NAME] [--locale ru|en] [--out DIR]
        Render templates with sample data, printed or written as ``<template>.<locale>.html/.txt`` (plus
        ``.subject``).
    python -m notifier mail-list [--grep TEXT] [--full] [--dir DIR]
        The emails of the mail drop (``var/mail/`` under ``make run``), decoded, oldest first: number, date,
        recipient, subject and the first lines of the text (all of it with ``--full``). ``--grep`` keeps those
        whose recipient, subject or text contain TEXT (an order id, an address), in any case; exit 1 when none.
    python -m notifier mail-show N|FILE [--html] [--dir DIR]
        One email in full: number N of ``mail-list``, or an ``.eml`` file.

The mail drop is ``NOTIFIER_VAR_DIR``/mail (``var/mail`` at the repository root by default), or ``--dir``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from notifier.email.maildrop import MailDropError, find_email, list_mail_drop, read_mail_drop
from notifier.email.providers import mail_drop_directory
from notifier.messages import LOCALES, SAMPLE_VARIABLES, TEMPLATES, render_email
from notifier.settings import Settings
from servicekit.settings import load_settings


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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m notifier", description="The notifier, for people.")
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser("preview", help="render every template with sample data")
    command.add_argument("--template", choices=TEMPLATES, help="only this template")
    command.add_argument("--locale", choices=LOCALES, help="only this language")
    command.add_argument("--out", type=Path, help="write files into this directory instead of printing")
    mail_dir = argparse.ArgumentParser(add_help=False)
    mail_dir.add_argument("--dir", type=Path, help="the mail drop (default: mail/ under NOTIFIER_VAR_DIR)")
    listing = commands.add_parser("mail-list", parents=[mail_dir], help="the mail drop's emails, decoded")
    listing.add_argument(
        "--grep", metavar="TEXT", help="only emails whose recipient, subject or text has TEXT"
    )
    listing.add_argument("--full", action="store_true", help="the whole text of each, not its first lines")
    show = commands.add_parser("mail-show", parents=[mail_dir], help="one email in full, decoded")
    show.add_argument("which", metavar="N|FILE", help="its number in mail-list, or an .eml file")
    show.add_argument("--html", action="store_true", help="its HTML instead of its text")
    return parser


def mail_list(directory: Path, *, grep: str | None, full: bool) -> int:
    blocks = list_mail_drop(read_mail_drop(directory), grep=grep, full=full)
    if not blocks:
        print(f"no email{' matches' if grep else ''} in {directory}", file=sys.stderr)
        return 1
    sys.stdout.write("\n\n".join(blocks) + "\n")
    return 0


def mail_show(directory: Path, *, which: str, html: bool) -> int:
    try:
        sys.stdout.write(find_email(directory, which).full(html=html))
    except MailDropError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "preview":
        written = preview(
            templates=[args.template] if args.template else list(TEMPLATES),
            locales=[args.locale] if args.locale else list(LOCALES),
            out=args.out,
        )
        for path in written:
            sys.stdout.write(f"{path}\n")
        return 0
    directory: Path = args.dir or mail_drop_directory(load_settings(Settings))
    if args.command == "mail-list":
        return mail_list(directory, grep=args.grep, full=args.full)
    return mail_show(directory, which=args.which, html=args.html)


if __name__ == "__main__":
    sys.exit(main())

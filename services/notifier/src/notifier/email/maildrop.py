"""The mail drop read back as a person reads mail: ``python -m notifier mail-list`` and ``mail-show``.

The ``.eml`` files :class:`~notifier.email.providers.MailDropProvider` writes are real RFC 5322 messages: their
bodies are quoted-printable or base64 and their subjects encoded words, so ``grep`` on the files misses an
order id. Here each is decoded: its date, recipient, subject and text body, oldest first, numbered so that
``mail-show <n>`` finds one again.
"""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import cast

SUMMARY_LINES = 4  # an order email: greeting, order, amount, and the deposit address
_TAG = re.compile(r"<[^>]+>")


class MailDropError(ValueError):
    """The email asked for is not in the mail drop."""


@dataclass(frozen=True, slots=True)
class DroppedEmail:
    """One ``.eml`` file of the mail drop, decoded."""

    number: int  # its place in the mail drop, oldest first (``mail-show <number>``)
    path: Path
    date: datetime | None
    sender: str
    recipient: str
    subject: str
    text: str
    html: str

    def matches(self, pattern: str) -> bool:
        """``pattern`` (any case) is in its recipient, subject, text or file name."""
        needle = pattern.casefold()
        return any(
            needle in field.casefold() for field in (self.recipient, self.subject, self.text, self.path.name)
        )

    def headline(self) -> str:
        when = f"{self.date:%Y-%m-%d %H:%M:%S %Z}".strip() if self.date else "(no date)"
        return f"#{self.number}  {when}  to {self.recipient}  {self.subject}"

    def summary(self, lines: int = SUMMARY_LINES) -> str:
        """Its headline and the first ``lines`` non-empty lines of its text."""
        body = [line.strip() for line in self.text.splitlines() if line.strip()][:lines]
        return "\n".join([self.headline(), *(f"    {line}" for line in body)])

    def full(self, *, html: bool = False) -> str:
        headers = [
            f"File:    {self.path}",
            f"Date:    {self.date.isoformat() if self.date else '(none)'}",
            f"From:    {self.sender}",
            f"To:      {self.recipient}",
            f"Subject: {self.subject}",
        ]
        return "\n".join([*headers, "", (self.html if html else self.text).rstrip(), ""])


def _part(message: EmailMessage, subtype: str) -> str:
    body = message.get_body(preferencelist=(subtype,))
    return cast(str, body.get_content()) if body is not None else ""


def read_email(path: Path, *, number: int = 0) -> DroppedEmail:
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    html = _part(message, "html")
    date_header = message["Date"]
    return DroppedEmail(
        number=number,
        path=path,
        date=parsedate_to_datetime(str(date_header)) if date_header else None,
        sender=str(message["From"] or ""),
        recipient=str(message["To"] or ""),
        subject=str(message["Subject"] or ""),
        text=_part(message, "plain") or _TAG.sub("", html),
        html=html,
    )


def read_mail_drop(directory: Path) -> list[DroppedEmail]:
    """Every email in ``directory``, oldest first (by when its file was written: a message sent again
    replaces its own file, and counts from then)."""
    if not directory.is_dir():
        return []
    paths = sorted(directory.glob("*.eml"), key=lambda path: (path.stat().st_mtime_ns, path.name))
    return [read_email(path, number=number) for number, path in enumerate(paths, start=1)]


def find_email(directory: Path, which: str) -> DroppedEmail:
    """``which`` is a number ``mail-list`` printed, or the path of an ``.eml`` file."""
    if which.isdigit():
        emails = read_mail_drop(directory)
        if not 1 <= int(which) <= len(emails):
            raise MailDropError(f"no email #{which} in {directory} ({len(emails)} there)")
        return emails[int(which) - 1]
    path = Path(which)
    if not path.is_file():
        raise MailDropError(f"{which} is neither an email number nor a file")
    return read_email(path)


def list_mail_drop(emails: Sequence[DroppedEmail], *, grep: str | None, full: bool) -> list[str]:
    """What ``mail-list`` prints: one block per email that matches ``grep`` (all of them without it)."""
    chosen = [dropped for dropped in emails if grep is None or dropped.matches(grep)]
    return [dropped.full() if full else dropped.summary() for dropped in chosen]

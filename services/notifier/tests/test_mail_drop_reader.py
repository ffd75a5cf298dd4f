"""``python -m notifier mail-list`` / ``mail-show``: the mail drop's emails decoded, so an order id is found
though the ``.eml`` files are quoted-printable or base64."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from notifier.__main__ import main as cli
from notifier.email import MailDropProvider, OutgoingEmail
from notifier.testing import SENDER

ORDER_ID = "ord_7Kq2x9Zt4LmN8pR3vW6yB1"


def email_to(recipient: str, *, subject: str, text: str) -> OutgoingEmail:
    return OutgoingEmail(
        sender=SENDER, recipient=recipient, subject=subject, text=text, html=f"<p>{text}</p>"
    )


@pytest.fixture
async def mail_drop(tmp_path: Path) -> Path:
    directory = tmp_path / "mail"
    provider = MailDropProvider(directory)
    await provider.send(email_to("anna@example.com", subject="Ваш код подтверждения", text="Ваш код: 482913"))
    await provider.send(
        email_to(
            "boris@example.com",
            subject=f"Заявка {ORDER_ID} создана",
            text=f"Спасибо за заявку {ORDER_ID}: 0,05 BTC на USDT.\nАдрес для оплаты: bc1qexample\nСрок: 30 минут",  # noqa: RUF001
        )
    )
    # Anna's a second older, so the order does not rest on the clock ticking between two writes.
    [anna] = [path for path in directory.glob("*.eml") if b"anna@example.com" in path.read_bytes()]
    written = anna.stat().st_mtime_ns - 1_000_000_000
    os.utime(anna, ns=(written, written))
    return directory


def test_grepping_the_files_misses_the_order_id(mail_drop: Path) -> None:
    assert [path for path in mail_drop.glob("*.eml") if ORDER_ID.encode() in path.read_bytes()] == []


def test_mail_list_finds_an_order_by_its_id_and_shows_it_decoded(
    mail_drop: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(["mail-list", "--dir", str(mail_drop), "--grep", ORDER_ID.upper()]) == 0

    out = capsys.readouterr().out
    headline, *summary = out.splitlines()
    assert headline.startswith("#2  ")
    assert headline.endswith(f"to boris@example.com  Заявка {ORDER_ID} создана")
    assert summary == [
        f"    Спасибо за заявку {ORDER_ID}: 0,05 BTC на USDT.",
        "    Адрес для оплаты: bc1qexample",
        "    Срок: 30 минут",
    ]
    assert "anna@example.com" not in out


def test_mail_list_lists_every_email_oldest_first_and_says_when_none_matches(
    mail_drop: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(["mail-list", "--dir", str(mail_drop)]) == 0
    headlines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("#")]
    assert [line.split("  to ")[1].split()[0] for line in headlines] == [
        "anna@example.com",
        "boris@example.com",
    ]

    assert cli(["mail-list", "--dir", str(mail_drop), "--grep", "ord_nobody"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "no email matches" in captured.err


def test_mail_show_prints_one_email_whole_by_number_or_file(
    mail_drop: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(["mail-show", "1", "--dir", str(mail_drop)]) == 0
    shown = capsys.readouterr().out
    assert "To:      anna@example.com" in shown
    assert "Subject: Ваш код подтверждения" in shown
    assert shown.rstrip().endswith("Ваш код: 482913")

    [anna] = [path for path in mail_drop.glob("*.eml") if path.name in shown]
    assert cli(["mail-show", str(anna), "--html"]) == 0
    assert "<p>Ваш код: 482913</p>" in capsys.readouterr().out

    assert cli(["mail-show", "3", "--dir", str(mail_drop)]) == 1
    assert "no email #3" in capsys.readouterr().err

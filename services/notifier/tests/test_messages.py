"""Templates: both languages, autoescaping, locale fallback, exact amounts, the preview command."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from jinja2 import UndefinedError

from notifier.__main__ import main as cli
from notifier.messages import (
    LOCALES,
    SAMPLE_VARIABLES,
    TEMPLATES,
    TemplateValueMissingError,
    UnknownTemplateError,
    render_email,
)
from notifier.messages.render import CUSTOMER_TEMPLATES, OPTIONAL_VARIABLES, REQUIRED_VARIABLES

EXPECTED_WORDS = {"en": "Best regards", "ru": "С уважением"}  # noqa: RUF001 (Russian text)


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("template", CUSTOMER_TEMPLATES)
def test_every_customer_template_renders_subject_text_and_html_in_both_languages(
    template: str, locale: str
) -> None:
    rendered = render_email(template, locale, SAMPLE_VARIABLES[template])

    assert rendered.subject
    assert "\n" not in rendered.subject
    assert EXPECTED_WORDS[locale] in rendered.text
    assert EXPECTED_WORDS[locale] in rendered.html
    assert f'lang="{locale}"' in rendered.html
    assert "<" not in rendered.text
    assert "Anna" in rendered.text
    assert "Anna" in rendered.html


def test_order_created_shows_amount_address_and_expiry() -> None:
    variables = {**SAMPLE_VARIABLES["order_created"], "amount": Decimal("0.00000001")}

    rendered = render_email("order_created", "en", variables)

    assert "0.00000001 USDT" in rendered.text
    assert "0.00000001 USDT" in rendered.html
    assert "TJYeasTPa6gpEEfYqNgF9aVwCPmEfTxN5W" in rendered.text
    assert "2026-11-21 15:30 UTC" in rendered.text
    assert "ORD-1042" in rendered.subject


def test_order_created_without_address_shows_the_queue_position() -> None:
    variables = {**SAMPLE_VARIABLES["order_created"], "address": None, "queue_position": 3}

    english = render_email("order_created", "en", variables)
    russian = render_email("order_created", "ru", variables)

    assert "number 3 in the queue" in english.text
    assert "3-я в очереди" in russian.text
    assert "TJYeas" not in english.text


PREPARING = {
    "en": "We are preparing your deposit address and will email it to you shortly.",
    "ru": "Мы готовим адрес для оплаты и вскоре пришлём его вам письмом.",  # noqa: RUF001 (Russian text)
}
QUEUED_WITHOUT_PLACE = {"en": "Your order is in the queue;", "ru": "Ваша заявка в очереди;"}
NO_FUNDS_YET = {
    "en": "Please do not send any funds before you receive it.",
    "ru": "Пожалуйста, не отправляйте средства, пока не получите его.",  # noqa: RUF001 (Russian text)
}


@pytest.mark.parametrize("locale", LOCALES)
def test_order_created_awaiting_an_address_promises_it_and_names_no_queue_place(locale: str) -> None:
    variables = {
        **SAMPLE_VARIABLES["order_created"],
        "status": "awaiting_address",
        "address": None,
        "queue_position": None,
    }

    rendered = render_email("order_created", locale, variables)

    for body in (rendered.text, rendered.html):
        assert PREPARING[locale] in body
        assert NO_FUNDS_YET[locale] in body
        assert "queue" not in body
        assert "очеред" not in body
        assert "TJYeas" not in body


@pytest.mark.parametrize("locale", LOCALES)
def test_order_created_queued_at_an_unknown_place_says_queued_without_a_number(locale: str) -> None:
    variables = {**SAMPLE_VARIABLES["order_created"], "status": "queued", "address": None}

    rendered = render_email("order_created", locale, variables)

    for body in (rendered.text, rendered.html):
        assert QUEUED_WITHOUT_PLACE[locale] in body
        assert PREPARING[locale] not in body
        assert not re.search(r"number|-я в", body)


def _placeholder_traces(body: str) -> list[str]:
    """What a missing value leaves behind: ``None``, template syntax, empty markup, a gap before punctuation."""
    pattern = r"None|\{\{|\}\}|\{%|%\}|<(\w+)>\s*</\1>|\S  +\S| [.,;:!]"
    return [match.group(0) for match in re.finditer(pattern, body)]


def _only_required(template: str) -> dict[str, object]:
    return {k: v for k, v in SAMPLE_VARIABLES[template].items() if k in REQUIRED_VARIABLES[template]}


def _all_present(template: str) -> dict[str, object]:
    extras: dict[str, object] = {"name": "Anna"}
    if template == "alert":
        extras["reason"] = "Worse: warning → critical."
    return {**SAMPLE_VARIABLES[template], **extras}


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("template", TEMPLATES)
@pytest.mark.parametrize(
    "variables_of", [_only_required, _all_present], ids=["optional-absent", "all-present"]
)
def test_every_template_renders_whole_sentences_with_optional_values_absent_or_present(
    template: str, locale: str, variables_of: object
) -> None:
    assert callable(variables_of)
    rendered = render_email(template, locale, variables_of(template))

    for body in (rendered.subject, rendered.text, rendered.html):
        assert _placeholder_traces(body) == [], body
        assert "None" not in body


def test_the_sample_variables_are_exactly_what_each_template_knows() -> None:
    for template in TEMPLATES:
        assert set(SAMPLE_VARIABLES[template]) <= REQUIRED_VARIABLES[template] | OPTIONAL_VARIABLES[template]
        assert REQUIRED_VARIABLES[template] <= set(SAMPLE_VARIABLES[template])


@pytest.mark.parametrize("template", TEMPLATES)
def test_a_missing_or_none_required_value_refuses_to_render(template: str) -> None:
    for name in REQUIRED_VARIABLES[template]:
        missing = {k: v for k, v in SAMPLE_VARIABLES[template].items() if k != name}
        with pytest.raises(TemplateValueMissingError, match=name):
            render_email(template, "en", missing)
        with pytest.raises(TemplateValueMissingError, match=name):
            render_email(template, "ru", {**SAMPLE_VARIABLES[template], name: None})
        with pytest.raises(TemplateValueMissingError, match=name):
            render_email(template, "en", {**SAMPLE_VARIABLES[template], name: ""})


@pytest.mark.parametrize("template", TEMPLATES)
def test_an_empty_optional_value_is_left_out_like_an_absent_one(template: str) -> None:
    variables = {**SAMPLE_VARIABLES[template], **dict.fromkeys(OPTIONAL_VARIABLES[template], "")}

    for locale in LOCALES:
        rendered = render_email(template, locale, variables)
        for body in (rendered.subject, rendered.text, rendered.html):
            assert _placeholder_traces(body) == [], body


def test_a_variable_a_template_names_but_nobody_gave_refuses_to_render(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(OPTIONAL_VARIABLES, "email_code", frozenset())  # "name" no longer filled in
    variables = {k: v for k, v in SAMPLE_VARIABLES["email_code"].items() if k != "name"}

    with pytest.raises(UndefinedError, match="name"):
        render_email("email_code", "en", variables)


@pytest.mark.parametrize(
    ("minutes", "english", "russian"),
    [
        (1, "valid for 1 minute.", "действует 1 минуту."),
        (2, "valid for 2 minutes.", "действует 2 минуты."),
        (5, "valid for 5 minutes.", "действует 5 минут."),
        (11, "valid for 11 minutes.", "действует 11 минут."),
        (21, "valid for 21 minutes.", "действует 21 минуту."),
    ],
)
def test_the_code_email_counts_minutes_in_each_language(minutes: int, english: str, russian: str) -> None:
    variables = {**SAMPLE_VARIABLES["email_code"], "minutes": minutes}

    assert english in render_email("email_code", "en", variables).text
    assert russian in render_email("email_code", "ru", variables).html


def test_the_alert_email_counts_reports() -> None:
    once = render_email("alert", "en", {**SAMPLE_VARIABLES["alert"], "occurrences": 1})
    twice = render_email("alert", "en", {**SAMPLE_VARIABLES["alert"], "occurrences": 2})

    assert "reported 1 time." in once.text
    assert "reported 2 times." in twice.text


@pytest.mark.parametrize(
    ("status", "english", "russian"),
    [
        ("completed", "is complete", "выполнена"),
        ("cancelled", "has been cancelled", "отменена"),
        ("expired", "has expired", "истёк"),
    ],
)
def test_order_status_changed_has_a_sentence_per_status(status: str, english: str, russian: str) -> None:
    variables = {**SAMPLE_VARIABLES["order_status_changed"], "status": status}

    assert english in render_email("order_status_changed", "en", variables).text
    assert russian in render_email("order_status_changed", "ru", variables).text
    assert russian in render_email("order_status_changed", "ru", variables).subject


@pytest.mark.parametrize(
    ("locale", "subject", "frame"),
    [
        ("en", "[critical] Alert escalated: BTC (bitcoin): no free deposit address", "Alert escalated"),
        ("ru", "[критично] Уровень повышен: BTC (bitcoin): no free deposit address", "Уровень повышен"),
    ],
)
def test_the_admin_alert_email_in_both_languages(locale: str, subject: str, frame: str) -> None:
    rendered = render_email("alert", locale, SAMPLE_VARIABLES["alert"])

    assert rendered.subject == subject
    assert subject.split("]")[0].lstrip("[") in rendered.text
    for body in (rendered.text, rendered.html):
        assert frame in body
        assert "0 of 20 usable addresses free" in body
        assert "Worse: warning → critical." in body
        assert "pool.low:BTC:bitcoin" in body
        assert "2026-11-21 14:40 UTC" in body
        assert "/v1/alerts/0b9f6c52-3f7a-4c8e-9d51-6a0f1e2d3c4b/acknowledge" in body
    assert f'lang="{locale}"' in rendered.html
    assert "<" not in rendered.text


def test_a_resolved_alert_email_says_resolved_and_asks_for_nothing() -> None:
    variables = {**SAMPLE_VARIABLES["alert"], "change": "resolved", "reason": "BTC (bitcoin) recovered."}

    rendered = render_email("alert", "en", variables)

    assert rendered.subject.startswith("[resolved] Back to normal: ")
    assert "acknowledge" not in rendered.text.lower()
    assert "BTC (bitcoin) recovered." in rendered.text


def test_alert_emails_escape_what_the_condition_reports() -> None:
    hostile = '<img src=x onerror="alert(1)">'
    variables = {
        **SAMPLE_VARIABLES["alert"],
        "title": f"{hostile}\nBcc: x@evil.test",
        "text": hostile,
        "reason": hostile,
    }

    rendered = render_email("alert", "ru", variables)

    assert "<img" not in rendered.html
    assert rendered.html.count("&lt;img src=x onerror=&#34;alert(1)&#34;&gt;") == 3
    assert hostile in rendered.text
    assert "\n" not in rendered.subject
    assert rendered.subject.endswith("Bcc: x@evil.test")


def test_variables_are_escaped_in_html_and_plain_in_text() -> None:
    variables = {**SAMPLE_VARIABLES["email_code"], "name": "<script>alert(1)</script>"}

    rendered = render_email("email_code", "en", variables)

    assert "<script>" not in rendered.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in rendered.html
    assert "Hello, <script>alert(1)</script>!" in rendered.text


@pytest.mark.parametrize("locale", ["de", "", "xx-YY"])
def test_an_unknown_locale_falls_back_to_english(locale: str) -> None:
    rendered = render_email("email_code", locale, SAMPLE_VARIABLES["email_code"])

    assert rendered.subject == "Your confirmation code"
    assert "482913" in rendered.text


def test_a_regional_locale_uses_its_language() -> None:
    assert (
        render_email("email_code", "ru-RU", SAMPLE_VARIABLES["email_code"]).subject == "Ваш код подтверждения"
    )


def test_amounts_stored_as_strings_and_iso_dates_render_exactly() -> None:
    variables = {
        **SAMPLE_VARIABLES["address_ready"],
        "amount": "12345678901234.123456789012345678",
        "expires_at": datetime(2026, 1, 2, 6, 5, tzinfo=UTC).isoformat(),
    }

    rendered = render_email("address_ready", "ru", variables)

    assert "12345678901234.123456789012345678 USDT" in rendered.text
    assert "2026-01-02 06:05 UTC" in rendered.text


def test_float_amounts_are_refused() -> None:
    with pytest.raises(TypeError):
        render_email("address_ready", "en", {**SAMPLE_VARIABLES["address_ready"], "amount": 0.1})


def test_an_unknown_template_is_an_error() -> None:
    with pytest.raises(UnknownTemplateError):
        render_email("no_such_template", "en", {})


def test_preview_writes_every_template_in_both_languages(tmp_path: Path) -> None:
    cli(["preview", "--out", str(tmp_path)])

    for template in TEMPLATES:
        for locale in LOCALES:
            assert (
                (tmp_path / f"{template}.{locale}.html").read_text(encoding="utf-8").startswith("<!DOCTYPE")
            )
            assert (tmp_path / f"{template}.{locale}.txt").exists()
            assert (tmp_path / f"{template}.{locale}.subject").exists()


def test_preview_prints_one_template(capsys: pytest.CaptureFixture[str]) -> None:
    cli(["preview", "--template", "email_code", "--locale", "ru"])

    out = capsys.readouterr().out
    assert "Ваш код подтверждения" in out
    assert "order_created" not in out


@pytest.mark.parametrize(
    ("locale", "received", "sent", "ordered"),
    [
        (
            "en",
            "we have received 150.25 USDT and sent you 0.0015 BTC.",
            "Payout transaction: ",
            "You ordered",
        ),
        (
            "ru",
            "мы получили 150.25 USDT и отправили вам 0.0015 BTC.",
            "Транзакция выплаты: ",
            "заявке было",
        ),
    ],
)
def test_the_completion_email_shows_received_sent_and_the_payout_hash(
    locale: str, received: str, sent: str, ordered: str
) -> None:
    variables = SAMPLE_VARIABLES["order_status_changed"]
    email = render_email("order_status_changed", locale, variables)
    for body in (email.text, email.html):
        assert received in body
        assert f"{variables['payout_tx_hash']}" in body
        assert sent in body
        assert ordered not in body  # exactly what was ordered arrived
    short = render_email("order_status_changed", locale, {**variables, "received": "150.2"})
    assert ordered in short.text
    assert "150.2 USDT" in short.text

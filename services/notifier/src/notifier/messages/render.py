"""``render_email(template, locale, variables)``: subject, plain text and HTML of one email."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, Undefined, pass_context, select_autoescape
from jinja2.runtime import Context

from servicekit.db import strip_trailing_zeros
from servicekit.plurals import counted

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "templates"
LOCALES = ("en", "ru")
DEFAULT_LOCALE = "en"

SUBJECTS: dict[str, dict[str, str]] = {
    "order_created": {
        "en": "Your order {order_id} has been created",
        "ru": "Заявка {order_id} создана",
    },
    "address_ready": {
        "en": "Order {order_id}: your deposit address is ready",
        "ru": "Заявка {order_id}: адрес для оплаты готов",
    },
    "order_status_changed": {
        "en": "Order {order_id}: {status_text}",
        "ru": "Заявка {order_id}: {status_text}",
    },
    "email_code": {"en": "Your confirmation code", "ru": "Ваш код подтверждения"},
    "alert": {
        "en": "[{severity_text}] {change_text}: {title}",
        "ru": "[{severity_text}] {change_text}: {title}",
    },
}
TEMPLATES = tuple(SUBJECTS)

REQUIRED_VARIABLES: dict[str, frozenset[str]] = {
    "order_created": frozenset({"order_id", "amount", "currency_from", "currency_to"}),
    "address_ready": frozenset({"order_id", "amount", "currency_from", "address"}),
    "order_status_changed": frozenset({"order_id", "status", "amount", "currency_from", "currency_to"}),
    "email_code": frozenset({"code", "minutes"}),
    "alert": frozenset(
        {"alert_id", "key", "change", "severity", "title", "text", "raised_at", "occurrences"}
    ),
}
"""What each template cannot do without: missing, ``None`` or empty, the email is refused (never sent saying
``None`` or leaving a blank)."""

OPTIONAL_VARIABLES: dict[str, frozenset[str]] = {
    "order_created": frozenset({"name", "status", "address", "queue_position", "expires_at"}),
    "address_ready": frozenset({"name", "expires_at"}),
    "order_status_changed": frozenset({"name", "received", "sent", "payout_tx_hash"}),
    "email_code": frozenset({"name"}),
    "alert": frozenset({"reason"}),
}
"""What each template says only when it is known: absent (or empty) is ``None``, and the template leaves the
sentence out (``{% if x is not none %}``)."""
CUSTOMER_TEMPLATES = ("order_created", "address_ready", "order_status_changed", "email_code")
"""Templates for customers (the rest, ``alert``, go to the desk's admins)."""

STATUS_TEXT: dict[str, dict[str, str]] = {
    "en": {"completed": "completed", "cancelled": "cancelled", "expired": "expired"},
    "ru": {"completed": "выполнена", "cancelled": "отменена", "expired": "срок истёк"},
}

# Alert labels: a severity (``resolved`` when the change is a resolution) and the change told.
ALERT_TEXT: dict[str, dict[str, str]] = {
    "en": {
        "warning": "warning",
        "critical": "critical",
        "emergency": "emergency",
        "resolved": "resolved",
        "change.raised": "New alert",
        "change.reopened": "Alert is back",
        "change.escalated": "Alert escalated",
        "change.resolved": "Back to normal",
    },
    "ru": {
        "warning": "предупреждение",
        "critical": "критично",
        "emergency": "авария",
        "resolved": "решено",
        "change.raised": "Новое оповещение",
        "change.reopened": "Оповещение снова активно",
        "change.escalated": "Уровень повышен",
        "change.resolved": "Норма восстановлена",
    },
}

_SAMPLE_EXPIRY = datetime(2026, 11, 21, 15, 30, tzinfo=UTC)
SAMPLE_VARIABLES: dict[str, dict[str, Any]] = {
    "order_created": {
        "name": "Anna",
        "order_id": "ORD-1042",
        "amount": Decimal("150.25"),
        "currency_from": "USDT",
        "currency_to": "BTC",
        "address": "TJYeasTPa6gpEEfYqNgF9aVwCPmEfTxN5W",
        "status": "awaiting_deposit",
        "queue_position": None,
        "expires_at": _SAMPLE_EXPIRY,
    },
    "address_ready": {
        "name": "Anna",
        "order_id": "ORD-1042",
        "amount": Decimal("150.25"),
        "currency_from": "USDT",
        "address": "TJYeasTPa6gpEEfYqNgF9aVwCPmEfTxN5W",
        "expires_at": _SAMPLE_EXPIRY,
    },
    "order_status_changed": {
        "name": "Anna",
        "order_id": "ORD-1042",
        "status": "completed",
        "amount": Decimal("150.25"),
        "currency_from": "USDT",
        "currency_to": "BTC",
        "received": Decimal("150.25"),
        "sent": Decimal("0.0015"),
        "payout_tx_hash": "4a5e1e4baab89f3a32518a88c31bc87f618f76673e2cc77ab2127b7afdeda33b",
    },
    "email_code": {"name": "Anna", "code": "482913", "minutes": 10},
    "alert": {
        "alert_id": "0b9f6c52-3f7a-4c8e-9d51-6a0f1e2d3c4b",
        "key": "pool.low:BTC:bitcoin",
        "change": "escalated",
        "severity": "critical",
        "title": "BTC (bitcoin): no free deposit address",
        "text": (
            "0 of 20 usable addresses free (0.00 %, threshold 10 %); 20 reserved, 0 disabled; "
            "3 orders waiting for an address. Seen 2026-11-21T15:00:00+00:00."
        ),
        "reason": "Worse: warning → critical.",
        "raised_at": datetime(2026, 11, 21, 14, 40, tzinfo=UTC),
        "occurrences": 2,
    },
}


class UnknownTemplateError(ValueError):
    """No template of that name exists."""


class TemplateValueMissingError(ValueError):
    """A value the template cannot do without is missing (or ``None``): the email is not sent."""


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


def _known(value: Any, what: str) -> Any:
    if isinstance(value, Undefined) or value is None:
        raise TemplateValueMissingError(f"{what} is missing")
    return value


def format_amount(value: Any) -> str:
    """An exact amount: ``Decimal("0.00000001")`` → ``0.00000001`` (strings are parsed, never floats)."""
    _known(value, "an amount")
    if isinstance(value, float):
        raise TypeError("amounts must be Decimal or str, never float")
    amount = value if isinstance(value, Decimal) else Decimal(str(value))
    return format(strip_trailing_zeros(amount), "f")


def format_utc(value: Any) -> str:
    """``2026-11-21 15:30 UTC`` from an aware datetime or an ISO string."""
    _known(value, "a moment")
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


@pass_context
def format_count(context: Context, value: Any, *forms: str) -> str:
    """``{{ minutes|counted("minute", "minutes") }}`` → ``1 minute``; Russian takes three forms
    (``"минуту", "минуты", "минут"``): the form is the one the number takes in the email's language."""
    return counted(int(_known(value, "a count")), forms, language=context["language"])


def _environment() -> Environment:
    """One environment: ``.html`` templates are autoescaped, ``.txt`` ones are plain text, and a variable a
    template names but nobody gave refuses to render (``StrictUndefined``)."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATE_DIR),
        undefined=StrictUndefined,
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=True),
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["amount"] = format_amount
    env.filters["utc"] = format_utc
    env.filters["counted"] = format_count
    return env


_ENV = _environment()


def resolve_locale(locale: str | None) -> str:
    """``ru``/``ru-RU``/``ru_RU`` → ``ru``; anything unknown → English."""
    language = (locale or "").replace("_", "-").split("-")[0].lower()
    return language if language in LOCALES else DEFAULT_LOCALE


def render_email(template: str, locale: str | None, variables: Mapping[str, Any]) -> RenderedEmail:
    """Subject, text and HTML of ``template``; :class:`TemplateValueMissingError` (or jinja2's
    ``UndefinedError``) when a value it cannot do without is missing, so no email ever says ``None``."""
    if template not in SUBJECTS:
        raise UnknownTemplateError(f"unknown template {template!r}")
    given = {name: value for name, value in variables.items() if value is not None and value != ""}
    missing = sorted(REQUIRED_VARIABLES[template] - set(given))
    if missing:
        raise TemplateValueMissingError(f"{template}: {', '.join(missing)} missing")
    language = resolve_locale(locale)
    context = dict.fromkeys(OPTIONAL_VARIABLES[template]) | given  # an empty value is an absent one
    context["language"] = language
    status = str(context.get("status") or "")
    labels = ALERT_TEXT[language]
    change = str(context.get("change") or "")
    shown_severity = "resolved" if change == "resolved" else str(context.get("severity") or "")
    context["severity_text"] = labels.get(shown_severity, shown_severity)
    context["change_text"] = labels.get(f"change.{change}", change)
    subject = SUBJECTS[template][language].format_map(
        {
            "order_id": context.get("order_id", ""),
            "status_text": STATUS_TEXT[language].get(status, status),
            "title": context.get("title", ""),
            "severity_text": context["severity_text"],
            "change_text": context["change_text"],
        }
    )
    return RenderedEmail(
        subject=" ".join(subject.split()),  # one header line, whatever the variables hold
        text=_ENV.get_template(f"{template}.{language}.txt").render(context),
        html=_ENV.get_template(f"{template}.{language}.html").render(context),
    )

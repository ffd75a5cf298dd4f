"""What the notifier holds about customers: sealed at rest, a sent sign-in code wiped, and erased on
``customer.erased``; events posted to ``POST /v1/events`` as order-api sends them (personal data sealed with
the event keys)."""

from __future__ import annotations

import base64
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from notifier.main import create_app
from notifier.notifications.models import DeliveryAttempt, Notification
from notifier.testing import (
    KEYS,
    TEST_PROTECTION,
    RunningApp,
    SmtpServer,
    event_envelope,
    make_settings,
    order_payload,
)
from servicekit.db import Database, utcnow
from servicekit.sealing import Keyring, new_key, sealed_event_fields
from servicekit.settings import StartupRefusedError
from servicekit.testing import TEST_EVENT_KEYRING, eventually

CODE = "974760"


def _order_created(customer_id: str, email: str) -> dict[str, Any]:
    order_id = f"ord-{uuid.uuid4().hex[:8]}"
    payload = order_payload(
        order_id=order_id,
        customer_id=customer_id,
        expires_at=(utcnow() + timedelta(hours=1)).isoformat(),
        **sealed_event_fields(
            TEST_EVENT_KEYRING, {"customer_email": email}, event_type="order.created", aggregate_id=order_id
        ),
    )
    return event_envelope("order.created", order_id, payload)


def _email_code(customer_id: str, email: str, *, keyring: Keyring = TEST_EVENT_KEYRING) -> dict[str, Any]:
    event_type = "customer.email_code_requested"
    payload = {
        "customer_id": customer_id,
        "locale": "en",
        "expires_at": (utcnow() + timedelta(minutes=10)).isoformat(),
        **sealed_event_fields(
            keyring, {"email": email, "code": CODE}, event_type=event_type, aggregate_id=customer_id
        ),
    }
    return event_envelope(event_type, customer_id, payload)


async def _publish(api: RunningApp, event: dict[str, Any]) -> dict[str, Any]:
    response = await api.client.post("/v1/events", json=event, headers=api.auth(KEYS.publisher))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _everything_stored(database: Database) -> str:
    """Every row of every notifier table, as text."""
    async with database.engine.connect() as connection:
        rows: list[str] = []
        for table in ("notification", "delivery_attempt", "inbox", "alert"):
            query = text(f"SELECT * FROM {table}")  # noqa: S608 (a fixed list of table names)
            rows.extend(str(tuple(row)) for row in (await connection.execute(query)).all())
    return "\n".join(rows)


async def _notifications(database: Database, customer_id: str) -> list[Notification]:
    async with database.sessionmaker() as session:
        rows = await session.scalars(
            select(Notification)
            .where(Notification.customer_id == customer_id)
            .order_by(Notification.created_at)
        )
        return list(rows.all())


async def _all_sent(database: Database, customer_id: str, count: int) -> list[Notification]:
    return await eventually(
        lambda: _notifications(database, customer_id),
        until=lambda found: len(found) == count and all(n.status == "sent" for n in found),
        message=f"{count} notification(s) sent",
    )


async def test_recipients_variables_and_codes_are_never_stored_in_clear(
    notifier_app: RunningApp, database: Database, smtp_server: SmtpServer
) -> None:
    customer_id, email = "cus-sealed", "carol@example.com"
    await _publish(notifier_app, _order_created(customer_id, email))
    await _publish(notifier_app, _email_code(customer_id, email))

    sent = await _all_sent(database, customer_id, 2)
    # Rendered and sent as before, to the address that arrived sealed.
    assert sorted(str(m["To"]) for m in smtp_server.messages) == [email, email]
    [code_mail] = [m for m in smtp_server.messages if "confirmation code" in str(m["Subject"])]
    body = code_mail.get_body(preferencelist=("plain",))
    assert body is not None
    assert CODE in body.get_content()

    stored = await _everything_stored(database)
    assert "carol" not in stored.lower()
    assert CODE not in stored
    for notification in sent:
        assert notification.recipient_sealed is not None
        assert notification.variables_sealed is not None
        assert TEST_PROTECTION.open_recipient(notification.recipient_sealed) == email
    # The sent code is wiped: what proves the delivery is the sent status and its attempt.
    [code_notification] = [n for n in sent if n.template == "email_code"]
    assert code_notification.variables_sealed is not None
    assert TEST_PROTECTION.open_variables(code_notification.variables_sealed) == {"minutes": 10}
    listing = await notifier_app.client.get("/v1/notifications", headers=notifier_app.auth(KEYS.reader))
    assert {n["recipient"] for n in listing.json()["items"]} == {"c***@example.com"}


async def test_a_customer_erased_leaves_nothing_about_them(
    notifier_app: RunningApp, database: Database, smtp_server: SmtpServer
) -> None:
    erased, kept = "cus-erased", "cus-kept"
    smtp_server.refused.add("dora@example.com")  # a provider error quoting the address
    await _publish(notifier_app, _order_created(erased, "dora@example.com"))
    await _publish(notifier_app, _order_created(kept, "emil@example.com"))
    await _all_sent(database, kept, 1)
    [refused] = await eventually(
        lambda: _notifications(database, erased),
        until=lambda found: bool(found) and found[0].status == "failed",
    )

    event = event_envelope(
        "customer.erased", erased, {"customer_id": erased, "erased_at": utcnow().isoformat()}
    )
    assert (await _publish(notifier_app, event))["status"] == "processed"
    assert (await _publish(notifier_app, event))["status"] == "duplicate"

    [anonymised] = await _notifications(database, erased)
    assert anonymised.id == refused.id
    assert (anonymised.recipient_sealed, anonymised.recipient_index, anonymised.variables_sealed) == (
        None,
    ) * 3
    assert anonymised.last_error is None
    async with database.sessionmaker() as session:
        errors = (
            await session.scalars(
                select(DeliveryAttempt.error).where(DeliveryAttempt.notification_id == refused.id)
            )
        ).all()
    assert errors
    assert all(error is None for error in errors)
    stored = await _everything_stored(database)
    assert "dora" not in stored
    [other] = await _notifications(database, kept)
    assert other.recipient_sealed is not None
    listing = await notifier_app.client.get(
        "/v1/notifications", params={"status": "failed"}, headers=notifier_app.auth(KEYS.reader)
    )
    assert [n["recipient"] for n in listing.json()["items"]] == ["erased"]


async def test_an_event_sealed_with_an_unknown_key_is_retried_not_read(notifier_app: RunningApp) -> None:
    stranger = Keyring(keys={"other": base64.b64decode(new_key())}, current_key_id="other")
    response = await notifier_app.client.post(
        "/v1/events",
        json=_email_code("cus-x", "x@example.com", keyring=stranger),
        headers=notifier_app.auth(KEYS.publisher),
    )
    assert response.status_code == 503
    assert response.json()["code"] == "event_sealed_fields_unreadable"


def test_the_notifier_without_usable_event_keys_refuses_to_start_with_one_line(tmp_path: Path) -> None:
    with pytest.raises(StartupRefusedError) as refused:
        create_app(make_settings(None, tmp_path, event_key_current="retired"))
    message = str(refused.value)
    assert message.startswith("notifier cannot start: ")
    assert "'retired' is not among the event keys" in message
    assert "\n" not in message

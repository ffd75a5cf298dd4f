"""``/v1/notifications``: listing with filters and pagination, redelivery, scopes."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import update

from notifier.messages import SAMPLE_VARIABLES
from notifier.notifications.models import Notification
from notifier.notifications.service import queue_email
from notifier.testing import KEYS, TEST_PROTECTION, RunningApp, SmtpServer
from servicekit.db import Database
from servicekit.testing import eventually


async def _queue(database: Database, *, order_id: str | None, recipient: str = "anna@example.com") -> str:
    async with database.sessionmaker.begin() as session:
        return await queue_email(
            session=session,
            protection=TEST_PROTECTION,
            template="email_code",
            locale="ru",
            recipient=recipient,
            variables=SAMPLE_VARIABLES["email_code"],
            order_id=order_id,
        )


async def _set_status(database: Database, notification_id: str, status: str) -> None:
    async with database.sessionmaker.begin() as session:
        await session.execute(
            update(Notification).where(Notification.id == notification_id).values(status=status, attempts=8)
        )


async def _list(api: RunningApp, **params: Any) -> dict[str, Any]:
    response = await api.client.get("/v1/notifications", params=params, headers=api.auth(KEYS.reader))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_list_filters_and_paginates(notifier_app: RunningApp, database: Database) -> None:
    for_order = [await _queue(database, order_id="ORD-1") for _ in range(3)]
    await _queue(database, order_id="ORD-2")
    await _set_status(database, for_order[0], "failed")

    page = await _list(notifier_app, order_id="ORD-1", limit=2)
    assert [n["id"] for n in page["items"]] == for_order[::-1][:2]
    assert page["next_cursor"]
    rest = await _list(notifier_app, order_id="ORD-1", limit=2, cursor=page["next_cursor"])
    assert [n["id"] for n in rest["items"]] == [for_order[0]]
    assert rest["next_cursor"] is None

    failed = await _list(notifier_app, status="failed")
    assert [n["id"] for n in failed["items"]] == [for_order[0]]
    assert failed["items"][0]["recipient"] == "a***@example.com"
    assert len((await _list(notifier_app, channel="email"))["items"]) == 4
    assert (await _list(notifier_app, channel="telegram"))["items"] == []


async def test_a_bad_cursor_is_a_validation_problem(notifier_app: RunningApp) -> None:
    response = await notifier_app.client.get(
        "/v1/notifications", params={"cursor": "bm9wZQ"}, headers=notifier_app.auth(KEYS.reader)
    )

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "cursor"


@pytest.mark.parametrize(
    ("method", "path", "key", "status"),
    [
        ("GET", "/v1/notifications", None, 401),
        ("GET", "/v1/notifications", "other", 403),
        ("POST", "/v1/notifications/x/redeliver", None, 401),
        ("POST", "/v1/notifications/x/redeliver", "reader", 403),
        ("POST", "/v1/notifications/x/redeliver", "admin", 404),
    ],
)
async def test_scopes(notifier_app: RunningApp, method: str, path: str, key: str | None, status: int) -> None:
    headers = notifier_app.auth(getattr(KEYS, key)) if key else {}

    response = await notifier_app.client.request(method, path, headers=headers)

    assert response.status_code == status, response.text


async def test_redeliver_resets_a_failed_notification_and_it_is_sent(
    notifier_app: RunningApp, database: Database, smtp_server: SmtpServer
) -> None:
    smtp_server.refused.add("boris@example.com")
    notification_id = await _queue(database, order_id="ORD-9", recipient="boris@example.com")
    await eventually(
        lambda: _list(notifier_app, order_id="ORD-9"), until=lambda p: p["items"][0]["status"] == "failed"
    )
    smtp_server.refused.clear()

    response = await notifier_app.client.post(
        f"/v1/notifications/{notification_id}/redeliver", headers=notifier_app.auth(KEYS.admin)
    )

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "pending"
    assert response.json()["attempts"] == 0
    sent = await eventually(
        lambda: _list(notifier_app, order_id="ORD-9"), until=lambda p: p["items"][0]["status"] == "sent"
    )
    assert sent["items"][0]["attempts"] == 1
    assert smtp_server.recipients() == ["boris@example.com"]
    again = await notifier_app.client.post(
        f"/v1/notifications/{notification_id}/redeliver", headers=notifier_app.auth(KEYS.admin)
    )
    assert again.status_code == 409
    assert again.json()["code"] == "notification_not_redeliverable"
    metrics = (await notifier_app.client.get("/metrics")).text
    assert (
        'notifier_delivery_attempts_total{channel="email",outcome="permanent",provider="smtp"} 1.0' in metrics
    )
    assert 'notifier_delivery_attempts_total{channel="email",outcome="sent",provider="smtp"} 1.0' in metrics
    assert 'notifier_deliveries_given_up_total{channel="email",status="failed"} 1.0' in metrics

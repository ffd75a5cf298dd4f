"""Retention: sent and dead notifications and old delivery attempts are deleted by the running service's
sweep, on PostgreSQL and on the embedded SQLite default; pending, failed (awaiting a retry) and recent ones
stay."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete, select, update

from notifier.db import SCHEMA, inbox
from notifier.main import create_app
from notifier.messages import SAMPLE_VARIABLES
from notifier.notifications.models import DeliveryAttempt, Notification, NotificationStatus
from notifier.notifications.service import queue_email
from notifier.testing import TEST_PROTECTION, make_settings
from servicekit.db import Database, resolve_database_url, utcnow
from servicekit.migrations import upgrade
from servicekit.state import service_state
from servicekit.testing import eventually, running_app, service_dir


@pytest.fixture(params=["postgresql", "sqlite"])
async def database_at(
    request: pytest.FixtureRequest, database_url: str, tmp_path: Path
) -> AsyncIterator[tuple[str | None, Database]]:
    """The URL the service is given (``None``: SQLite under ``tmp_path``) and its database, empty."""
    url: str | None = database_url
    if request.param == "sqlite":
        url = None
        sqlite_url = resolve_database_url(None, var_dir=tmp_path, service_name="notifier")
        await asyncio.to_thread(upgrade, service_dir("notifier"), url=sqlite_url)
    database = Database(url=url, schema=SCHEMA, var_dir=tmp_path, service_name="notifier")
    async with database.engine.begin() as connection:
        for statement in (delete(DeliveryAttempt), delete(Notification), inbox.delete()):
            await connection.execute(statement)
    try:
        yield url, database
    finally:
        await database.dispose()


async def notification(database: Database, *, status: NotificationStatus, age: timedelta) -> str:
    """A notification created ``age`` ago with ``status`` (pending and failed ones not due for a day)."""
    async with database.sessionmaker.begin() as session:
        notification_id = await queue_email(
            session=session,
            protection=TEST_PROTECTION,
            template="address_ready",
            locale="en",
            recipient=f"carol.{uuid.uuid4().hex[:6]}@example.com",
            variables=SAMPLE_VARIABLES["address_ready"],
            order_id="ORD-1",
            event_id=str(uuid.uuid4()),
        )
        await session.execute(
            update(Notification)
            .where(Notification.id == notification_id)
            .values(
                status=status.value,
                created_at=utcnow() - age,
                next_attempt_at=utcnow() + timedelta(days=1),
                sent_at=utcnow() - age if status is NotificationStatus.sent else None,
            )
        )
    return notification_id


async def attempt(database: Database, notification_id: str, *, age: timedelta) -> int:
    async with database.sessionmaker.begin() as session:
        row = DeliveryAttempt(
            notification_id=notification_id,
            attempt=1,
            provider="smtp",
            outcome="transient",
            error="451 try again later",
            duration_ms=12,
            started_at=utcnow() - age,
        )
        session.add(row)
        await session.flush()
        return row.id


async def test_finished_notifications_and_old_attempts_are_swept(
    database_at: tuple[str | None, Database], tmp_path: Path
) -> None:
    url, database = database_at
    old, recent = timedelta(days=31), timedelta(days=29)
    sent_old = await notification(database, status=NotificationStatus.sent, age=old)
    dead_old = await notification(database, status=NotificationStatus.dead, age=old)
    kept = {
        await notification(database, status=NotificationStatus.pending, age=old),
        await notification(database, status=NotificationStatus.failed, age=old),  # a retry is due
        await notification(database, status=NotificationStatus.sent, age=recent),
        await notification(database, status=NotificationStatus.dead, age=recent),
    }
    recent_sent = await notification(database, status=NotificationStatus.sent, age=timedelta(days=3))
    kept.add(recent_sent)
    await attempt(database, sent_old, age=old)
    await attempt(database, dead_old, age=old)
    old_attempt_of_a_kept_one = await attempt(database, recent_sent, age=timedelta(days=40))
    recent_attempt = await attempt(database, recent_sent, age=timedelta(days=3))
    async with database.sessionmaker.begin() as session:
        await session.execute(
            inbox.insert(),
            [
                {
                    "event_id": "old",
                    "event_type": "order.created",
                    "source": "order-api",
                    "received_at": utcnow() - old,
                },
                {
                    "event_id": "new",
                    "event_type": "order.created",
                    "source": "order-api",
                    "received_at": utcnow(),
                },
            ],
        )

    settings = make_settings(url, tmp_path, retention_sweep_seconds=0.05)
    app = create_app(settings)
    assert [rule.name for rule in service_state(app).runtime.retention_rules] == [
        "inbox processed",
        "delivery attempts",
        "notifications finished",
    ]

    async def left() -> tuple[set[str], set[int], set[str]]:
        async with database.sessionmaker() as session:
            return (
                set(await session.scalars(select(Notification.id))),
                set(await session.scalars(select(DeliveryAttempt.id))),
                set(await session.scalars(select(inbox.c.event_id))),
            )

    async with running_app(app):
        remaining = await eventually(left, until=lambda r: r[0] == kept and r[2] == {"new"})
    assert remaining[1] == {recent_attempt}
    assert old_attempt_of_a_kept_one not in remaining[1]

"""``GET /v1/stats/delivery`` on known data (PostgreSQL and the embedded SQLite give the same figures), and
the failure-rate alert: raised at the threshold, kept in between, resolved below the lower share."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select

from notifier.alerts.conditions import AlertPolicy
from notifier.alerts.models import Alert
from notifier.db import SCHEMA
from notifier.notifications.models import DeliveryAttempt, Notification
from notifier.stats.service import delivery_stats
from notifier.testing import KEYS, TEST_PROTECTION, RunningApp, alerting_of
from notifier.workers.alerts import check_delivery_failure_rates
from servicekit.db import Database, resolve_database_url, utcnow
from servicekit.migrations import upgrade
from servicekit.testing import service_dir

_ids = itertools.count(1)


async def seed(
    database: Database,
    *,
    channel: str = "email",
    template: str = "order_created",
    status: str,
    outcomes: list[str],
    created_at: datetime,
    seconds_to_send: float | None = None,
) -> str:
    """A notification with its attempts (``outcomes`` in order, one second apart)."""
    notification_id = f"n-{next(_ids):04d}"
    sent_at = created_at + timedelta(seconds=seconds_to_send) if seconds_to_send is not None else None
    async with database.sessionmaker.begin() as session:
        await session.execute(
            insert(Notification).values(
                id=notification_id,
                channel=channel,
                template=template,
                locale="en",
                recipient_sealed=TEST_PROTECTION.seal_recipient(
                    "operators" if channel == "telegram" else "anna@example.com"
                ),
                variables_sealed=TEST_PROTECTION.seal_variables({}),
                status=status,
                attempts=len(outcomes),
                # A pending one is not due while the test looks (an app's delivery worker may be running).
                next_attempt_at=utcnow() + timedelta(days=1) if status == "pending" else created_at,
                created_at=created_at,
                sent_at=sent_at,
            )
        )
        for number, outcome in enumerate(outcomes, start=1):
            await session.execute(
                insert(DeliveryAttempt).values(
                    notification_id=notification_id,
                    attempt=number,
                    provider="smtp" if channel == "email" else "telegram-gateway",
                    outcome=outcome,
                    error=None if outcome == "sent" else "boom",
                    duration_ms=5,
                    started_at=created_at + timedelta(seconds=number),
                )
            )
    return notification_id


async def seed_known_data(database: Database, now: datetime) -> None:
    hour_ago = now - timedelta(hours=1)
    await seed(database, status="sent", outcomes=["sent"], created_at=hour_ago, seconds_to_send=1)
    await seed(
        database, status="sent", outcomes=["transient", "sent"], created_at=hour_ago, seconds_to_send=3
    )
    await seed(
        database,
        status="sent",
        outcomes=["transient", "transient", "sent"],
        created_at=hour_ago,
        seconds_to_send=10,
    )
    await seed(database, status="pending", outcomes=["transient"], created_at=hour_ago)
    await seed(database, template="email_code", status="failed", outcomes=["permanent"], created_at=hour_ago)
    await seed(
        database, template="email_code", status="dead", outcomes=["transient"] * 3, created_at=hour_ago
    )
    for seconds, outcomes in ((2, ["sent"]), (4, ["transient", "sent"])):
        await seed(
            database,
            channel="telegram",
            template="order_card",
            status="sent",
            outcomes=outcomes,
            created_at=hour_ago,
            seconds_to_send=seconds,
        )
    # Queued two days ago: outside the default window.
    await seed(
        database, status="sent", outcomes=["sent"], created_at=now - timedelta(days=2), seconds_to_send=500
    )


EXPECTED_TEMPLATES = {
    ("email", "email_code"): {
        "notifications": 2,
        "sent": 0,
        "pending": 0,
        "permanent": 1,
        "dead": 1,
        "attempts": 4,
        "failed_attempts": 3,
        "retries": 2,
        "failure_percent": 100.0,
        "latency_seconds": {"p50": None, "p95": None, "p99": None},
    },
    ("email", "order_created"): {
        "notifications": 4,
        "sent": 3,
        "pending": 1,
        "permanent": 0,
        "dead": 0,
        "attempts": 7,
        "failed_attempts": 4,
        "retries": 3,
        "failure_percent": 57.14,
        "latency_seconds": {"p50": 3.0, "p95": 10.0, "p99": 10.0},
    },
    ("telegram", "order_card"): {
        "notifications": 2,
        "sent": 2,
        "pending": 0,
        "permanent": 0,
        "dead": 0,
        "attempts": 3,
        "failed_attempts": 1,
        "retries": 1,
        "failure_percent": 33.33,
        "latency_seconds": {"p50": 2.0, "p95": 4.0, "p99": 4.0},
    },
}
EXPECTED_CHANNELS = {
    "email": {
        "notifications": 6,
        "sent": 3,
        "pending": 1,
        "permanent": 1,
        "dead": 1,
        "attempts": 11,
        "failed_attempts": 7,
        "retries": 5,
        "failure_percent": 72.73,
        "latency_seconds": {"p50": 3.0, "p95": 10.0, "p99": 10.0},
    },
    "telegram": EXPECTED_TEMPLATES[("telegram", "order_card")],
}


def _by_key(body: dict[str, Any]) -> tuple[dict[Any, Any], dict[Any, Any]]:
    templates = {(t.pop("channel"), t.pop("template")): t for t in body["templates"]}
    channels = {c.pop("channel"): c for c in body["channels"]}
    return templates, channels


@pytest.fixture
async def sqlite_database(tmp_path: Path) -> AsyncIterator[Database]:
    url = resolve_database_url(None, var_dir=tmp_path, service_name="notifier")
    await asyncio.to_thread(upgrade, service_dir("notifier"), url=url)
    db = Database(url=None, schema=SCHEMA, var_dir=tmp_path, service_name="notifier")
    try:
        yield db
    finally:
        await db.dispose()


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
async def test_delivery_figures_on_known_data(
    backend: str, database: Database, sqlite_database: Database
) -> None:
    db = database if backend == "postgresql" else sqlite_database
    assert db.engine.dialect.name == backend
    now = utcnow()
    await seed_known_data(db, now)

    async with db.sessionmaker() as session:
        stats = await delivery_stats(session=session, since=now - timedelta(hours=24), until=now)

    templates, channels = _by_key(stats.model_dump(mode="json"))
    assert templates == EXPECTED_TEMPLATES
    assert channels == EXPECTED_CHANNELS


async def test_the_stats_endpoint_reads_a_window(notifier_app: RunningApp, database: Database) -> None:
    now = utcnow()
    await seed_known_data(database, now)
    headers = notifier_app.auth(KEYS.reader)

    default = await notifier_app.client.get("/v1/stats/delivery", headers=headers)
    wide = await notifier_app.client.get(
        "/v1/stats/delivery", params={"since": (now - timedelta(days=3)).isoformat()}, headers=headers
    )
    empty = await notifier_app.client.get(
        "/v1/stats/delivery", params={"until": (now - timedelta(days=5)).isoformat()}, headers=headers
    )

    assert default.status_code == 200, default.text
    templates, channels = _by_key(default.json())
    assert channels == EXPECTED_CHANNELS
    assert templates == EXPECTED_TEMPLATES
    assert _by_key(wide.json())[1]["email"]["notifications"] == 7
    assert _by_key(wide.json())[1]["email"]["latency_seconds"]["p99"] == 500.0
    assert empty.json()["channels"] == []


@pytest.mark.parametrize(
    ("params", "key", "status", "field"),
    [
        ({}, None, 401, None),
        ({}, "other", 403, None),
        ({"since": "2026-11-21T10:00:00"}, "reader", 422, "since"),
        ({"since": "2026-11-21T10:00:00Z", "until": "2026-11-21T09:00:00Z"}, "reader", 422, "since"),
        ({"until": "yesterday"}, "reader", 422, "until"),
    ],
)
async def test_the_stats_endpoint_checks_its_caller_and_window(
    notifier_app: RunningApp, params: dict[str, str], key: str | None, status: int, field: str | None
) -> None:
    headers = notifier_app.auth(getattr(KEYS, key)) if key else {}

    response = await notifier_app.client.get("/v1/stats/delivery", params=params, headers=headers)

    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    if field:
        assert [e["field"] for e in response.json()["errors"]] == [field]


# --- the failure-rate alert ------------------------------------------------------------------------------

POLICY = AlertPolicy(
    failure_window=timedelta(minutes=15),
    failure_min_attempts=10,
    failure_threshold_percent=20,
    failure_critical_percent=50,
    failure_resolve_percent=10,
    quiet=timedelta(0),
    admin_emails=("ops@desk.test",),
)
ALERTING = alerting_of(POLICY)


async def attempts_now(database: Database, *, sent: int = 0, failed: int = 0, channel: str = "email") -> None:
    started = utcnow() - timedelta(minutes=1) - timedelta(seconds=5)
    for _ in range(sent):
        await seed(
            database, channel=channel, status="sent", outcomes=["sent"], created_at=started, seconds_to_send=1
        )
    for _ in range(failed):
        await seed(database, channel=channel, status="pending", outcomes=["transient"], created_at=started)


async def failure_alerts(database: Database) -> list[Alert]:
    async with database.sessionmaker() as session:
        rows = await session.scalars(
            select(Alert).where(Alert.source == "delivery.failure_rate").order_by(Alert.raised_at)
        )
        return list(rows.all())


async def told(database: Database) -> list[str]:
    async with database.sessionmaker() as session:
        rows = await session.scalars(
            select(Notification.variables_sealed)
            .where(Notification.channel == "email", Notification.template == "alert")
            .order_by(Notification.created_at)
        )
        told = [TEST_PROTECTION.open_variables(sealed) for sealed in rows.all() if sealed]
        return [f"{v['change']}:{v['severity']}" for v in told]


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
async def test_the_failure_rate_alert_is_raised_kept_and_resolved_with_hysteresis(
    backend: str, database: Database, sqlite_database: Database
) -> None:
    database = database if backend == "postgresql" else sqlite_database
    await attempts_now(database, sent=5, failed=4)
    await check_delivery_failure_rates(database=database, alerting=ALERTING)
    assert await failure_alerts(database) == []  # 9 attempts: too few to judge

    await attempts_now(database, sent=3, failed=1)  # 5 of 13 failed: 38 %
    await check_delivery_failure_rates(database=database, alerting=ALERTING)
    [raised] = await failure_alerts(database)
    assert (raised.key, raised.status, raised.severity) == ("delivery.failure_rate:email", "open", "warning")
    assert raised.details["attempts"] == 13
    assert raised.details["failed"] == 5
    assert raised.title == "Email deliveries are failing: 38.5 %"

    await attempts_now(database, failed=12)  # 17 of 25: 68 %, at least critical
    await check_delivery_failure_rates(database=database, alerting=ALERTING)
    await attempts_now(database, sent=130)  # 17 of 155: 11 %, between the shares: no change
    await check_delivery_failure_rates(database=database, alerting=ALERTING)
    [kept] = await failure_alerts(database)
    assert (kept.status, kept.severity, kept.occurrences) == ("open", "critical", 2)

    await attempts_now(database, sent=20)  # 17 of 175: 9.7 %, below the resolve share
    await check_delivery_failure_rates(database=database, alerting=ALERTING)
    [resolved] = await failure_alerts(database)
    assert resolved.status == "resolved"
    assert resolved.resolution is not None
    assert "Back below 10 %" in resolved.resolution
    assert await told(database) == ["raised:warning", "escalated:critical", "resolved:critical"]


async def test_each_channel_has_its_own_failure_rate_alert(database: Database) -> None:
    await attempts_now(database, channel="telegram", failed=10)
    await attempts_now(database, channel="email", sent=10)

    await check_delivery_failure_rates(database=database, alerting=ALERTING)

    [alert] = await failure_alerts(database)
    assert (alert.key, alert.severity) == ("delivery.failure_rate:telegram", "critical")

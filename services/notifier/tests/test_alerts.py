"""Alerts: wallet-pool's pool events through ``POST /v1/events`` make one alert per pool, escalated by a
worsening pool and by time unless acknowledged, resolved on recovery, reopened when the pool flaps; each
told change reaches the operators' Telegram chat (a stand-in gateway) and the admins' email (a real SMTP
server). Replicas never tell a change twice."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from desk_contracts.events import PoolLow
from notifier.alerts.conditions import AlertCondition, AlertPolicy, pool_figures
from notifier.alerts.models import Alert, Severity
from notifier.alerts.service import escalate_unacknowledged, raise_alert, resolve_silent_replicas
from notifier.db import SCHEMA
from notifier.main import create_app
from notifier.notifications.models import Notification
from notifier.testing import KEYS, TEST_PROTECTION, SmtpServer, StandInGateway, alerting_of, make_settings
from servicekit.db import Database, utcnow
from servicekit.outbox import OUTBOX_DEAD_CLEARED, OUTBOX_DEAD_LETTERED
from servicekit.testing import eventually, running_app

ADMIN = "ops@desk.test"
_ids = itertools.count(1)


def pool_event(
    event_type: str = "pool.low", *, level: str = "low", free: int = 1, currency: str = "BTC"
) -> dict[str, Any]:
    total = 20
    return {
        "id": f"pool-evt-{next(_ids)}",
        "type": event_type,
        "source": "wallet-pool",
        "occurred_at": "2026-11-21T15:00:00+00:00",
        "aggregate_id": f"{currency}:bitcoin",
        "payload": {
            "currency": currency,
            "network": "bitcoin",
            "free": free,
            "total": total,
            "reserved": total - free,
            "disabled": 0,
            "queued": 3,
            "free_percent": f"{100 * free / total:.2f}",
            "threshold_percent": "10",
            "level": level,
            "observed_at": "2026-11-21T15:00:00+00:00",
        },
    }


@dataclass
class Desk:
    client: Any
    database: Database
    gateway: StandInGateway
    smtp: SmtpServer

    async def publish(self, event: dict[str, Any]) -> None:
        response = await self.client.post(
            "/v1/events", json=event, headers={"Authorization": f"Bearer {KEYS.publisher}"}
        )
        assert response.status_code == 200, response.text

    async def alerts(self, **params: Any) -> list[dict[str, Any]]:
        response = await self.client.get(
            "/v1/alerts", params=params, headers={"Authorization": f"Bearer {KEYS.reader}"}
        )
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    async def alert(self) -> dict[str, Any]:
        [alert] = await self.alerts()
        return alert

    async def told(self) -> list[tuple[str, str]]:
        """(severity, alert id) of every alert message queued for the operators' chat, oldest first."""
        async with self.database.sessionmaker() as session:
            rows = await session.scalars(
                select(Notification.variables_sealed)
                .where(Notification.channel == "telegram", Notification.template == "alert")
                .order_by(Notification.created_at)
            )
            told = [TEST_PROTECTION.open_variables(sealed) for sealed in rows.all() if sealed]
            return [(v["alert"]["severity"], v["alert"]["alert_id"]) for v in told]

    async def told_severities(self) -> list[str]:
        return [severity for severity, _ in await self.told()]

    async def settled(self) -> None:
        """Every queued message delivered (to the stand-in gateway and the SMTP server) before the app stops."""

        async def pending() -> int:
            async with self.database.sessionmaker() as session:
                count = await session.scalar(
                    select(func.count()).select_from(Notification).where(Notification.status == "pending")
                )
                return int(count or 0)

        await eventually(pending, until=lambda n: n == 0, within=20, message="messages still pending")

    async def acknowledge(self, alert_id: str, key: str | None = None) -> Any:
        return await self.client.post(
            f"/v1/alerts/{alert_id}/acknowledge", headers={"Authorization": f"Bearer {key or KEYS.on_call}"}
        )


@pytest.fixture
def desk_factory(
    database: Database, database_url: str, smtp_server: SmtpServer, tmp_path: Path
) -> Callable[..., Any]:
    @asynccontextmanager
    async def make(**overrides: Any) -> AsyncIterator[Desk]:
        async with StandInGateway().serving() as gateway:
            settings = make_settings(
                database_url,
                tmp_path,
                gateway_url=gateway.url,
                email_providers=["smtp"],
                smtp_port=smtp_server.port,
                admin_emails=[ADMIN],
                **overrides,
            )
            async with running_app(create_app(settings)) as client:
                desk = Desk(client, database, gateway, smtp_server)
                yield desk
                await desk.settled()

    return make


async def test_many_pool_low_events_for_one_pool_make_one_alert_told_once(
    desk_factory: Callable[..., Any],
) -> None:
    async with desk_factory() as desk:
        for _ in range(5):
            await desk.publish(pool_event())
        alert = await desk.alert()
        posted = await eventually(lambda: _alert_posts(desk.gateway), until=lambda p: len(p) == 1, within=20)
        [email] = await eventually(lambda: _mail(desk.smtp), until=lambda m: len(m) == 1, within=20)

    assert (alert["key"], alert["status"], alert["severity"], alert["occurrences"]) == (
        "pool.low:BTC:bitcoin",
        "open",
        "warning",
        5,
    )
    assert alert["title"] == "BTC (bitcoin): free deposit addresses below 10 %"
    assert "1 of 20 usable addresses free" in alert["text"]
    assert await desk.told_severities() == ["warning"]
    assert posted[0]["kind"] == "alert"
    assert posted[0]["chat"] == "operators"
    assert posted[0]["alert"]["alert_id"] == alert["id"]
    assert posted[0]["alert"]["severity"] == "warning"
    assert email["To"] == ADMIN
    assert email["Subject"] == "[warning] New alert: BTC (bitcoin): free deposit addresses below 10 %"


async def test_an_empty_pool_escalates_the_alert_to_critical(desk_factory: Callable[..., Any]) -> None:
    async with desk_factory() as desk:
        await desk.publish(pool_event(level="low", free=1))
        await desk.publish(pool_event(level="empty", free=0))
        await desk.publish(pool_event(currency="ETH", level="empty", free=0))
        alerts = {a["key"]: a for a in await desk.alerts()}

    assert alerts["pool.low:BTC:bitcoin"]["severity"] == "critical"
    assert alerts["pool.low:BTC:bitcoin"]["title"] == "BTC (bitcoin): no free deposit address"
    assert alerts["pool.low:ETH:bitcoin"]["severity"] == "critical"  # empty straight away: critical at once
    assert sorted(await desk.told_severities()) == ["critical", "critical", "warning"]


async def test_unacknowledged_alerts_climb_to_emergency_and_an_acknowledged_one_stays(
    desk_factory: Callable[..., Any],
) -> None:
    async with desk_factory(
        alert_warning_to_critical_seconds=0.3, alert_critical_to_emergency_seconds=0.3
    ) as desk:
        await desk.publish(pool_event(currency="ETH"))
        [watched] = await desk.alerts()
        acknowledged = await desk.acknowledge(watched["id"])
        await desk.publish(pool_event(currency="BTC"))
        [unwatched] = await desk.alerts(status="open")
        await eventually(
            lambda: desk.alerts(status="open"), until=lambda a: a[0]["severity"] == "emergency", within=20
        )
        [still] = await desk.alerts(status="acknowledged")
        told = await desk.told()
        metrics = (await desk.client.get("/metrics")).text

    assert acknowledged.status_code == 200, acknowledged.text
    assert (acknowledged.json()["status"], acknowledged.json()["acknowledged_by"]) == (
        "acknowledged",
        "on-call",
    )
    assert (still["id"], still["severity"]) == (watched["id"], "warning")
    assert [s for s, alert_id in told if alert_id == unwatched["id"]] == ["warning", "critical", "emergency"]
    assert [s for s, alert_id in told if alert_id == watched["id"]] == ["warning"]
    assert 'notifier_alerts_total{change="escalated",severity="emergency"} 1.0' in metrics
    assert 'notifier_alerts_total{change="raised",severity="warning"} 2.0' in metrics


async def test_pool_recovered_resolves_the_alert_and_says_so(desk_factory: Callable[..., Any]) -> None:
    async with desk_factory() as desk:
        await desk.publish(pool_event())
        await desk.publish(pool_event("pool.recovered", level="ok", free=5))
        await desk.publish(pool_event("pool.recovered", level="ok", free=5))  # nothing left to resolve
        alert = await desk.alert()
        posted = await eventually(lambda: _alert_posts(desk.gateway), until=lambda p: len(p) == 2, within=20)
        emails = await eventually(lambda: _mail(desk.smtp), until=lambda m: len(m) == 2, within=20)
        again = await desk.acknowledge(alert["id"])

    assert alert["status"] == "resolved"
    assert alert["resolution"].startswith("BTC (bitcoin) recovered: 5 of 20 usable addresses free")
    assert alert["resolution_notified_at"] is not None
    assert [p["alert"]["severity"] for p in posted] == ["warning", "resolved"]
    assert "recovered" in posted[1]["alert"]["text"]
    subjects = sorted(str(m["Subject"]).strip() for m in emails)  # a long one is folded onto its own line
    assert subjects[0] == "[resolved] Back to normal: BTC (bitcoin): free deposit addresses below 10 %"
    assert again.status_code == 409
    assert again.json()["code"] == "alert_already_resolved"


async def test_a_flapping_pool_reopens_its_alert_and_is_told_quietly(
    desk_factory: Callable[..., Any],
) -> None:
    async with desk_factory(alert_quiet_seconds=2) as desk:
        await desk.publish(pool_event())
        await desk.publish(pool_event("pool.recovered", level="ok", free=5))
        await desk.publish(pool_event())  # back within the quiet period: the same alert, told "reopened"
        await desk.publish(pool_event("pool.recovered", level="ok", free=5))  # told only once it stays quiet
        await desk.publish(pool_event())  # back again before that: silently live again
        reopened = await desk.alert()
        told_while_flapping = await desk.told_severities()
        await desk.publish(pool_event("pool.recovered", level="ok", free=5))
        settled = await eventually(
            desk.told_severities, until=lambda s: len(s) == 4, within=20, message="the settled resolution"
        )
        [alert] = await desk.alerts()

    assert (reopened["status"], reopened["reopened_count"], reopened["occurrences"]) == ("open", 2, 3)
    assert told_while_flapping == ["warning", "resolved", "warning"]
    assert settled == ["warning", "resolved", "warning", "resolved"]
    assert (alert["id"], alert["status"]) == (reopened["id"], "resolved")
    assert {alert_id for _, alert_id in await desk.told()} == {alert["id"]}


async def test_a_condition_that_keeps_coming_back_becomes_critical(desk_factory: Callable[..., Any]) -> None:
    async with desk_factory(alert_quiet_seconds=600, alert_recurrences_to_critical=2) as desk:
        for _ in range(3):
            await desk.publish(pool_event())
            await desk.publish(pool_event("pool.recovered", level="ok", free=5))
        await desk.publish(pool_event())
        alert = await desk.alert()

    assert (alert["severity"], alert["reopened_count"]) == ("critical", 3)
    assert await desk.told_severities() == ["warning", "resolved", "warning", "critical"]


async def test_after_the_quiet_period_a_comeback_is_a_new_alert(desk_factory: Callable[..., Any]) -> None:
    async with desk_factory(alert_quiet_seconds=0) as desk:
        await desk.publish(pool_event())
        await desk.publish(pool_event("pool.recovered", level="ok", free=5))
        await desk.publish(pool_event())
        alerts = await desk.alerts()

    assert [a["status"] for a in alerts] == ["open", "resolved"]
    assert alerts[0]["id"] != alerts[1]["id"]


async def test_a_pool_event_missing_a_field_is_refused_and_changes_nothing(
    desk_factory: Callable[..., Any],
) -> None:
    event = pool_event()
    del event["payload"]["level"]
    async with desk_factory() as desk:
        response = await desk.client.post(
            "/v1/events", json=event, headers={"Authorization": f"Bearer {KEYS.publisher}"}
        )
        alerts = await desk.alerts()

    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["payload.level"]
    assert alerts == []


@pytest.mark.parametrize(
    ("method", "path", "key", "status"),
    [
        ("GET", "/v1/alerts", None, 401),
        ("GET", "/v1/alerts", "other", 403),
        ("GET", "/v1/alerts?status=closed", "reader", 422),
        ("GET", "/v1/alerts?cursor=bm9wZQ", "reader", 422),
        ("POST", "/v1/alerts/x/acknowledge", "reader", 403),
        ("POST", "/v1/alerts/x/acknowledge", "on_call", 404),
    ],
)
async def test_alert_routes_check_scopes_and_input(
    desk_factory: Callable[..., Any], method: str, path: str, key: str | None, status: int
) -> None:
    async with desk_factory() as desk:
        headers = {"Authorization": f"Bearer {getattr(KEYS, key)}"} if key else {}
        response = await desk.client.request(method, path, headers=headers)

    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"


async def test_alerts_are_listed_by_filters_page_by_page(desk_factory: Callable[..., Any]) -> None:
    async with desk_factory() as desk:
        for currency in ("BTC", "ETH", "LTC"):
            await desk.publish(pool_event(currency=currency, level="empty" if currency == "ETH" else "low"))
        first = (
            await desk.client.get(
                "/v1/alerts", params={"limit": 2}, headers={"Authorization": f"Bearer {KEYS.reader}"}
            )
        ).json()
        rest = (
            await desk.client.get(
                "/v1/alerts",
                params={"limit": 2, "cursor": first["next_cursor"]},
                headers={"Authorization": f"Bearer {KEYS.reader}"},
            )
        ).json()
        critical = await desk.alerts(severity="critical")
        by_key = await desk.alerts(key="pool.low:LTC:bitcoin")

    assert [a["key"] for a in first["items"] + rest["items"]] == [
        "pool.low:LTC:bitcoin",
        "pool.low:ETH:bitcoin",
        "pool.low:BTC:bitcoin",
    ]
    assert rest["next_cursor"] is None
    assert [a["key"] for a in critical] == ["pool.low:ETH:bitcoin"]
    assert [a["key"] for a in by_key] == ["pool.low:LTC:bitcoin"]


# --- replicas --------------------------------------------------------------------------------------------


POLICY = AlertPolicy(
    warning_to_critical=timedelta(0), critical_to_emergency=timedelta(hours=1), admin_emails=(ADMIN,)
)
ALERTING = alerting_of(POLICY)


def _condition(key: str) -> AlertCondition:
    return AlertCondition(
        key=key, source="test", severity=Severity.warning, title=f"{key} is low", text="figures"
    )


@asynccontextmanager
async def second_database(database_url: str, tmp_path: Path) -> AsyncIterator[Database]:
    other = Database(url=database_url, schema=SCHEMA, var_dir=tmp_path, service_name="notifier")
    try:
        yield other
    finally:
        await other.dispose()


async def _count_told(database: Database, severity: str) -> int:
    async with database.sessionmaker() as session:
        rows = await session.scalars(
            select(Notification.variables_sealed).where(
                Notification.channel == "telegram", Notification.template == "alert"
            )
        )
        told = [TEST_PROTECTION.open_variables(sealed) for sealed in rows.all() if sealed]
        return sum(1 for v in told if v["alert"]["severity"] == severity)


async def test_two_escalation_workers_escalate_each_alert_once(
    database: Database, database_url: str, tmp_path: Path
) -> None:
    async with database.sessionmaker.begin() as session:
        for i in range(30):
            await raise_alert(session=session, condition=_condition(f"k{i}"), alerting=ALERTING)

    async with second_database(database_url, tmp_path) as other:
        rounds = [
            await asyncio.gather(
                escalate_unacknowledged(database=database, alerting=ALERTING, batch_size=7),
                escalate_unacknowledged(database=other, alerting=ALERTING, batch_size=7),
            )
            for _ in range(6)
        ]

    assert sum(sum(r) for r in rounds) == 30
    async with database.sessionmaker() as session:
        severities = (await session.scalars(select(Alert.severity))).all()
    assert set(severities) == {"critical"}
    assert await _count_told(database, "critical") == 30
    async with database.sessionmaker() as session:
        emails = await session.scalar(
            select(func.count()).select_from(Notification).where(Notification.channel == "email")
        )
    assert emails == 60  # raised + escalated, one admin


async def test_concurrent_raises_of_one_key_make_one_alert(
    database: Database, database_url: str, tmp_path: Path
) -> None:
    async def raise_in(db: Database) -> object:
        async with db.sessionmaker.begin() as session:
            return await raise_alert(session=session, condition=_condition("pool.low:X:y"), alerting=ALERTING)

    async with second_database(database_url, tmp_path) as other:
        outcomes = [await asyncio.gather(*(raise_in(db) for db in (database, other) * 3)) for _ in range(3)]

    async with database.sessionmaker() as session:
        alerts = (await session.scalars(select(Alert))).all()
    assert len(alerts) == 1
    assert alerts[0].occurrences == 18
    assert [o for round_ in outcomes for o in round_].count("raised") == 1
    assert await _count_told(database, "warning") == 1


async def _alert_posts(gateway: StandInGateway) -> list[dict[str, Any]]:
    return [body for body in gateway.posted if body["kind"] == "alert"]


async def _mail(smtp: SmtpServer) -> list[EmailMessage]:
    return list(smtp.messages)


@pytest.mark.parametrize(("queued", "told"), [(0, "0 orders"), (1, "1 order"), (2, "2 orders")])
def test_a_pool_alert_counts_waiting_orders_in_the_right_form(queued: int, told: str) -> None:
    payload = PoolLow.model_validate({**pool_event()["payload"], "queued": queued})

    assert f"; {told} waiting for an address." in pool_figures(payload)


def outbox_report(dead: int, *, service: str = "order-api") -> dict[str, Any]:
    """What ``servicekit.outbox.report_dead_letters`` sends: ``outbox.dead_lettered``, or the all-clear."""
    observed = "2026-12-06T08:00:00+00:00"
    payload: dict[str, Any] = {"service": service, "dead": dead, "observed_at": observed}
    if dead:
        payload |= {
            "events": [{"destination": "wallet-pool", "event_type": "order.closed", "dead": dead}],
            "oldest_dead_at": "2026-12-06T07:30:00+00:00",
        }
    return {
        "id": f"outbox-evt-{next(_ids)}",
        "type": OUTBOX_DEAD_LETTERED if dead else OUTBOX_DEAD_CLEARED,
        "source": service,
        "occurred_at": observed,
        "aggregate_id": "outbox",
        "payload": payload,
    }


async def test_dead_outbox_events_are_a_critical_alert_until_none_is_left(
    desk_factory: Callable[..., Any],
) -> None:
    async with desk_factory() as desk:
        await desk.publish(outbox_report(1))
        await desk.publish(outbox_report(3))
        raised = await desk.alert()
        await desk.publish(outbox_report(0))
        resolved = await desk.alert()
        posted = await eventually(lambda: _alert_posts(desk.gateway), until=lambda p: len(p) == 2, within=20)
        emails = await eventually(lambda: _mail(desk.smtp), until=lambda m: len(m) == 2, within=20)

    assert (raised["key"], raised["status"], raised["severity"], raised["occurrences"]) == (
        "outbox.dead:order-api",
        "open",
        "critical",
        2,
    )
    assert raised["title"] == "3 events dead in order-api's outbox"
    assert "order.closed for wallet-pool: 3" in raised["text"]
    assert "python -m order_api outbox list --status dead" in raised["text"]
    assert resolved["status"] == "resolved"
    assert resolved["resolution"].startswith("No event is dead in order-api's outbox any more")
    assert [p["alert"]["severity"] for p in posted] == ["critical", "resolved"]
    assert posted[0]["alert"]["title"] == "1 event dead in order-api's outbox"  # told when raised
    subjects = sorted(" ".join(str(m["Subject"]).split()) for m in emails)
    assert subjects == [
        "[critical] New alert: 1 event dead in order-api's outbox",
        "[resolved] Back to normal: 3 events dead in order-api's outbox",
    ]


async def test_the_delivery_queue_figures_on_metrics_follow_a_dead_notification_and_its_redelivery(
    desk_factory: Callable[..., Any],
) -> None:
    async with desk_factory() as desk:
        await desk.publish(pool_event())  # one email to the admin, one card to the operators' chat
        await desk.settled()
        async with desk.database.sessionmaker.begin() as session:
            email_id = await session.scalar(select(Notification.id).where(Notification.channel == "email"))
            await session.execute(
                update(Notification).where(Notification.id == email_id).values(status="dead", attempts=8)
            )

        async def scrape() -> str:
            return str((await desk.client.get("/metrics")).text)

        dead = await eventually(
            scrape, until=lambda m: 'notifier_delivery_queue_dead{channel="email"} 1.0' in m
        )
        redelivered = await desk.client.post(
            f"/v1/notifications/{email_id}/redeliver", headers={"Authorization": f"Bearer {KEYS.admin}"}
        )
        await desk.settled()
        cleared = await eventually(
            scrape, until=lambda m: 'notifier_delivery_queue_dead{channel="email"} 0.0' in m
        )

    assert redelivered.status_code == 200, redelivered.text
    for metrics in (dead, cleared):
        for channel in ("email", "telegram"):
            assert f'notifier_delivery_queue_pending{{channel="{channel}"}} 0.0' in metrics
            assert f'notifier_delivery_queue_in_flight{{channel="{channel}"}} 0.0' in metrics
            assert f'notifier_delivery_queue_oldest_pending_age_seconds{{channel="{channel}"}} 0.0' in metrics
        assert 'notifier_delivery_queue_dead{channel="telegram"} 0.0' in metrics
    sent = 'notifier_delivery_attempts_total{channel="email",outcome="sent",provider="smtp"}'
    assert f"{sent} 1.0" in dead
    assert f"{sent} 2.0" in cleared


def report_event(
    event_type: str,
    payload: dict[str, Any],
    *,
    source: str,
    aggregate_id: str,
    observed: str = "2026-12-06T08:00:00+00:00",
) -> dict[str, Any]:
    return {
        "id": f"report-evt-{next(_ids)}",
        "type": event_type,
        "source": source,
        "occurred_at": observed,
        "aggregate_id": aggregate_id,
        "payload": {"observed_at": observed, **payload},
    }


def untouched_report(count: int) -> dict[str, Any]:
    """What order-api's sweeper sends (``order_api.orders.untouched``): ``orders.untouched`` or the all-clear."""
    payload: dict[str, Any] = {"count": count}
    if count:
        payload |= {
            "oldest_order_id": "0b7e3c1a-0000-4000-8000-000000000001",
            "oldest_address_assigned_at": "2026-12-06T07:20:00+00:00",
            "threshold_minutes": 30,
        }
    event_type = "orders.untouched" if count else "orders.untouched_cleared"
    return report_event(event_type, payload, source="order-api", aggregate_id="orders.untouched")


async def test_orders_nobody_took_raise_an_alert_that_their_take_resolves(
    desk_factory: Callable[..., Any],
) -> None:
    async with desk_factory() as desk:
        await desk.publish(untouched_report(2))
        raised = await desk.alert()
        await desk.publish(untouched_report(0))
        resolved = await desk.alert()
        posted = await eventually(lambda: _alert_posts(desk.gateway), until=lambda p: len(p) == 2, within=20)

    assert (raised["key"], raised["status"], raised["severity"]) == ("orders.untouched", "open", "warning")
    assert raised["title"] == "2 orders untouched for over 30 min"
    assert "0b7e3c1a-0000-4000-8000-000000000001" in raised["text"]
    assert resolved["status"] == "resolved"
    assert resolved["resolution"].startswith("Every order waiting for a deposit is taken or closed")
    assert [p["alert"]["severity"] for p in posted] == ["warning", "resolved"]


def queue_report(queued: int, wait_minutes: float, *reasons: str) -> dict[str, Any]:
    """What wallet-pool's pool watch sends (``wallet_pool.levels``): ``queue.backlogged`` or ``queue.cleared``."""
    payload: dict[str, Any] = {
        "currency": "USDT",
        "network": "tron",
        "queued": queued,
        "oldest_wait_seconds": wait_minutes * 60,
        "length_threshold": 10,
        "wait_threshold_seconds": 900,
    }
    if reasons:
        payload["reasons"] = list(reasons)
    event_type = "queue.backlogged" if reasons else "queue.cleared"
    return report_event(event_type, payload, source="wallet-pool", aggregate_id="USDT:tron")


async def test_a_long_or_slow_queue_raises_one_alert_per_pool_until_it_clears(
    desk_factory: Callable[..., Any],
) -> None:
    async with desk_factory() as desk:
        await desk.publish(queue_report(4, 20, "wait"))
        slow = await desk.alert()
        await desk.publish(queue_report(12, 25, "length", "wait"))
        both = await desk.alert()
        await desk.publish(queue_report(1, 2))
        cleared = await desk.alert()
        posted = await eventually(lambda: _alert_posts(desk.gateway), until=lambda p: len(p) == 2, within=20)

    assert (slow["key"], slow["severity"]) == ("queue.backlog:USDT:tron", "warning")
    assert slow["title"] == "USDT (tron): orders wait too long for an address"
    assert slow["text"].startswith(
        "4 orders waiting for an address (threshold 10); the oldest has waited 20 min"
    )
    assert (both["id"], both["occurrences"]) == (slow["id"], 2)
    assert both["title"] == "USDT (tron): the address queue is long and orders wait too long for an address"
    assert cleared["status"] == "resolved"
    assert cleared["resolution"].startswith("USDT (tron) queue is back to normal: 1 order waiting")
    assert [p["alert"]["severity"] for p in posted] == ["warning", "resolved"]


def api_report(
    errors: int, *slow: str, replica: str = "api-1", silent_for: timedelta = timedelta(0)
) -> dict[str, Any]:
    """What ``servicekit.api_health`` sends for a replica of order-api: ``api.degraded`` or ``api.recovered``,
    observed ``silent_for`` ago."""
    payload: dict[str, Any] = {
        "service": "order-api",
        "replica": replica,
        "requests": 40,
        "errors": errors,
        "error_percent": 100 * errors / 40,
        "window_seconds": 300,
    }
    degraded = bool(errors >= 2 or slow)
    if degraded:
        payload |= {
            "error_threshold_percent": 5,
            "p95_threshold_seconds": 1,
            "errors_alert": errors >= 2,
            "slow_routes": [{"route": route, "p95_seconds": 2.5, "requests": 30} for route in slow],
        }
    event_type = "api.degraded" if degraded else "api.recovered"
    return report_event(
        event_type,
        payload,
        source="order-api",
        aggregate_id=f"api.health:order-api:{replica}",
        observed=(utcnow() - silent_for).isoformat(),
    )


async def _received_ago(database: Database, key: str, ago: timedelta) -> None:
    """As if the last report of alert ``key`` had reached the notifier ``ago``."""
    async with database.sessionmaker.begin() as session:
        alert = await session.scalar(select(Alert).where(Alert.key == key))
        assert alert is not None
        alert.details = {**alert.details, "received_at": (utcnow() - ago).isoformat()}


async def test_the_alert_of_a_replica_that_stopped_reporting_is_resolved_and_a_live_ones_is_kept(
    desk_factory: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A degraded replica repeats its report once a window; one silent for three windows was replaced (a
    rollout names pods anew) and nothing else would ever resolve its alert."""
    monkeypatch.setattr(  # a notifier that has listened for 20 min
        "notifier.workers.alerts.utcnow", lambda: utcnow() - timedelta(minutes=20)
    )
    async with desk_factory() as desk:
        await desk.publish(api_report(10, replica="api-gone"))
        await desk.publish(api_report(10, replica="api-live"))
        await eventually(desk.alerts, until=lambda a: len(a) == 2, within=20)
        await _received_ago(desk.database, "api.health:order-api:api-gone", timedelta(minutes=16))
        await _received_ago(desk.database, "api.health:order-api:api-live", timedelta(minutes=4))
        resolved = await eventually(
            lambda: desk.alerts(status="resolved"), until=lambda a: len(a) == 1, within=20
        )
        posted = await eventually(lambda: _alert_posts(desk.gateway), until=lambda p: len(p) == 3, within=20)
        [live] = await desk.alerts(status="open")

    [gone] = resolved
    assert gone["key"] == "api.health:order-api:api-gone"
    assert gone["resolution"].startswith("order-api (api-gone) has not reported for 16 min")
    assert live["key"] == "api.health:order-api:api-live"
    assert sorted(p["alert"]["severity"] for p in posted) == ["critical", "critical", "resolved"]


async def test_a_report_delivered_late_or_a_notifier_just_started_resolves_no_replicas_alert(
    desk_factory: Callable[..., Any],
) -> None:
    """A report observed 16 min ago but delivered just now (an outbox that waited an outage out) is fresh; and
    a notifier that has run for less than three windows cannot tell a silent replica from its own absence."""
    async with desk_factory() as desk:
        await desk.publish(api_report(10, replica="api-late", silent_for=timedelta(minutes=16)))
        await eventually(desk.alerts, until=lambda a: len(a) == 1, within=20)
        listened_long = utcnow() - timedelta(hours=1)
        resolved = await resolve_silent_replicas(
            database=desk.database, alerting=ALERTING, listening_since=listened_long
        )
        assert resolved == 0  # just received

        await _received_ago(desk.database, "api.health:order-api:api-late", timedelta(minutes=16))
        just_started = utcnow() - timedelta(minutes=5)
        resolved = await resolve_silent_replicas(
            database=desk.database, alerting=ALERTING, listening_since=just_started
        )
        assert resolved == 0  # silent, but only 5 min of it were listened to
        [alert] = await desk.alerts()

    assert (alert["key"], alert["status"]) == ("api.health:order-api:api-late", "open")


async def test_a_replicas_slow_routes_then_failing_requests_raise_its_alert_and_recovery_resolves_it(
    desk_factory: Callable[..., Any],
) -> None:
    async with desk_factory() as desk:

        async def told(count: int) -> list[dict[str, Any]]:
            # each step's message is out before the next report: one delivery batch may send its messages
            # in any order
            return await eventually(
                lambda: _alert_posts(desk.gateway), until=lambda p: len(p) == count, within=20
            )

        await desk.publish(api_report(0, "GET /v1/orders/{order_id}"))
        slow = await desk.alert()
        await told(1)
        await desk.publish(api_report(10, "GET /v1/orders/{order_id}"))
        failing = await desk.alert()
        await told(2)
        await desk.publish(api_report(0))
        resolved = await desk.alert()
        posted = await told(3)

    assert (slow["key"], slow["severity"]) == ("api.health:order-api:api-1", "warning")
    assert slow["title"] == "order-api (api-1): slow routes"
    assert "GET /v1/orders/{order_id}: 2.5 s over 30 requests" in slow["text"]
    assert (failing["id"], failing["severity"]) == (slow["id"], "critical")  # worse: escalated at once
    assert failing["title"] == "order-api (api-1): failing requests and slow routes"
    assert "10 of 40 requests answered 5xx in the last 5 min (25 %, threshold 5 %)" in failing["text"]
    assert resolved["status"] == "resolved"
    assert resolved["resolution"].startswith("order-api (api-1) is healthy again: 0 of 40 requests")
    assert [p["alert"]["severity"] for p in posted] == ["warning", "critical", "resolved"]

"""Old deliveries, alerts and the cards of long-untouched orders are forgotten; recent ones are kept."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from servicekit.db import Database, utcnow
from servicekit.state import service_state
from telegram_gateway.cards.models import MessageKind, OrderSnapshot, PostedMessage
from telegram_gateway.completions.models import CompletionDraft
from telegram_gateway.main import create_app
from telegram_gateway.messages.models import MessageDelivery
from telegram_gateway.testing import make_settings
from telegram_gateway.workers.retention import forget_old_messages


def snapshot(order_id: str, *, age: timedelta) -> OrderSnapshot:
    return OrderSnapshot(
        order_id=order_id, version=3, order={"order_id": order_id}, escalated=False, updated_at=utcnow() - age
    )


def card(message_id: int, *, order_id: str | None, kind: MessageKind, age: timedelta) -> PostedMessage:
    return PostedMessage(
        chat_id=-100, message_id=message_id, kind=kind.value, order_id=order_id, posted_at=utcnow() - age
    )


def delivery(message_id: str, *, age: timedelta) -> MessageDelivery:
    return MessageDelivery(
        message_id=message_id,
        kind="alert",
        outcome="posted",
        telegram_message_ids=[1],
        received_at=utcnow() - age,
    )


def draft(order_id: str, *, expires_in: timedelta) -> CompletionDraft:
    now = utcnow()
    return CompletionDraft(
        order_id=order_id, telegram_user_id=401, chat_id=-100, version=2, order={}, step="received", answers={},
        expires_at=now + expires_in, updated_at=now,
    )  # fmt: skip


async def test_rows_older_than_the_retention_are_forgotten(database: Database) -> None:
    old, recent = timedelta(days=40), timedelta(days=2)
    async with database.sessionmaker.begin() as session:
        session.add_all([snapshot("old-order", age=old), snapshot("live-order", age=recent)])
        session.add_all(
            [
                card(1, order_id="old-order", kind=MessageKind.ORDER_CARD, age=old),
                card(2, order_id="live-order", kind=MessageKind.ORDER_CARD, age=old),  # its order still moves
                card(3, order_id=None, kind=MessageKind.ALERT, age=old),
                card(4, order_id=None, kind=MessageKind.ALERT, age=recent),
                delivery("00000000-0000-0000-0000-000000000001", age=old),
                delivery("00000000-0000-0000-0000-000000000002", age=recent),
                draft("old-order", expires_in=-timedelta(minutes=1)),  # an expired draft goes at once
                draft("live-order", expires_in=timedelta(minutes=5)),
            ]
        )

    removed = await forget_old_messages(database=database, retention=timedelta(days=30))

    async with database.sessionmaker() as session:
        cards = list(
            await session.scalars(select(PostedMessage.message_id).order_by(PostedMessage.message_id))
        )
        orders = list(await session.scalars(select(OrderSnapshot.order_id)))
        deliveries = list(await session.scalars(select(MessageDelivery.message_id)))
        drafts = list(await session.scalars(select(CompletionDraft.order_id)))
    assert removed == 5
    assert cards == [2, 4]
    assert orders == ["live-order"]
    assert deliveries == ["00000000-0000-0000-0000-000000000002"]
    assert drafts == ["live-order"]


def test_the_service_sweeps_with_the_shared_mechanism_on_its_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TELEGRAM_GATEWAY_RETENTION_DAYS", "12")
    monkeypatch.setenv("TELEGRAM_GATEWAY_RETENTION_SWEEP_SECONDS", "120")
    settings = make_settings(database_url=None, var_dir=tmp_path, fake=None)
    assert (settings.retention_days, settings.retention_sweep_seconds) == (12, 120.0)
    rules = service_state(create_app(settings)).runtime.retention_rules
    assert [(rule.name, rule.keep) for rule in rules] == [
        ("cards of untouched orders", timedelta(days=12)),
        ("alerts", timedelta(days=12)),
        ("order snapshots", timedelta(days=12)),
        ("deliveries", timedelta(days=12)),
        ("expired completion drafts", timedelta(0)),
    ]

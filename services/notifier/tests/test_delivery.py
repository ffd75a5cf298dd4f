"""The durable delivery queue on PostgreSQL, sending through a real SMTP server."""

from __future__ import annotations

import asyncio
import logging
import re
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import select, update

from notifier.db import SCHEMA
from notifier.messages import SAMPLE_VARIABLES
from notifier.notifications.models import DeliveryAttempt, Notification
from notifier.notifications.outcomes import Claimed, Delivered, TransientDeliveryError
from notifier.notifications.service import queue_email
from notifier.testing import (
    TEST_PROTECTION,
    SmtpServer,
    delivery_attempts,
    make_worker,
    running_workers,
    stored_notification,
)
from servicekit.db import Database, utcnow
from servicekit.telemetry import TraceContextFilter, add_span_processor, configure_tracing
from servicekit.testing import eventually


async def _queue(database: Database, recipient: str = "anna@example.com", **options: Any) -> str:
    async with database.sessionmaker.begin() as session:
        return await queue_email(
            session=session,
            protection=TEST_PROTECTION,
            template=options.pop("template", "email_code"),
            locale=options.pop("locale", "en"),
            recipient=recipient,
            variables=options.pop("variables", SAMPLE_VARIABLES["email_code"]),
            **options,
        )


async def test_a_queued_email_is_delivered_through_smtp(database: Database, smtp_server: SmtpServer) -> None:
    variables = {**SAMPLE_VARIABLES["order_created"], "amount": Decimal("0.00000001")}
    notification_id = await _queue(
        database, template="order_created", locale="ru", variables=variables, order_id="ORD-1042"
    )

    async with running_workers(make_worker(database, smtp_server)):
        sent = await eventually(
            lambda: stored_notification(database, notification_id),
            until=lambda n: n.status == "sent",
            message="not sent",
        )

    assert sent.attempts == 1
    assert sent.sent_at is not None
    assert sent.subject == "Заявка ORD-1042 создана"
    [message] = smtp_server.messages
    assert message["Subject"] == "Заявка ORD-1042 создана"
    assert message["Message-ID"] == f"<{notification_id}@desk.test>"  # the From address's domain
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    assert "0.00000001 USDT" in body.get_content()
    [attempt] = await delivery_attempts(database, notification_id)
    assert (attempt.attempt, attempt.provider, attempt.outcome, attempt.error) == (1, "smtp", "sent", None)


async def test_with_smtp_down_it_waits_and_is_delivered_when_the_server_is_back(
    database: Database, smtp_server: SmtpServer
) -> None:
    smtp_server.stop()
    notification_id = await _queue(database)

    async with running_workers(make_worker(database, smtp_server)):
        waiting = await eventually(
            lambda: stored_notification(database, notification_id),
            until=lambda n: n.attempts >= 2,
            message="no retries",
        )
        assert waiting.status == "pending"
        assert waiting.last_error is not None
        assert "TransientDeliveryError" in waiting.last_error
        smtp_server.start()
        sent = await eventually(
            lambda: stored_notification(database, notification_id),
            until=lambda n: n.status == "sent",
            message="not sent",
        )

    attempts = await delivery_attempts(database, notification_id)
    assert [a.outcome for a in attempts] == ["transient"] * (len(attempts) - 1) + ["sent"]
    assert [a.attempt for a in attempts] == list(range(1, len(attempts) + 1))
    assert sent.attempts == len(attempts)
    assert len(smtp_server.messages) == 1


def test_backoff_doubles_with_jitter_up_to_the_cap(database: Database, smtp_server: SmtpServer) -> None:
    worker = make_worker(database, smtp_server, backoff_base_seconds=10, backoff_max_seconds=60)

    for attempts, ceiling in [(1, 10), (2, 20), (3, 40), (4, 60), (9, 60)]:
        delay = worker.backoff(attempts).total_seconds()
        assert ceiling / 2 <= delay <= ceiling


async def test_a_refused_recipient_fails_after_one_attempt(
    database: Database, smtp_server: SmtpServer
) -> None:
    smtp_server.refused.add("nobody@example.com")
    notification_id = await _queue(database, recipient="nobody@example.com")
    other_id = await _queue(database, recipient="anna@example.com")

    async with running_workers(make_worker(database, smtp_server)):
        failed = await eventually(
            lambda: stored_notification(database, notification_id),
            until=lambda n: n.status != "pending",
            message="stuck",
        )
        await eventually(lambda: stored_notification(database, other_id), until=lambda n: n.status == "sent")

    assert failed.status == "failed"
    assert failed.attempts == 1
    assert failed.last_error is not None
    assert "550" in failed.last_error
    [attempt] = await delivery_attempts(database, notification_id)
    assert attempt.outcome == "permanent"
    assert smtp_server.recipients() == ["anna@example.com"]


async def test_after_max_attempts_it_is_dead(database: Database, smtp_server: SmtpServer) -> None:
    smtp_server.stop()
    notification_id = await _queue(database)

    async with running_workers(make_worker(database, smtp_server, max_attempts=3)):
        dead = await eventually(
            lambda: stored_notification(database, notification_id),
            until=lambda n: n.status == "dead",
            message="not dead",
        )

    assert dead.attempts == 3
    assert [a.outcome for a in await delivery_attempts(database, notification_id)] == ["transient"] * 3


async def test_a_notification_sent_again_is_the_same_message(
    database: Database, smtp_server: SmtpServer
) -> None:
    """The worker dies after the server took the email and before it recorded so: the retry carries the same
    Message-ID, so mail servers and clients see one message."""
    notification_id = await _queue(
        database, template="order_created", variables=SAMPLE_VARIABLES["order_created"]
    )
    async with running_workers(make_worker(database, smtp_server)):
        await eventually(
            lambda: stored_notification(database, notification_id), until=lambda n: n.status == "sent"
        )
    async with database.sessionmaker.begin() as session:  # died before writing "sent"
        await session.execute(
            update(Notification)
            .where(Notification.id == notification_id)
            .values(status="pending", sent_at=None, next_attempt_at=utcnow())  # lease expired
        )
    async with running_workers(make_worker(database, smtp_server)):
        await eventually(
            lambda: stored_notification(database, notification_id), until=lambda n: n.status == "sent"
        )

    first, again = smtp_server.messages
    assert first["Message-ID"] == again["Message-ID"] == f"<{notification_id}@desk.test>"
    assert first["Subject"] == again["Subject"]


async def test_an_email_missing_a_value_fails_with_the_reason_and_is_never_sent(
    database: Database, smtp_server: SmtpServer
) -> None:
    variables = {k: v for k, v in SAMPLE_VARIABLES["address_ready"].items() if k != "address"}
    notification_id = await _queue(database, template="address_ready", variables=variables)

    async with running_workers(make_worker(database, smtp_server)):
        failed = await eventually(
            lambda: stored_notification(database, notification_id),
            until=lambda n: n.status != "pending",
            message="stuck",
        )

    assert (failed.status, failed.attempts) == ("failed", 1)
    assert failed.last_error is not None
    assert "address_ready: address missing" in failed.last_error
    assert smtp_server.messages == []


async def test_the_same_event_queued_twice_makes_one_notification(database: Database) -> None:
    first = await _queue(database, event_id="e-1")
    second = await _queue(database, event_id="e-1")
    other_template = await _queue(database, event_id="e-1", template="address_ready")
    other_recipient = await _queue(database, event_id="e-1", recipient="boris@example.com")
    without_event = [await _queue(database), await _queue(database)]

    assert first == second
    assert len({first, other_template, other_recipient, *without_event}) == 5


async def test_two_workers_deliver_fifty_notifications_without_duplicates(
    database: Database, database_url: str, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    ids = [await _queue(database, recipient=f"customer{i}@example.com") for i in range(50)]
    other = Database(url=database_url, schema=SCHEMA, var_dir=tmp_path, service_name="notifier")
    try:
        async with running_workers(make_worker(database, smtp_server), make_worker(other, smtp_server)):
            await eventually(lambda: _count_sent(database), until=lambda n: n == 50, within=20)
    finally:
        await other.dispose()

    assert len(smtp_server.messages) == 50
    assert Counter(smtp_server.recipients()).most_common(1)[0][1] == 1
    async with database.sessionmaker() as session:
        attempts = (await session.scalars(select(DeliveryAttempt.notification_id))).all()
    assert sorted(attempts) == sorted(ids)


async def _count_sent(database: Database) -> int:
    async with database.sessionmaker() as session:
        rows = await session.scalars(select(Notification.id).where(Notification.status == "sent"))
        return len(rows.all())


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.addFilter(TraceContextFilter("notifier"))

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def test_delivery_continues_the_trace_of_the_request_that_queued_it(
    database: Database, smtp_server: SmtpServer
) -> None:
    configure_tracing(service="notifier")
    exporter = InMemorySpanExporter()
    add_span_processor(SimpleSpanProcessor(exporter))
    handler = _Records()
    logger = logging.getLogger("notifier.delivery")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    smtp_server.stop()
    try:
        with trace.get_tracer("test").start_as_current_span("POST /v1/events") as request_span:
            notification_id = await _queue(database)
        trace_id = format(request_span.get_span_context().trace_id, "032x")
        async with running_workers(make_worker(database, smtp_server)):
            await eventually(
                lambda: stored_notification(database, notification_id), until=lambda n: n.attempts >= 1
            )
            smtp_server.start()
            await eventually(
                lambda: stored_notification(database, notification_id), until=lambda n: n.status == "sent"
            )
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)

    attempt_lines = [r for r in handler.records if r.getMessage().startswith("email ")]
    assert {r.getMessage() for r in attempt_lines} == {"email sent", "email delivery failed, will retry"}
    assert {getattr(r, "correlation_id", None) for r in attempt_lines} == {trace_id}
    assert all("anna@example.com" not in str(r.__dict__) for r in handler.records)
    spans = [s for s in exporter.get_finished_spans() if s.name == "deliver email email_code"]
    assert len(spans) >= 2
    assert {format(s.context.trace_id, "032x") for s in spans if s.context is not None} == {trace_id}


async def test_one_orders_messages_in_one_batch_go_out_in_the_order_queued(
    database: Database, smtp_server: SmtpServer
) -> None:
    """A batch is sent in parallel, but not within a thread: the "created" email of an order whose provider is
    slow still arrives before the same order's "completed" one claimed with it; another order's does not wait."""
    real = make_worker(database, smtp_server).sender
    finished: list[tuple[str, str]] = []

    class SlowForTheFirstOrder:
        channel = real.channel
        name = real.name

        async def send(self, item: Claimed) -> Delivered:
            if item.variables["order_id"] == "ORD-A" and item.template == "order_created":
                await asyncio.sleep(0.3)  # a slow provider, for this message only
            delivered = await real.send(item)
            finished.append((item.variables["order_id"], item.template))
            return delivered

    created = SAMPLE_VARIABLES["order_created"]
    changed = SAMPLE_VARIABLES["order_status_changed"]
    await _queue(database, template="order_created", variables={**created, "order_id": "ORD-A"}, order_id="A")
    await _queue(
        database, template="order_status_changed", variables={**changed, "order_id": "ORD-A"}, order_id="A"
    )
    await _queue(database, template="order_created", variables={**created, "order_id": "ORD-B"}, order_id="B")
    worker = make_worker(database, smtp_server)
    worker.sender = SlowForTheFirstOrder()

    assert await worker.run_once() == 3  # one batch

    assert finished == [
        ("ORD-B", "order_created"),  # not held up by order A's slow message
        ("ORD-A", "order_created"),
        ("ORD-A", "order_status_changed"),
    ]
    assert [re.findall(r"ORD-\w", m["Subject"]) for m in smtp_server.messages] == [
        ["ORD-B"],
        ["ORD-A"],
        ["ORD-A"],
    ]


async def test_a_message_to_be_retried_holds_back_the_rest_of_its_thread_to_that_recipient_only(
    database: Database, smtp_server: SmtpServer
) -> None:
    """An alert's "raised" email that fails for Anna keeps her "resolved" one behind it until its retry;
    Boris, another recipient of the same alert, gets both at once and in order."""
    real = make_worker(database, smtp_server).sender
    sent: list[tuple[str, str]] = []

    class FailsAnnasFirst:
        channel = real.channel
        name = real.name

        async def send(self, item: Claimed) -> Delivered:
            if item.recipient == "anna@example.com" and item.variables["change"] == "raised":
                raise TransientDeliveryError("451 try again later")
            delivered = await real.send(item)
            sent.append((item.recipient, item.variables["change"]))
            return delivered

    alert = {**SAMPLE_VARIABLES["alert"], "alert_id": "A-1"}  # an email's variables: the id at the top
    ids = {}
    for change in ("raised", "resolved"):
        for recipient in ("anna@example.com", "boris@example.com"):
            ids[recipient, change] = await _queue(
                database, recipient, template="alert", variables={**alert, "change": change}
            )
    worker = make_worker(database, smtp_server)
    worker.sender = FailsAnnasFirst()

    assert await worker.run_once() == 4  # one batch

    assert sent == [("boris@example.com", "raised"), ("boris@example.com", "resolved")]
    failed = await stored_notification(database, ids["anna@example.com", "raised"])
    held = await stored_notification(database, ids["anna@example.com", "resolved"])
    assert (failed.status, failed.attempts, held.status, held.attempts) == ("pending", 1, "pending", 0)
    assert held.next_attempt_at == failed.next_attempt_at  # due with its retry, not before


async def test_a_thread_outlasting_most_of_its_lease_leaves_the_rest_for_the_next_claim(
    database: Database, smtp_server: SmtpServer
) -> None:
    """Sent after the lease ran out, a message could go twice (another replica claims it again): once little
    of the lease is left, the thread's next message is given back, due at once, unsent."""
    real = make_worker(database, smtp_server).sender

    class Slow:
        channel = real.channel
        name = real.name

        async def send(self, item: Claimed) -> Delivered:
            await asyncio.sleep(0.4)
            return await real.send(item)

    created = {**SAMPLE_VARIABLES["order_created"], "order_id": "ORD-A"}
    first = await _queue(database, template="order_created", variables=created, order_id="A")
    second = await _queue(database, template="order_created", variables=created, order_id="A")
    worker = make_worker(database, smtp_server)
    worker.sender = Slow()
    worker.lease_seconds = 0.5

    assert await worker.run_once() == 2

    sent, left = await stored_notification(database, first), await stored_notification(database, second)
    assert (sent.status, left.status, left.attempts) == ("sent", "pending", 0)
    assert left.next_attempt_at <= utcnow()  # due again at once, not at the end of a lease
    assert len(smtp_server.messages) == 1

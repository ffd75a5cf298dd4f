"""The delivery worker: claims due notifications of one channel (``FOR UPDATE SKIP LOCKED`` + a lease, so
replicas share the queue), sends each through the channel's sender and records every attempt.

One worker runs per channel (email, telegram, webhook) over the same queue, so an outage of one channel never holds
up the other. Transient failures are retried with exponential backoff and jitter; a permanent one fails the
notification at once; after ``max_attempts`` it is dead-lettered. Each delivery continues the trace of the
request that queued it, so its log lines carry that request's correlation id and its calls to peers carry
its ``traceparent``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timedelta
from typing import Any

from opentelemetry import trace

from notifier.metrics import DeliveryMetrics
from notifier.notifications import repository
from notifier.notifications.models import (
    AttemptOutcome,
    Channel,
    NotificationStatus,
)
from notifier.notifications.outcomes import (
    ChannelSender,
    Claimed,
    PermanentDeliveryError,
    SendFailed,
    TransientDeliveryError,
)
from notifier.protection import DataProtection, without_one_time_secrets
from servicekit.backing import outlasting_outages
from servicekit.db import Database, utcnow
from servicekit.metrics import QueueFigures, QueueGauges, queue_figures
from servicekit.telemetry import context_from_traceparent, mask_secrets
from servicekit.workers import QueueWorker, backoff_delay

log = logging.getLogger("notifier.delivery")
tracer = trace.get_tracer("notifier.delivery")


class DeliveryWorker(QueueWorker):
    def __init__(
        self,
        *,
        database: Database,
        protection: DataProtection,
        sender: ChannelSender,
        max_attempts: int = 8,
        backoff_base_seconds: float = 30.0,
        backoff_max_seconds: float = 3600.0,
        poll_seconds: float = 1.0,
        batch_size: int = 20,
        lease_seconds: float = 120.0,
        metrics: DeliveryMetrics | None = None,
        gauges: QueueGauges | None = None,
    ) -> None:
        """``protection``: opens recipients and variables for the sender, seals what is kept once sent;
        ``gauges``: the delivery queue's (:func:`delivery_queue_gauges`), which count what is in flight."""
        super().__init__(
            name=f"notifier-delivery-{sender.channel}",
            database=database,
            poll_seconds=poll_seconds,
            batch_size=batch_size,
        )
        self.database = database
        self.protection = protection
        self.sender = sender
        self.channel = sender.channel
        self.max_attempts = max_attempts
        self.backoff_base_seconds = backoff_base_seconds
        self.backoff_max_seconds = backoff_max_seconds
        self.lease_seconds = lease_seconds
        self.metrics = metrics or DeliveryMetrics()
        self.gauges = gauges

    def backoff(self, attempts: int) -> timedelta:
        return backoff_delay(
            attempts, base_seconds=self.backoff_base_seconds, max_seconds=self.backoff_max_seconds
        )

    async def claim(self) -> list[Claimed]:
        async with self.database.sessionmaker.begin() as session:
            rows = await repository.claim_due(
                session,
                channel=self.channel,
                now=utcnow(),
                lease_seconds=self.lease_seconds,
                limit=self.batch_size,
            )
        protection = self.protection
        claimed = []
        for row in rows:
            # Opened in memory only, for the sender; the table keeps them sealed.
            variables = protection.open_variables(row.variables_sealed)
            recipient = protection.open_recipient(row.recipient_sealed)
            claimed.append(
                Claimed(
                    id=row.id,
                    template=row.template,
                    locale=row.locale,
                    recipient=recipient,
                    variables=variables,
                    attempts=row.attempts,
                    traceparent=row.traceparent,
                    thread=_thread(row.order_id, variables, recipient),
                )
            )
        return claimed

    async def run_once(self) -> int:
        """Claim and deliver one batch; returns how many notifications were claimed. The messages of one
        thread (an alert raised then resolved within one poll, to one recipient) go one after another in the
        order queued; the rest in parallel."""
        leased_until = time.monotonic() + self.lease_seconds
        claimed = await self.claim()
        threads: dict[str, list[Claimed]] = {}
        for index, item in enumerate(claimed):
            threads.setdefault(item.thread or f"#{index}", []).append(item)
        if self.gauges is None or not claimed:
            await asyncio.gather(*(self._deliver_in_turn(t, leased_until) for t in threads.values()))
        else:
            with self.gauges.delivering({self.channel.value: len(claimed)}):
                await asyncio.gather(*(self._deliver_in_turn(t, leased_until) for t in threads.values()))
        return len(claimed)

    async def _deliver_in_turn(self, thread: list[Claimed], leased_until: float) -> None:
        """Send a thread's messages one after another. One to be retried holds the rest back until its retry
        (a "resolved" never overtakes its "raised"); once little of the lease is left, the rest is given back
        for the next claim rather than sent by a worker whose lease may have run out."""
        for index, item in enumerate(thread):
            rest = [later.id for later in thread[index + 1 :]]
            if leased_until - time.monotonic() < self.lease_seconds / 4:
                await self._put_off([item.id, *rest], utcnow())
                return
            retry_at = await self._deliver(item)
            if retry_at is not None:
                await self._put_off(rest, retry_at)
                return

    async def _put_off(self, notification_ids: list[str], until: datetime) -> None:
        if not notification_ids:
            return

        async def write() -> None:
            async with self.database.sessionmaker.begin() as session:
                await repository.put_off(session, notification_ids=notification_ids, until=until)

        # Were this lost, the lease would run out and they would go at once: the outage is waited out.
        await outlasting_outages(write, within=self.lease_seconds / 4, what="holding a thread back")

    async def _deliver(self, item: Claimed) -> datetime | None:
        """Attempt ``item``; returns when it is retried, if it is."""
        context = context_from_traceparent(item.traceparent)
        with tracer.start_as_current_span(
            f"deliver {self.channel} {item.template}",
            context=context,
            kind=trace.SpanKind.CLIENT,
            attributes={"notification.id": item.id, "notification.template": item.template},
        ):
            started_at = utcnow()
            started = time.monotonic()
            provider = self.sender.name
            subject: str | None = None
            error: str | None = None
            response_status: int | None = None
            try:
                delivered = await self.sender.send(item)
                provider, subject = delivered.provider, delivered.subject
                response_status = delivered.response_status
                outcome = AttemptOutcome.sent
            except SendFailed as exc:
                provider, subject, response_status = exc.provider, exc.subject, exc.response_status
                outcome, error = _classify(exc.error)
            except Exception as exc:
                outcome, error = _classify(exc)
                if outcome is AttemptOutcome.transient and not isinstance(exc, TransientDeliveryError):
                    log.exception("delivery raised unexpectedly", extra={"notification_id": item.id})
            duration_ms = int((time.monotonic() - started) * 1000)
            return await self._record(
                item, outcome, provider, subject, error, started_at, duration_ms, response_status
            )

    async def _record(
        self,
        item: Claimed,
        outcome: AttemptOutcome,
        provider: str,
        subject: str | None,
        error: str | None,
        started_at: datetime,
        duration_ms: int,
        response_status: int | None,
    ) -> datetime | None:
        attempts = item.attempts + 1
        now = utcnow()
        if error is not None:
            # A provider's answer may quote the address: it is stored (and logged) without it.
            error = mask_secrets(error.replace(item.recipient, "<recipient>"))
        values: dict[str, Any] = {"attempts": attempts, "last_error": error}
        if subject is not None:
            values["subject"] = subject
        if outcome is AttemptOutcome.sent:
            values.update(status=NotificationStatus.sent.value, sent_at=now)
            spent = without_one_time_secrets(item.template, item.variables)
            if spent is not None:  # a sign-in code is wiped once delivered: the attempts prove the delivery
                values["variables_sealed"] = self.protection.seal_variables(spent)
        elif outcome is AttemptOutcome.permanent:
            values["status"] = NotificationStatus.failed.value
        elif attempts >= self.max_attempts:
            values["status"] = NotificationStatus.dead.value
        else:
            values["next_attempt_at"] = now + self.backoff(attempts)

        async def write() -> None:
            async with self.database.sessionmaker.begin() as session:
                await repository.record_attempt(
                    session,
                    notification_id=item.id,
                    provider=provider,
                    outcome=outcome.value,
                    error=error,
                    duration_ms=duration_ms,
                    started_at=started_at,
                    response_status=response_status,
                    changes=values,
                )

        # The attempt is over (a sent email or card is out): were its record lost to a database outage, a sent
        # message would go again once its lease ran out, so the record waits the outage out (half the lease).
        await outlasting_outages(write, within=self.lease_seconds / 2, what="recording a delivery")
        extra: dict[str, Any] = {
            "notification_id": item.id,
            "template": item.template,
            "attempt": attempts,
            "provider": provider,
            "outcome": outcome.value,
            "duration_ms": duration_ms,
        }
        if error is not None:
            extra["error"] = error
        status = values.get("status", NotificationStatus.pending.value)
        channel = self.channel.value
        self.metrics.attempts.labels(channel, provider, outcome.value).inc()
        if status in (NotificationStatus.failed, NotificationStatus.dead):
            self.metrics.gave_up.labels(channel, status).inc()
        if outcome is AttemptOutcome.sent:
            log.info(f"{channel} sent", extra=extra)
        elif status == NotificationStatus.pending:
            extra["retry_at"] = values["next_attempt_at"].isoformat()
            log.warning(f"{channel} delivery failed, will retry", extra=extra)
        else:
            extra["status"] = status
            log.error(f"{channel} delivery gave up", extra=extra)
        retry_at: datetime | None = values.get("next_attempt_at")
        return retry_at


async def delivery_queue_figures(*, database: Database) -> dict[str, QueueFigures]:
    """Pending and given-up notifications per channel, with the oldest pending one's time."""
    waiting: dict[str, tuple[int, datetime | None]] = {}
    given_up: dict[str, int] = {}
    async with database.sessionmaker() as session:
        for channel, is_pending, count, oldest in await repository.queue_counts(session):
            if is_pending:
                waiting[channel] = (int(count), oldest)
            else:
                given_up[channel] = int(count)
    return queue_figures(waiting, given_up)


def delivery_queue_gauges(*, database: Database, channels: list[Channel]) -> QueueGauges:
    """``notifier_delivery_queue_pending``, ``…_in_flight``, ``…_dead`` (dead-lettered or failed for good)
    and ``…_oldest_pending_age_seconds`` by ``channel``."""

    async def read() -> dict[str, QueueFigures]:
        return await delivery_queue_figures(database=database)

    return QueueGauges(
        name="notifier_delivery_queue",
        label="channel",
        noun="Notifications",
        read=read,
        always=[c.value for c in channels],
    )


def _classify(exc: Exception) -> tuple[AttemptOutcome, str]:
    """A permanent error fails the notification; anything else (an unexpected bug included) is retried."""
    error = f"{type(exc).__name__}: {exc}"[:2000]
    if isinstance(exc, PermanentDeliveryError):
        return AttemptOutcome.permanent, error
    return AttemptOutcome.transient, error


def _thread(order_id: str | None, variables: dict[str, Any], recipient: str) -> str | None:
    """The alert or order a message is about, and to whom: one recipient's slow endpoint never holds up
    another's. An alert's id sits under ``alert`` (Telegram cards) or at the top (emails)."""
    alert = variables.get("alert")
    alert_id = alert.get("alert_id") if isinstance(alert, dict) else None
    alert_id = alert_id or variables.get("alert_id")
    if alert_id:
        return f"alert:{alert_id}:{recipient}"
    return f"order:{order_id}:{recipient}" if order_id else None

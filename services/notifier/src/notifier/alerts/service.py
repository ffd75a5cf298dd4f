"""The alert lifecycle on the ``alert`` table: raise, repeat, escalate, reopen, resolve, acknowledge.

Rules (README, "Alerts"):

- **One alert per key.** A condition reported while its alert is open or acknowledged is a repeat: it
  counts an occurrence and refreshes the figures, and tells nobody unless it worsened.
- **Escalation** ``warning → critical → emergency``: by a worsening condition (a pool that is empty is at
  least critical, a channel failing at the critical share is at least critical), by recurrence (an alert
  that came back ``recurrences_to_critical`` times is at least critical), and by time: an *open* alert
  climbs one step after ``warning_to_critical`` / ``critical_to_emergency`` at its severity.
  Acknowledging stops the time-based steps (a worsening still escalates and is told).
- **Hysteresis.** A condition back within the quiet period after its alert resolved reopens that alert
  (same id, severity kept: flapping is no improvement) instead of raising a new one. The first resolution
  is told at once; the resolution of an alert that has reopened is told only after it stayed resolved for
  the quiet period, and a comeback inside that window reopens it silently (nobody was told it had ended).
  So a flapping condition sends: raised, resolved, reopened, then silence until it has really settled, and
  one last resolved.

Every told change queues messages (``notifier.rules.alert_messages``) in the same transaction as the change.
Concurrency: a partial unique index keeps one live alert per key (a losing concurrent insert becomes a
repeat); changes lock the row (``FOR UPDATE``; the workers ``SKIP LOCKED``) and the workers' updates are
conditional on the state they read, so replicas never tell a change twice.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from notifier.alerts import repository
from notifier.alerts.conditions import (
    API_DEGRADED_SOURCE,
    AlertChange,
    AlertCondition,
    AlertNotice,
    AlertPolicy,
    Recovery,
    silence,
)
from notifier.alerts.errors import AlertAlreadyResolvedError, AlertNotFoundError
from notifier.alerts.models import Alert, AlertStatus, Severity
from notifier.alerts.schemas import AlertFilter, AlertPageRead, AlertRead
from notifier.metrics import AlertMetrics
from notifier.notifications.service import queue_notification
from notifier.protection import DataProtection
from notifier.rules import alert_messages
from servicekit.db import Database, utcnow
from servicekit.plurals import english

log = logging.getLogger("notifier.alerts")

TITLE_MAX = 200
_PENDING_COUNTS = "alert_changes_to_count"
"""Where a session keeps the changes it made, counted in their metrics once it commits (never on rollback)."""


@dataclass(frozen=True, slots=True)
class Alerting:
    """What the alert lifecycle works with: its rules, the keys its messages are sealed with, and the metrics
    its changes are counted in."""

    policy: AlertPolicy
    protection: DataProtection
    metrics: AlertMetrics


# --- reading ---------------------------------------------------------------------------------------------


def to_read(alert: Alert) -> AlertRead:
    return AlertRead.model_validate(alert, from_attributes=True)


async def list_alerts(
    *,
    session: AsyncSession,
    filters: AlertFilter,
    cursor: str | None,
    limit: int,
) -> AlertPageRead:
    """Newest first (by when the alert was first raised), a page at a time."""
    rows = await repository.alert_page(session, filters=filters, cursor=cursor, limit=limit)
    page, next_cursor = repository.NEWEST_FIRST.cut(rows, limit=limit)
    return AlertPageRead(items=[to_read(a) for a in page], next_cursor=next_cursor)


# --- telling and counting --------------------------------------------------------------------------------


async def _tell(
    session: AsyncSession,
    alert: Alert,
    change: AlertChange,
    *,
    reason: str,
    alerting: Alerting,
    event_id: str | None,
) -> None:
    notice = AlertNotice(
        alert_id=alert.id,
        key=alert.key,
        change=change,
        severity=Severity(alert.severity),
        title=alert.title,
        text=alert.text,
        reason=reason,
        raised_at=alert.raised_at,
        occurrences=alert.occurrences,
    )
    for message in alert_messages(notice, alerting.policy):
        await queue_notification(
            session=session,
            protection=alerting.protection,
            channel=message.channel,
            template=message.template,
            locale=message.locale,
            recipient=message.recipient,
            variables=message.variables,
            event_id=event_id,
        )
    log.info(
        f"alert {change}",
        extra={"alert_id": alert.id, "alert_key": alert.key, "severity": alert.severity, "reason": reason},
    )


def _count(session: AsyncSession, metrics: AlertMetrics, change: AlertChange, severity: str) -> None:
    """Count ``change`` in ``metrics`` once the session commits (never for a rolled-back change)."""
    session.sync_session.info.setdefault(_PENDING_COUNTS, []).append((metrics, change.value, severity))


@event.listens_for(Session, "after_commit")
def _count_committed_changes(session: Session) -> None:
    for metrics, change, severity in session.info.pop(_PENDING_COUNTS, None) or ():
        metrics.changes.labels(change, severity).inc()


@event.listens_for(Session, "after_rollback")
def _forget_rolled_back_changes(session: Session) -> None:
    session.info.pop(_PENDING_COUNTS, None)


# --- raising and resolving -------------------------------------------------------------------------------


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:g} min"


async def raise_alert(
    *,
    session: AsyncSession,
    condition: AlertCondition,
    alerting: Alerting,
    event_id: str | None = None,
) -> AlertChange | None:
    """Report ``condition``: raise its alert, reopen a recently resolved one, or repeat the live one. Returns
    the change that was told (``None``: nothing anyone needs to hear)."""
    now = utcnow()
    alert = await repository.live_alert(session, key=condition.key)
    if alert is None:
        recent = await repository.recently_resolved(
            session, key=condition.key, since=now - alerting.policy.quiet
        )
        if recent is not None:
            return await _reopen(session, recent, condition, alerting=alerting, event_id=event_id, now=now)
        alert = await _insert(session, condition, now=now)
        if alert is not None:
            _count(session, alerting.metrics, AlertChange.raised, alert.severity)
            await _tell(
                session, alert, AlertChange.raised, reason="New alert.", alerting=alerting, event_id=event_id
            )
            return AlertChange.raised
        alert = await repository.live_alert(
            session, key=condition.key
        )  # a concurrent raise won: this report is a repeat
        if alert is None:  # pragma: no cover (resolved between the conflict and this read)
            return None
    _refresh(alert, condition, now=now)  # a repeat of the live alert: escalated when it got worse
    current = Severity(alert.severity)
    return await _escalate_to(
        session,
        alert,
        condition.severity,
        previous=current,
        now=now,
        reason=f"Worse: {current} → {condition.severity}.",
        alerting=alerting,
        event_id=event_id,
    )


async def _insert(session: AsyncSession, condition: AlertCondition, *, now: datetime) -> Alert | None:
    """Insert the live alert of ``condition.key``; ``None`` when another transaction holds one already."""
    alert_id = str(uuid.uuid4())
    values = {
        "id": alert_id,
        "key": condition.key,
        "source": condition.source,
        "status": AlertStatus.open.value,
        "severity": condition.severity.value,
        "title": condition.title[:TITLE_MAX],
        "text": condition.text,
        "details": _received(condition, now=now),
        "occurrences": 1,
        "reopened_count": 0,
        "raised_at": now,
        "escalated_at": now,
        "updated_at": now,
    }
    if not await repository.insert_live_alert(session, values=values):
        return None
    return await session.get(Alert, alert_id)


def _refresh(alert: Alert, condition: AlertCondition, *, now: datetime) -> None:
    alert.occurrences += 1
    alert.title = condition.title[:TITLE_MAX]
    alert.text = condition.text
    alert.details = _received(condition, now=now)
    alert.updated_at = now


def _received(condition: AlertCondition, *, now: datetime) -> dict[str, Any]:
    """The figures reported, and when this notifier got them (``received_at``): a replica's silence is
    measured from it, not from its own clock nor from an escalation's ``updated_at``."""
    return {**condition.details, "received_at": now.isoformat()}


async def _escalate_to(
    session: AsyncSession,
    alert: Alert,
    severity: Severity,
    *,
    previous: Severity,
    now: datetime,
    reason: str,
    alerting: Alerting,
    event_id: str | None,
) -> AlertChange | None:
    """Put ``alert`` at ``severity`` and tell it escalated when that is worse than ``previous``; otherwise it
    only keeps what was refreshed (``None``: nothing to tell)."""
    if severity.rank <= previous.rank:
        await session.flush()
        return None
    alert.severity = severity.value
    alert.escalated_at = now
    await session.flush()
    _count(session, alerting.metrics, AlertChange.escalated, alert.severity)
    await _tell(session, alert, AlertChange.escalated, reason=reason, alerting=alerting, event_id=event_id)
    return AlertChange.escalated


async def _reopen(
    session: AsyncSession,
    alert: Alert,
    condition: AlertCondition,
    *,
    alerting: Alerting,
    event_id: str | None,
    now: datetime,
) -> AlertChange | None:
    """The condition is back within the quiet period: the same alert lives again, at no lower severity."""
    told_resolved = alert.resolution_notified_at is not None
    previous = Severity(alert.severity)
    _refresh(alert, condition, now=now)
    alert.reopened_count += 1
    alert.resolved_at = None
    alert.resolution = None
    alert.resolution_notified_at = None
    floor = condition.severity
    if alert.reopened_count >= alerting.policy.recurrences_to_critical:
        floor = floor.at_least(Severity.critical)
    severity = previous.at_least(floor)
    alert.severity = severity.value
    _count(session, alerting.metrics, AlertChange.reopened, alert.severity)
    if told_resolved:
        # People heard it had ended: it is news again, unacknowledged, its escalation clock restarted.
        alert.status = AlertStatus.open.value
        alert.acknowledged_at = None
        alert.acknowledged_by = None
        alert.escalated_at = now
        await session.flush()
        await _tell(
            session,
            alert,
            AlertChange.reopened,
            reason=(
                f"Back within {_minutes(alerting.policy.quiet.total_seconds())} of its resolution "
                f"({english(alert.reopened_count, 'time')})."
            ),
            alerting=alerting,
            event_id=event_id,
        )
        return AlertChange.reopened
    # Its resolution was never told: to everyone it never ended; it keeps its acknowledgement and clock.
    alert.status = (AlertStatus.acknowledged if alert.acknowledged_at else AlertStatus.open).value
    recurring = severity.rank > condition.severity.rank
    return await _escalate_to(
        session,
        alert,
        severity,
        previous=previous,
        now=now,
        reason=(
            f"Keeps coming back ({english(alert.reopened_count, 'time')}): {previous} → {severity}."
            if recurring
            else f"Worse: {previous} → {severity}."
        ),
        alerting=alerting,
        event_id=event_id,
    )


async def resolve_alert(
    *, session: AsyncSession, recovery: Recovery, alerting: Alerting, event_id: str | None = None
) -> AlertChange | None:
    """End the live alert of ``recovery.key`` (nothing when there is none). Its resolution is told now, or,
    for an alert that has reopened before, once it stays resolved for the quiet period (the alert worker)."""
    alert = await repository.live_alert(session, key=recovery.key)
    if alert is None:
        return None
    return await _resolve(session, alert, recovery.text, alerting=alerting, event_id=event_id)


async def _resolve(
    session: AsyncSession, alert: Alert, text: str, *, alerting: Alerting, event_id: str | None
) -> AlertChange | None:
    now = utcnow()
    alert.status = AlertStatus.resolved.value
    alert.resolved_at = now
    alert.resolution = text
    alert.updated_at = now
    _count(session, alerting.metrics, AlertChange.resolved, alert.severity)
    if alert.reopened_count and alerting.policy.quiet.total_seconds() > 0:
        await session.flush()
        log.info("alert resolved, told after the quiet period", extra={"alert_id": alert.id})
        return None
    alert.resolution_notified_at = now
    await session.flush()
    await _tell(session, alert, AlertChange.resolved, reason=text, alerting=alerting, event_id=event_id)
    return AlertChange.resolved


async def apply(
    *,
    session: AsyncSession,
    report: AlertCondition | Recovery,
    alerting: Alerting,
    event_id: str | None = None,
) -> AlertChange | None:
    """Raise for a condition, resolve for a recovery."""
    if isinstance(report, Recovery):
        return await resolve_alert(session=session, recovery=report, alerting=alerting, event_id=event_id)
    return await raise_alert(session=session, condition=report, alerting=alerting, event_id=event_id)


async def acknowledge_alert(*, session: AsyncSession, alert_id: str, by: str) -> AlertRead:
    """Someone is on it: time no longer escalates the alert. Acknowledging twice keeps the first."""
    alert = await session.get(Alert, alert_id, with_for_update=True, populate_existing=True)
    if alert is None:
        raise AlertNotFoundError(f"No alert has the id {alert_id}.")
    if alert.status == AlertStatus.resolved:
        raise AlertAlreadyResolvedError(
            "The alert is resolved; a comeback of its condition reopens it.",
            extra={"resolved_at": alert.resolved_at.isoformat() if alert.resolved_at else None},
        )
    if alert.status == AlertStatus.open:
        now = utcnow()
        alert.status = AlertStatus.acknowledged.value
        alert.acknowledged_at = now
        alert.acknowledged_by = by
        alert.updated_at = now
        await session.flush()
        log.info("alert acknowledged", extra={"alert_id": alert.id, "acknowledged_by": by})
    return to_read(alert)


# --- the alert worker's passes ---------------------------------------------------------------------------


async def escalate_unacknowledged(*, database: Database, alerting: Alerting, batch_size: int = 100) -> int:
    """Climb one step for every open alert that has waited long enough at its severity; returns how many."""
    now = utcnow()
    delays = {
        severity: delay
        for severity in Severity
        if (delay := alerting.policy.escalation_delay(severity)) is not None
    }
    escalated = 0
    async with database.sessionmaker.begin() as session:
        alerts = await repository.claim_due_escalations(session, now=now, delays=delays, limit=batch_size)
        for alert in alerts:
            current = Severity(alert.severity)
            following = list(Severity)[current.rank + 1]
            waited = alerting.policy.escalation_delay(current) or timedelta(0)
            # Conditional on the alert being as read: two replicas (or two in-process workers on SQLite,
            # which has no row locks) never apply one change twice.
            if not await repository.escalate_if_unchanged(
                session, alert_id=alert.id, severity_was=current, severity=following, now=now
            ):
                continue
            await session.refresh(alert)
            _count(session, alerting.metrics, AlertChange.escalated, alert.severity)
            await _tell(
                session,
                alert,
                AlertChange.escalated,
                reason=f"Not acknowledged for {_minutes(waited.total_seconds())}: {current} → {following}.",
                alerting=alerting,
                event_id=None,
            )
            escalated += 1
    return escalated


async def tell_settled_resolutions(*, database: Database, alerting: Alerting, batch_size: int = 100) -> int:
    """Tell the resolutions held back by the quiet period once they stayed resolved through it."""
    now = utcnow()
    told = 0
    async with database.sessionmaker.begin() as session:
        alerts = await repository.claim_settled_resolutions(
            session, resolved_before=now - alerting.policy.quiet, limit=batch_size
        )
        for alert in alerts:
            if await repository.mark_resolution_told(session, alert_id=alert.id, now=now):
                await session.refresh(alert)
                await _tell(
                    session,
                    alert,
                    AlertChange.resolved,
                    reason=alert.resolution or "Resolved.",
                    alerting=alerting,
                    event_id=None,
                )
                told += 1
    return told


async def resolve_silent_replicas(
    *, database: Database, alerting: Alerting, listening_since: datetime, batch_size: int = 100
) -> int:
    """Resolve the API-health alert of a replica that stopped reporting. A degraded replica repeats its report
    once a window, so one silent for ``SILENT_WINDOWS`` windows was replaced or stopped (a rollout gives pods
    new names), and nothing else would ever resolve its alert. Silence counts from the last report received,
    and not before ``listening_since`` (this process's start: reports sent while no notifier ran wait in the
    publishers' outboxes)."""
    now = utcnow()
    resolved = 0
    async with database.sessionmaker.begin() as session:
        for alert in await repository.claim_live(session, source=API_DEGRADED_SOURCE, limit=batch_size):
            silent_for = silence(alert.details, now=now, listening_since=listening_since)
            if silent_for is None or not await repository.touch_if_unchanged(
                session, alert_id=alert.id, updated_at_was=alert.updated_at, now=now
            ):
                continue
            await session.refresh(alert)
            replica = f"{alert.details.get('service', '?')} ({alert.details.get('replica', '?')})"
            text = (
                f"{replica} has not reported for {_minutes(60 * round(silent_for.total_seconds() / 60))}: "
                "the replica was replaced or stopped, so its alert is resolved. A replica still running and "
                "degraded reports again within its window and raises it anew."
            )
            await _resolve(session, alert, text, alerting=alerting, event_id=None)
            resolved += 1
    return resolved


async def live_counts(*, database: Database) -> dict[tuple[str, str], int]:
    """Open and acknowledged alerts by (status, severity), for the ``notifier_alerts_live`` gauge."""
    async with database.sessionmaker() as session:
        return await repository.live_counts(session)

"""What an alert is about and how it is judged: the conditions (built from wallet-pool's pool events and from
delivery failure figures), the changes people are told about, and the policy numbers from settings.

Nothing here touches the database; ``notifier.alerts.service`` applies these to the ``alert`` table.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from desk_contracts.events import (
    ApiDegraded,
    ApiRecovered,
    OrdersUntouched,
    OrdersUntouchedCleared,
    OutboxDeadCleared,
    OutboxDeadLettered,
    PoolLevel,
    PoolLow,
    PoolRecovered,
    QueueBacklogged,
    QueueCleared,
    QueueLevel,
)
from notifier.alerts.models import Severity
from notifier.settings import Settings
from servicekit.events import read_payload
from servicekit.outbox import EventEnvelope
from servicekit.plurals import english


class AlertChange(enum.StrEnum):
    """A change people are told about (``reopened`` silently when they never heard it had resolved)."""

    raised = "raised"
    reopened = "reopened"
    escalated = "escalated"
    resolved = "resolved"


@dataclass(frozen=True, slots=True)
class AlertCondition:
    """A condition reported now: raises the alert of ``key`` or keeps it (at least at ``severity``)."""

    key: str
    source: str
    severity: Severity
    title: str
    text: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Recovery:
    """The condition of ``key`` is over; ``text`` says how it ended."""

    key: str
    text: str


@dataclass(frozen=True, slots=True)
class AlertNotice:
    """One change of one alert, as told to operators and admins (``notifier.rules.alert_messages``)."""

    alert_id: str
    key: str
    change: AlertChange
    severity: Severity
    title: str
    text: str
    reason: str
    raised_at: datetime
    occurrences: int

    @property
    def shown_severity(self) -> str:
        """telegram-gateway's ``alert.severity``: the severity, or ``resolved``."""
        return "resolved" if self.change is AlertChange.resolved else self.severity.value


@dataclass(frozen=True, slots=True)
class AlertPolicy:
    """The alert rules' numbers and audience, from settings."""

    warning_to_critical: timedelta = timedelta(minutes=15)
    critical_to_emergency: timedelta = timedelta(minutes=30)
    quiet: timedelta = timedelta(minutes=10)
    recurrences_to_critical: int = 3
    admin_emails: tuple[str, ...] = ()
    admin_locale: str = "en"
    telegram: bool = True
    failure_window: timedelta = timedelta(minutes=15)
    failure_min_attempts: int = 20
    failure_threshold_percent: float = 20.0
    failure_critical_percent: float = 50.0
    failure_resolve_percent: float = 10.0

    @classmethod
    def from_settings(cls, settings: Settings) -> AlertPolicy:
        return cls(
            warning_to_critical=timedelta(seconds=settings.alert_warning_to_critical_seconds),
            critical_to_emergency=timedelta(seconds=settings.alert_critical_to_emergency_seconds),
            quiet=timedelta(seconds=settings.alert_quiet_seconds),
            recurrences_to_critical=settings.alert_recurrences_to_critical,
            admin_emails=tuple(settings.admin_emails),
            admin_locale=settings.admin_locale,
            telegram=settings.telegram_enabled,
            failure_window=timedelta(seconds=settings.delivery_failure_window_seconds),
            failure_min_attempts=settings.delivery_failure_min_attempts,
            failure_threshold_percent=settings.delivery_failure_threshold_percent,
            failure_critical_percent=settings.delivery_failure_critical_percent,
            failure_resolve_percent=settings.delivery_failure_resolve_percent,
        )

    def escalation_delay(self, severity: Severity) -> timedelta | None:
        """How long an open alert stays at ``severity`` before time escalates it (``None``: the top)."""
        if severity is Severity.warning:
            return self.warning_to_critical
        if severity is Severity.critical:
            return self.critical_to_emergency
        return None


# --- wallet-pool: pool.low / pool.recovered -------------------------------------------------------------


def pool_name(pool: PoolLevel) -> str:
    return f"{pool.currency} ({pool.network})"


def pool_figures(pool: PoolLevel) -> str:
    """A pool event's figures, as the alert's text tells them."""
    return (
        f"{pool.free} of {pool.total - pool.disabled} usable addresses free ({pool.free_percent} %, threshold "
        f"{pool.threshold_percent} %); {pool.reserved} reserved, {pool.disabled} disabled; "
        f"{english(pool.queued, 'order')} waiting for an address. Seen {pool.observed_at.isoformat()}."
    )


def pool_key(currency: str, network: str) -> str:
    return f"pool.low:{currency}:{network}"


def pool_low(envelope: EventEnvelope) -> AlertCondition:
    """``pool.low``: a warning, at least critical once the pool is empty."""
    pool = read_payload(PoolLow, envelope)
    empty = pool.level == "empty" or pool.free == 0
    title = (
        f"{pool_name(pool)}: no free deposit address"
        if empty
        else f"{pool_name(pool)}: free deposit addresses below {pool.threshold_percent} %"
    )
    return AlertCondition(
        key=pool_key(pool.currency, pool.network),
        source="pool.low",
        severity=Severity.critical if empty else Severity.warning,
        title=title,
        text=pool_figures(pool),
        details=pool.model_dump(mode="json"),
    )


def pool_recovered(envelope: EventEnvelope) -> Recovery:
    pool = read_payload(PoolRecovered, envelope)
    return Recovery(
        key=pool_key(pool.currency, pool.network), text=f"{pool_name(pool)} recovered: {pool_figures(pool)}"
    )


# --- wallet-pool: queue.backlogged / queue.cleared ---------------------------------------------------------


def queue_key(currency: str, network: str) -> str:
    return f"queue.backlog:{currency}:{network}"


def queue_figures(queue: QueueLevel) -> str:
    """A queue event's figures, as the alert's text tells them."""
    return (
        f"{english(queue.queued, 'order')} waiting for an address (threshold {queue.length_threshold}); the "
        f"oldest has waited {queue.oldest_wait_seconds / 60:.0f} min (threshold "
        f"{queue.wait_threshold_seconds / 60:g} min). Seen {queue.observed_at.isoformat()}."
    )


def queue_backlogged(envelope: EventEnvelope) -> AlertCondition:
    """``queue.backlogged``: a warning; customers wait for a deposit address while none is free."""
    queue = read_payload(QueueBacklogged, envelope)
    name = f"{queue.currency} ({queue.network})"
    reasons = {"length": "the address queue is long", "wait": "orders wait too long for an address"}
    return AlertCondition(
        key=queue_key(queue.currency, queue.network),
        source="queue.backlogged",
        severity=Severity.warning,
        title=f"{name}: " + " and ".join(reasons[r] for r in queue.reasons),
        text=f"{queue_figures(queue)} Import deposit addresses for this pool, or release stale orders.",
        details=queue.model_dump(mode="json"),
    )


def queue_cleared(envelope: EventEnvelope) -> Recovery:
    queue = read_payload(QueueCleared, envelope)
    return Recovery(
        key=queue_key(queue.currency, queue.network),
        text=f"{queue.currency} ({queue.network}) queue is back to normal: {queue_figures(queue)}",
    )


# --- order-api: orders.untouched / orders.untouched_cleared -----------------------------------------------

UNTOUCHED_KEY = "orders.untouched"


def orders_untouched(envelope: EventEnvelope) -> AlertCondition:
    """``orders.untouched``: a warning (time escalates it): customers have an address and nobody is on it."""
    report = read_payload(OrdersUntouched, envelope)
    return AlertCondition(
        key=UNTOUCHED_KEY,
        source="orders.untouched",
        severity=Severity.warning,
        title=f"{english(report.count, 'order')} untouched for over {report.threshold_minutes} min",
        text=f"No operator has taken {english(report.count, 'order')} waiting for a deposit for more than "
        f"{report.threshold_minutes} min since it got its address; the oldest, {report.oldest_order_id}, got "
        f"it at {report.oldest_address_assigned_at.isoformat()}. Take them in the operators' chat or with "
        "GET /v1/operator/orders.",
        details=report.model_dump(mode="json"),
    )


def orders_untouched_cleared(envelope: EventEnvelope) -> Recovery:
    report = read_payload(OrdersUntouchedCleared, envelope)
    return Recovery(
        key=UNTOUCHED_KEY,
        text=f"Every order waiting for a deposit is taken or closed ({report.observed_at.isoformat()}).",
    )


# --- any service: api.degraded / api.recovered (servicekit.api_health) -----------------------------------


API_DEGRADED_SOURCE = "api.degraded"
SILENT_WINDOWS = 3
"""A degraded replica repeats its report once a window (``servicekit.api_health``): silent for this many
windows, it is gone (replaced or stopped) and its alert is resolved."""


def api_health_key(service: str, replica: str) -> str:
    return f"api.health:{service}:{replica}"


def silence(details: dict[str, Any], *, now: datetime, listening_since: datetime) -> timedelta | None:
    """How long the replica of an API-health alert (its last report, ``details``) has been silent, when that
    is ``SILENT_WINDOWS`` of its windows or more; ``None`` while it may still report. Counted from when the
    last report was received (``received_at``; its ``observed_at`` for an alert stored without it), and not
    from before ``listening_since``: a report delivered late, or held back while no notifier ran, is fresh."""
    try:
        received = str(details.get("received_at") or details["observed_at"])
        silent_since = max(_aware(datetime.fromisoformat(received)), _aware(listening_since))
        window = timedelta(seconds=float(details["window_seconds"]))
    except (KeyError, ValueError):
        return None
    silent_for = now - silent_since
    return silent_for if silent_for >= SILENT_WINDOWS * window else None


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def api_degraded(envelope: EventEnvelope) -> AlertCondition:
    """``api.degraded``: a warning; critical when requests fail (5xx), since customers see errors."""
    report = read_payload(ApiDegraded, envelope)
    window = f"{report.window_seconds / 60:g} min"
    parts = []
    if report.errors_alert:
        parts.append(
            f"{report.errors} of {report.requests} requests answered 5xx in the last {window} "
            f"({report.error_percent:g} %, threshold {report.error_threshold_percent:g} %)."
        )
    if report.slow_routes:
        routes = "; ".join(
            f"{r.route}: {r.p95_seconds:g} s over {r.requests} requests" for r in report.slow_routes
        )
        parts.append(f"p95 latency above {report.p95_threshold_seconds:g} s in the last {window}: {routes}.")
    what = " and ".join(
        reason
        for reason, present in (
            ("failing requests", report.errors_alert),
            ("slow routes", report.slow_routes),
        )
        if present
    )
    return AlertCondition(
        key=api_health_key(report.service, report.replica),
        source=API_DEGRADED_SOURCE,
        severity=Severity.critical if report.errors_alert else Severity.warning,
        title=f"{report.service} ({report.replica}): {what}",
        text=" ".join(parts) + f" Seen {report.observed_at.isoformat()}.",
        details=report.model_dump(mode="json"),
    )


def api_recovered(envelope: EventEnvelope) -> Recovery:
    report = read_payload(ApiRecovered, envelope)
    return Recovery(
        key=api_health_key(report.service, report.replica),
        text=f"{report.service} ({report.replica}) is healthy again: {report.errors} of {report.requests} "
        f"requests answered 5xx in the last {report.window_seconds / 60:g} min ({report.error_percent:g} %), "
        "no route slow.",
    )


# --- a service's outbox: outbox.dead_lettered / outbox.dead_cleared (servicekit.outbox.report_dead_letters) ---


def outbox_dead_key(service: str) -> str:
    return f"outbox.dead:{service}"


def outbox_dead(envelope: EventEnvelope) -> AlertCondition:
    """``outbox.dead_lettered``: critical at once. Nothing retries a dead event, and a dead ``order.closed``
    keeps a deposit address out of the pool until someone replays it."""
    report = read_payload(OutboxDeadLettered, envelope)
    events = "; ".join(f"{e.event_type} for {e.destination}: {e.dead}" for e in report.events)
    command = report.service.replace("-", "_")
    return AlertCondition(
        key=outbox_dead_key(report.service),
        source="outbox.dead_lettered",
        severity=Severity.critical,
        title=f"{english(report.dead, 'event')} dead in {report.service}'s outbox",
        text=f"Delivery gave up on them ({events}); the oldest since {report.oldest_dead_at.isoformat()}. "
        f"Nothing retries them: list them with GET /v1/admin/outbox?status=dead on {report.service} (or "
        f"python -m {command} outbox list --status dead) and replay each once its cause is fixed "
        "(POST /v1/admin/outbox/{id}/replay, or outbox replay ID).",
        details=report.model_dump(mode="json"),
    )


def outbox_dead_cleared(envelope: EventEnvelope) -> Recovery:
    report = read_payload(OutboxDeadCleared, envelope)
    return Recovery(
        key=outbox_dead_key(report.service),
        text=f"No event is dead in {report.service}'s outbox any more ({report.observed_at.isoformat()}).",
    )


# --- the delivery failure rate ----------------------------------------------------------------------------


def failure_rate_key(channel: str) -> str:
    return f"delivery.failure_rate:{channel}"


@dataclass(frozen=True, slots=True)
class FailureFigures:
    """A channel's delivery attempts in the window and how many of them failed (transient or permanent)."""

    channel: str
    attempts: int
    failed: int

    @property
    def percent(self) -> float:
        return 100.0 * self.failed / self.attempts if self.attempts else 0.0


def judge_failure_rate(figures: FailureFigures, policy: AlertPolicy) -> AlertCondition | Recovery | None:
    """Raise at the threshold (critical from the critical share), resolve only below the lower resolve
    share (hysteresis), and change nothing on too few attempts to judge or in between."""
    if figures.attempts < policy.failure_min_attempts:
        return None
    percent = figures.percent
    window_minutes = policy.failure_window.total_seconds() / 60
    summary = (
        f"{figures.failed} of {figures.attempts} {figures.channel} delivery attempts failed in the last "
        f"{window_minutes:g} min ({percent:.1f} %)."
    )
    if percent >= policy.failure_threshold_percent:
        critical = percent >= policy.failure_critical_percent
        return AlertCondition(
            key=failure_rate_key(figures.channel),
            source="delivery.failure_rate",
            severity=Severity.critical if critical else Severity.warning,
            title=f"{figures.channel.capitalize()} deliveries are failing: {percent:.1f} %",
            text=f"{summary} Threshold {policy.failure_threshold_percent:g} %.",
            details={
                "channel": figures.channel,
                "attempts": figures.attempts,
                "failed": figures.failed,
                "percent": round(percent, 2),
                "window_seconds": policy.failure_window.total_seconds(),
            },
        )
    if percent < policy.failure_resolve_percent:
        return Recovery(
            key=failure_rate_key(figures.channel),
            text=f"{summary} Back below {policy.failure_resolve_percent:g} %.",
        )
    return None

"""The alert worker (a ``PeriodicWorker``): each pass escalates open alerts that waited too long, tells the
resolutions that outlasted the quiet period, resolves the API-health alerts of replicas that stopped reporting, judges each channel's delivery failure rate, and refreshes the
``notifier_alerts_live`` gauge. Every replica runs it; row locks (``SKIP LOCKED``), conditional updates and
the one-live-alert-per-key index keep them from telling anything twice."""

from __future__ import annotations

from notifier.alerts.conditions import judge_failure_rate
from notifier.alerts.models import AlertStatus, Severity
from notifier.alerts.service import (
    Alerting,
    apply,
    escalate_unacknowledged,
    live_counts,
    resolve_silent_replicas,
    tell_settled_resolutions,
)
from notifier.stats.service import failure_figures
from servicekit.db import Database, utcnow
from servicekit.workers import PeriodicWorker


async def check_delivery_failure_rates(*, database: Database, alerting: Alerting) -> None:
    """Raise ``delivery.failure_rate:{channel}`` at the threshold, resolve it below the resolve share."""
    policy = alerting.policy
    async with database.sessionmaker.begin() as session:
        for figures in await failure_figures(session=session, since=utcnow() - policy.failure_window):
            report = judge_failure_rate(figures, policy)
            if report is not None:
                await apply(session=session, report=report, alerting=alerting)


class AlertWorker:
    def __init__(
        self,
        *,
        database: Database,
        alerting: Alerting,
        batch_size: int = 100,
    ) -> None:
        self.database = database
        self.alerting = alerting
        self.batch_size = batch_size
        self.listening_since = utcnow()
        """Silence before this process ran is not counted: the reports of that time may still come."""

    async def run_once(self) -> int:
        """One pass; returns the escalations and resolutions told (a full batch runs again at once)."""
        handled = await escalate_unacknowledged(
            database=self.database, alerting=self.alerting, batch_size=self.batch_size
        )
        handled += await tell_settled_resolutions(
            database=self.database, alerting=self.alerting, batch_size=self.batch_size
        )
        handled += await resolve_silent_replicas(
            database=self.database,
            alerting=self.alerting,
            listening_since=self.listening_since,
            batch_size=self.batch_size,
        )
        await check_delivery_failure_rates(database=self.database, alerting=self.alerting)
        counts = await live_counts(database=self.database)
        for status in (AlertStatus.open, AlertStatus.acknowledged):
            for severity in Severity:
                self.alerting.metrics.live.labels(status.value, severity.value).set(
                    counts.get((status, severity), 0)
                )
        return handled

    def periodic(self, *, interval_seconds: float) -> PeriodicWorker:
        return PeriodicWorker(
            name="notifier-alerts",
            job=self.run_once,
            interval_seconds=interval_seconds,
            batch_size=self.batch_size,
        )

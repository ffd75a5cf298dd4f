"""notifier's business metrics, on the app's Prometheus registry (``/metrics``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class DeliveryMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        registry = registry if registry is not None else CollectorRegistry()
        self.attempts = Counter(
            "notifier_delivery_attempts_total",
            "Delivery attempts by channel (email, telegram), provider and outcome (sent, transient, permanent)",
            ["channel", "provider", "outcome"],
            registry=registry,
        )
        self.gave_up = Counter(
            "notifier_deliveries_given_up_total",
            "Notifications that stopped being retried, by channel and final status (failed, dead)",
            ["channel", "status"],
            registry=registry,
        )


class AlertMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        registry = registry if registry is not None else CollectorRegistry()
        self.changes = Counter(
            "notifier_alerts_total",
            "Alert changes by change (raised, reopened, escalated, resolved) and severity after the change",
            ["change", "severity"],
            registry=registry,
        )
        self.live = Gauge(
            "notifier_alerts_live",
            "Open and acknowledged alerts by status and severity (read by the alert worker each pass)",
            ["status", "severity"],
            registry=registry,
        )

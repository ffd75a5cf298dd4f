"""notifier's business metrics, on the app's Prometheus registry (``/metrics``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class DeliveryMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        registry = registry if registry is not None else CollectorRegistry()
        self.attempts = Counter(
            "notifier_delivery_attempts_total",
            "Delivery attempts by channel, provider and outcome (sent, transient, permanent)",
            ["channel", "provider", "outcome"],
            registry=registry,
        )
        self.gave_up = Counter(
            "notifier_deliveries_given_up_total",
            "Notifications that stopped being retried, by final status (failed, dead)",
            ["channel", "status"],
            registry=registry,
        )

"""telegram-gateway's business metrics, on the app's Prometheus registry (``/metrics``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        registry = registry if registry is not None else CollectorRegistry()
        self.messages = Counter(
            "telegram_gateway_messages_total",
            "POST /v1/messages handled, by kind and outcome (posted, edited, no_card, duplicate, or the "
            "error code)",
            ["kind", "outcome"],
            registry=registry,
        )
        self.callbacks = Counter(
            "telegram_gateway_callbacks_total",
            "Buttons pressed, by action (take, complete ...) and result (done, refused, unavailable, asked: "
            "the reason of an escalation, unknown_user, stale)",
            ["action", "result"],
            registry=registry,
        )
        self.webhook_requests = Counter(
            "telegram_gateway_webhook_requests_total",
            "POST /telegram/webhook by result (accepted, or the error code: webhook_secret_invalid, rate_limited ...)",
            ["result"],
            registry=registry,
        )
        self.poller_leader = Gauge(
            "telegram_poller_leader",
            "1 on the replica that holds the polling lease and calls getUpdates, 0 elsewhere (polling mode on "
            "PostgreSQL; the sum over the replicas is 1 when the bot is healthy)",
            registry=registry,
        )

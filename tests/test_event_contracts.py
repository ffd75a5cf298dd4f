"""Each service handles the events whose contract (``desk_contracts.events``) names it as their consumer, and
only those: renaming an event on either side, or sending it to a service that does not read it, fails here."""

from __future__ import annotations

from desk_contracts.events import EVENTS
from notifier.alerts.conditions import AlertPolicy
from notifier.events import event_handlers
from order_api.orders.events import wallet_event_handlers
from order_api.settings import Settings as OrderApiSettings
from wallet_pool.allocations.events import order_event_handlers
from wallet_pool.settings import Settings as WalletPoolSettings

IGNORED = {"notifier": {"order.escalation_commented"}}
"""Sent to a consumer that acknowledges it and does nothing with it (yet): no rule reads it."""


def sent_to(service: str) -> set[str]:
    return {name for name, event in EVENTS.items() if service in event.consumers}


def test_the_notifier_handles_what_is_sent_to_it() -> None:
    handled = set(event_handlers(AlertPolicy()))
    assert handled == sent_to("notifier") - IGNORED["notifier"]


def test_order_api_handles_what_is_sent_to_it() -> None:
    assert set(wallet_event_handlers(OrderApiSettings.model_construct())) == sent_to("order-api")


def test_wallet_pool_handles_what_is_sent_to_it() -> None:
    assert set(order_event_handlers(settings=WalletPoolSettings.model_construct())) == sent_to("wallet-pool")


def test_nothing_is_sent_to_the_telegram_gateway_as_an_event() -> None:
    """The notifier turns order events into cards and posts them to the gateway's ``POST /v1/messages``."""
    assert sent_to("telegram-gateway") == set()

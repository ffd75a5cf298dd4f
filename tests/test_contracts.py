"""The contracts between the services hold on both sides. Each service handles the events whose contract
(``desk_contracts.events``) names it as their consumer, and only those: renaming an event on either side, or
sending it to a service that does not read it, fails here. Every error any service raises carries an
``ErrorCode`` (``desk_contracts.errors``), and the codes telegram-gateway matches order-api's answers on are
order-api's own."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

from desk_contracts.errors import ErrorCode
from desk_contracts.events import EVENTS
from notifier.alerts.conditions import AlertPolicy
from notifier.events import event_handlers
from notifier.testing import alerting_of
from order_api.orders.events import wallet_event_handlers
from order_api.protection import DataProtection
from order_api.settings import Settings as OrderApiSettings
from servicekit.errors import DomainError
from telegram_gateway.clients import order_api as gateway_client
from wallet_pool.allocations.events import order_event_handlers
from wallet_pool.settings import Settings as WalletPoolSettings

IGNORED = {"notifier": {"order.escalation_commented"}}
"""Sent to a consumer that acknowledges it and does nothing with it (yet): no rule reads it."""


def sent_to(service: str) -> set[str]:
    return {name for name, event in EVENTS.items() if service in event.consumers}


def test_the_notifier_handles_what_is_sent_to_it() -> None:
    handled = set(event_handlers(alerting_of(AlertPolicy())))
    assert handled == sent_to("notifier") - IGNORED["notifier"]


def test_order_api_handles_what_is_sent_to_it() -> None:
    protection = DataProtection(keys={"k": bytes(32)}, current_key_id="k", blind_index_key=bytes(32))
    handlers = wallet_event_handlers(settings=OrderApiSettings.model_construct(), protection=protection)
    assert set(handlers) == sent_to("order-api")


def test_wallet_pool_handles_what_is_sent_to_it() -> None:
    assert set(order_event_handlers(settings=WalletPoolSettings.model_construct())) == sent_to("wallet-pool")


def test_nothing_is_sent_to_the_telegram_gateway_as_an_event() -> None:
    """The notifier turns order events into cards and posts them to the gateway's ``POST /v1/messages``."""
    assert sent_to("telegram-gateway") == set()


SERVICES = ("order_api", "wallet_pool", "notifier", "telegram_gateway")


def error_classes() -> list[type[DomainError]]:
    """Every error class of every service (each service's app imports all of its own)."""
    for service in SERVICES:
        importlib.import_module(f"{service}.main")
    shipped = {"servicekit", *SERVICES}
    found, todo = [], [DomainError]
    while todo:
        cls = todo.pop()
        # test code (servicekit.testing's peer apps, test modules) declares errors of its own: not the contract
        if cls.__module__.split(".")[0] in shipped and ".testing" not in cls.__module__:
            found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


def test_every_error_of_every_service_carries_an_error_code() -> None:
    classes = error_classes()
    assert {cls.__module__.split(".")[0] for cls in classes} == {
        "servicekit",
        *SERVICES,
    }  # each declares some
    assert [cls.__qualname__ for cls in classes if not isinstance(cls.code, ErrorCode)] == []


def test_the_codes_the_gateway_dispatches_on_are_order_apis_own() -> None:
    """The bot tells an operator what order-api's answer meant by its code (the client rebuilds order-api's
    problems with their ``ErrorCode``): each code the gateway matches on is one that order-api's errors, the
    gateway's own or servicekit's carry, so renaming or dropping one on either side fails here."""
    carried = {
        cls.code: cls.__module__.split(".")[0]
        for cls in error_classes()
        if cls.__module__.split(".")[0] in {"order_api", "telegram_gateway", "servicekit"}
    }
    sources = Path(gateway_client.__file__).parents[1].rglob("*.py")
    matched = {
        ErrorCode[name] for path in sources for name in re.findall(r"ErrorCode\.([A-Z_]+)", path.read_text())
    }
    assert matched - set(carried) == set()
    from_order_api = {code for code in matched if carried[code] == "order_api"}
    assert {
        ErrorCode.ORDER_ALREADY_TAKEN,
        ErrorCode.ORDER_NOT_HELD,
        ErrorCode.LINK_CODE_INVALID,
    } <= from_order_api

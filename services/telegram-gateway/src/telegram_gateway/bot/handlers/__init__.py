"""The bot's update handlers, one router per module (built fresh for each dispatcher: an aiogram router
belongs to one parent), in the order they are tried."""

from __future__ import annotations

import logging
from contextlib import suppress
from datetime import timedelta

from aiogram import Dispatcher
from aiogram.exceptions import AiogramError
from aiogram.types import ErrorEvent

from servicekit.db import Database
from telegram_gateway.bot.handlers import commands, completion, linking, orders, refusals
from telegram_gateway.bot.handlers.access import OperatorLinkMiddleware
from telegram_gateway.bot.tracing import UpdateSpanMiddleware
from telegram_gateway.clients.order_api import OrderApiClient
from telegram_gateway.clients.wallet_pool import WalletPoolClient
from telegram_gateway.metrics import GatewayMetrics
from telegram_gateway.operators.service import OperatorLinks

log = logging.getLogger("telegram_gateway.bot")


async def on_error(event: ErrorEvent) -> bool:
    """A handler failed unexpectedly: log it, and still answer a button press (if not answered yet)."""
    log.error("handling a Telegram update failed", exc_info=event.exception)
    query = event.update.callback_query
    if query is not None:
        with suppress(AiogramError):
            await query.answer("Something went wrong on our side; try again.", show_alert=True)
    return True


def build_dispatcher(
    *,
    database: Database,
    order_api: OrderApiClient,
    operator_links: OperatorLinks,
    wallet_pool: WalletPoolClient,
    metrics: GatewayMetrics,
    completion_draft_lifetime: timedelta,
) -> Dispatcher:
    """The dispatcher with every handler; the collaborators are given to handlers by parameter name."""
    dispatcher = Dispatcher(
        database=database,
        order_api=order_api,
        operator_links=operator_links,
        wallet_pool=wallet_pool,
        metrics=metrics,
        desk=orders.OrderDesk(
            database=database,
            order_api=order_api,
            operator_links=operator_links,
            metrics=metrics,
            completion_draft_lifetime=completion_draft_lifetime,
        ),
    )
    dispatcher.update.outer_middleware(UpdateSpanMiddleware())
    who = OperatorLinkMiddleware(operator_links)
    dispatcher.message.outer_middleware(who)
    dispatcher.callback_query.outer_middleware(who)
    dispatcher.include_routers(
        linking.router(), commands.router(), completion.router(), orders.router(), refusals.router()
    )
    dispatcher.errors.register(on_error)
    return dispatcher

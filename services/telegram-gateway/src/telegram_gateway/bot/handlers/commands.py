"""``/my`` (the orders I hold), ``/pool`` (free wallets and queues), ``/on`` and ``/off`` (I am at the desk, or
away), for linked operators."""

from __future__ import annotations

from typing import Literal

from aiogram import Router
from aiogram.filters import Command
from aiogram.types import Message

from servicekit.errors import DomainError, PeerUnavailableError
from telegram_gateway.bot.handlers.access import LinkedOnly
from telegram_gateway.bot.handlers.orders import explain, forget_if_unlinked
from telegram_gateway.bot.texts import language_of, orders_count, say
from telegram_gateway.cards.render import amount_text, html, short_id
from telegram_gateway.clients.order_api import LinkedOperator, OperatorOrder, OrderApiClient
from telegram_gateway.clients.wallet_pool import CurrencyPool, PoolStats, WalletPoolClient
from telegram_gateway.operators.service import OperatorLinks

MY_ORDERS_SHOWN = 20


def my_orders_text(orders: list[OperatorOrder]) -> str:
    if not orders:
        return "You hold no open orders. Take one from a card in the operators' chat."
    lines = [f"📋 <b>Your open orders ({len(orders)}{'+' if len(orders) >= MY_ORDERS_SHOWN else ''})</b>"]
    for order in orders:
        flag = " · 🆘" if order.escalated else ""
        lines.append(
            f"• <b>{html(amount_text(order.amount))} {html(order.from_currency)}</b> → "
            f"{html(order.to_currency)} · <code>{html(short_id(order.id))}</code>{flag}"
        )
    return "\n".join(lines)


def _wait(seconds: float | None) -> str:
    if not seconds:
        return ""
    minutes = int(seconds // 60)
    return f" (oldest {minutes} min)" if minutes else " (oldest &lt;1 min)"


def _currency_line(pool: CurrencyPool) -> str:
    warning = " ⚠️" if pool.total and pool.free == 0 else ""
    line = f"<b>{html(pool.currency)}</b>: {pool.free} of {pool.total} free{warning}"
    if pool.queue_length:
        line += f" · queue {pool.queue_length}{_wait(pool.oldest_wait_seconds)}"
    if len(pool.networks) > 1:
        line += "\n   " + " · ".join(
            f"{html(n.network)} {n.free}/{n.total}" + (f", queue {n.queue_length}" if n.queue_length else "")
            for n in pool.networks
        )
    return line


def pool_text(stats: PoolStats) -> str:
    if not stats.currencies:
        return "The pool is empty: no wallets have been imported yet."
    return "\n".join(["🏦 <b>Wallet pool</b>", *(_currency_line(pool) for pool in stats.currencies)])


async def my_orders(
    message: Message, operator: LinkedOperator, order_api: OrderApiClient, operator_links: OperatorLinks
) -> None:
    try:
        orders = await order_api.my_orders(telegram_user_id=operator.telegram_user_id, limit=MY_ORDERS_SHOWN)
    except DomainError as error:
        await forget_if_unlinked(error, operator_links=operator_links, operator=operator)
        await message.answer(html(explain(error)))
        return
    await message.answer(my_orders_text(orders))


async def pool(message: Message, wallet_pool: WalletPoolClient) -> None:
    try:
        stats = await wallet_pool.pool_stats()
    except PeerUnavailableError:
        await message.answer("wallet-pool is unreachable, try again in a moment.")
        return
    except DomainError as error:
        await message.answer(html(f"wallet-pool refused: {error.detail}"[:500]))
        return
    await message.answer(pool_text(stats))


async def _presence(
    message: Message,
    operator: LinkedOperator,
    order_api: OrderApiClient,
    operator_links: OperatorLinks,
    status: Literal["available", "away"],
) -> None:
    language = language_of(message.from_user)
    try:
        presence = await order_api.set_presence(telegram_user_id=operator.telegram_user_id, status=status)
    except DomainError as error:
        await forget_if_unlinked(error, operator_links=operator_links, operator=operator)
        await message.answer(html(explain(error, language=language)))
        return
    held = orders_count(presence.held_orders, language)
    await message.answer(say(presence.status, language, held=held, cap=presence.max_held_orders))


async def on_duty(
    message: Message, operator: LinkedOperator, order_api: OrderApiClient, operator_links: OperatorLinks
) -> None:
    await _presence(message, operator, order_api, operator_links, "available")


async def off_duty(
    message: Message, operator: LinkedOperator, order_api: OrderApiClient, operator_links: OperatorLinks
) -> None:
    await _presence(message, operator, order_api, operator_links, "away")


def router() -> Router:
    commands = Router(name="commands")
    commands.message.filter(LinkedOnly())
    commands.message.register(my_orders, Command("my"))
    commands.message.register(pool, Command("pool"))
    commands.message.register(on_duty, Command("on"))
    commands.message.register(off_duty, Command("off"))
    return commands

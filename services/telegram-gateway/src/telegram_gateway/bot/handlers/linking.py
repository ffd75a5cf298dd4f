"""``/start <code>`` links the sender to an operator (one-time code from an admin); ``/help`` for everyone."""

from __future__ import annotations

import logging

from aiogram import Router
from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.types import Message

from desk_contracts.errors import ErrorCode
from servicekit.errors import DomainError, PeerUnavailableError
from telegram_gateway.bot.handlers.access import REFUSAL, unavailable
from telegram_gateway.cards.render import html
from telegram_gateway.clients.order_api import LinkedOperator
from telegram_gateway.operators.service import OperatorLinks

log = logging.getLogger("telegram_gateway.bot")

HELP = (
    "<b>Exchange Desk bot</b>\n"
    "Order cards appear in the operators' chat: 🙋 <b>Take</b> an order, then ✅ <b>Complete</b>, "
    "✖️ <b>Cancel</b>, ↩️ <b>Release</b> it or 🆘 <b>Escalate</b> it to support; support may ↪️ "
    "<b>Reassign</b> an escalated order to another operator.\n"
    "/my — your open orders\n"
    "/pool — free wallets and queues per currency\n"
    "/on, /off — you are available, or away (you keep the orders you hold)\n"
    "/cancel — stop completing an order (Complete asks for its transaction record as replies)\n"
    "/help — this message"
)
HOW_TO_LINK = (
    "To link your account, ask an admin for a link code and send it to me in a private chat: "
    "/start &lt;code&gt;"
)
LINK_REFUSALS: dict[str, str] = {
    ErrorCode.LINK_CODE_INVALID: "That code is wrong, expired or already used. Ask an admin for a new one.",
    ErrorCode.RATE_LIMITED: "Too many attempts. Wait a while, then try again with a new code.",
    ErrorCode.OPERATOR_TELEGRAM_ID_TAKEN: "This Telegram account is linked to another operator. Ask an admin.",
    ErrorCode.OPERATOR_INACTIVE: "That operator account is deactivated. Ask an admin.",
}


async def start(
    message: Message,
    command: CommandObject,
    operator: LinkedOperator | None,
    operator_links: OperatorLinks,
) -> None:
    code = (command.args or "").strip()
    user = message.from_user
    if not code or user is None:
        if operator is not None:
            await message.answer(
                f"You are linked as <b>{html(operator.name)}</b> ({html(operator.role)}). /help lists what "
                "I can do."
            )
        else:
            await message.answer(f"Hello! {HOW_TO_LINK}")
        return
    try:
        link = await operator_links.link(
            code=code,
            telegram_user_id=user.id,
            telegram_username=user.username,
        )
    except PeerUnavailableError as error:
        await message.answer(html(unavailable(error)))
        return
    except DomainError as error:
        if error.code == ErrorCode.LINK_CODE_INVALID and operator is not None:
            # Telegram may deliver an update twice: the code is spent, the link made the first time.
            await message.answer(f"You are linked as <b>{html(operator.name)}</b> ({html(operator.role)}).")
            return
        log.info("link code refused", extra={"telegram_user_id": user.id, "code": error.code})
        await message.answer(html(LINK_REFUSALS.get(error.code, f"order-api refused: {error.detail}")[:500]))
        return
    await message.answer(
        f"Welcome, <b>{html(link.name)}</b>! You are linked as {html(link.role)}. Order cards appear in the "
        "operators' chat; /my lists the orders you hold."
    )


async def help_command(message: Message, operator: LinkedOperator | None) -> None:
    await message.answer(HELP if operator is not None else html(REFUSAL))


def router() -> Router:
    linking = Router(name="linking")
    linking.message.register(start, CommandStart())
    linking.message.register(help_command, Command("help"))
    return linking

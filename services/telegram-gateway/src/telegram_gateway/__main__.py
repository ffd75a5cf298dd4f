"""telegram-gateway's command line, for ops: what Telegram knows of this gateway's bot. It reads the service's
own settings (``TELEGRAM_GATEWAY_*``: the token, the Bot API URL, the webhook URL and secret).

    python -m telegram_gateway check
        Ask Telegram whose the token is (``getMe``) and where the bot's updates go (``getWebhookInfo``).
    python -m telegram_gateway webhook-info
        The webhook Telegram has registered: its URL (against ``TELEGRAM_GATEWAY_WEBHOOK_URL``), the updates
        waiting for it, and Telegram's last error delivering one.
    python -m telegram_gateway set-webhook [--url URL]
        Register the webhook as the service does on start: ``TELEGRAM_GATEWAY_WEBHOOK_URL`` (or ``--url``),
        with ``TELEGRAM_GATEWAY_WEBHOOK_SECRET``.
    python -m telegram_gateway delete-webhook [--drop-pending-updates]
        Remove the webhook (the bot then needs polling mode to get updates).

Exit 0 when Telegram answered, 1 when it refused (a wrong token, a URL it rejects), 2 when it cannot tell
(no token configured, Telegram unreachable).

Which operator a Telegram user is lives in order-api's operator record, not here: list the links with
``python -m order_api telegram-links`` and end one with ``python -m order_api telegram-unlink`` (or issue a
link code with ``POST /v1/admin/operators/{id}/telegram-link-code``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable, Sequence

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError, TelegramNetworkError

from servicekit.settings import load_settings
from telegram_gateway.bot.errors import TelegramDisabledError
from telegram_gateway.bot.runtime import ALLOWED_UPDATES, new_bot, webhook_secret
from telegram_gateway.settings import Settings

Command = Callable[[Bot, Settings, argparse.Namespace], Awaitable[str]]


class CommandRefusedError(ValueError):
    """The command cannot run as configured (a webhook without a URL or secret)."""


def _parser() -> argparse.ArgumentParser:
    links = (__doc__ or "").rpartition("\n\n")[2]
    parser = argparse.ArgumentParser(
        prog="python -m telegram_gateway",
        description="What Telegram knows of this gateway's bot.",
        epilog=" ".join(links.replace("``", "`").split()),
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("check", help="whose the token is and where the bot's updates go")
    commands.add_parser("webhook-info", help="the webhook Telegram has registered, and its last error")
    set_webhook = commands.add_parser("set-webhook", help="register the webhook with the configured secret")
    set_webhook.add_argument("--url", help="the public HTTPS URL (default: TELEGRAM_GATEWAY_WEBHOOK_URL)")
    delete = commands.add_parser("delete-webhook", help="remove the webhook")
    delete.add_argument("--drop-pending-updates", action="store_true", help="and forget the waiting updates")
    return parser


async def _webhook_lines(bot: Bot, settings: Settings) -> list[str]:
    info = await bot.get_webhook_info()
    if not info.url:
        return [f"webhook: none (updates wait for getUpdates; {info.pending_update_count} waiting)"]
    configured = settings.webhook_url
    agreement = (
        "as configured"
        if info.url == configured
        else f"TELEGRAM_GATEWAY_WEBHOOK_URL is {configured or 'not set'}"
    )
    lines = [f"webhook: {info.url} ({agreement}); {info.pending_update_count} updates waiting"]
    if info.last_error_date is not None:
        lines.append(
            f"last delivery error: {info.last_error_date:%Y-%m-%d %H:%M:%S %Z} {info.last_error_message}"
        )
    return lines


async def check(bot: Bot, settings: Settings, args: argparse.Namespace) -> str:
    me = await bot.get_me()
    lines = [
        f"token OK: the bot @{me.username} (id {me.id}); this gateway runs it in {settings.bot_mode} mode"
    ]
    return "\n".join([*lines, *await _webhook_lines(bot, settings)])


async def webhook_info(bot: Bot, settings: Settings, args: argparse.Namespace) -> str:
    return "\n".join(await _webhook_lines(bot, settings))


async def set_webhook(bot: Bot, settings: Settings, args: argparse.Namespace) -> str:
    url = args.url or settings.webhook_url
    if not url:
        raise CommandRefusedError("no webhook URL: set TELEGRAM_GATEWAY_WEBHOOK_URL or pass --url")
    secret = webhook_secret(settings)
    if secret is None:
        raise CommandRefusedError("TELEGRAM_GATEWAY_WEBHOOK_SECRET is not set: the webhook would take anyone")
    await bot.set_webhook(url=url, secret_token=secret, allowed_updates=ALLOWED_UPDATES)
    return f"webhook set: {url}"


async def delete_webhook(bot: Bot, settings: Settings, args: argparse.Namespace) -> str:
    await bot.delete_webhook(drop_pending_updates=args.drop_pending_updates)
    dropped = " and the waiting updates dropped" if args.drop_pending_updates else ""
    return f"webhook deleted{dropped}"


COMMANDS: dict[str, Command] = {
    "check": check,
    "webhook-info": webhook_info,
    "set-webhook": set_webhook,
    "delete-webhook": delete_webhook,
}


async def run(command: Command, settings: Settings, args: argparse.Namespace) -> str:
    bot = new_bot(settings)
    try:
        return await command(bot, settings, args)
    finally:
        await bot.session.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = load_settings(Settings)
    try:
        print(asyncio.run(run(COMMANDS[args.command], settings, args)))
    except (TelegramDisabledError, CommandRefusedError) as exc:
        print(f"cannot {args.command}: {exc}", file=sys.stderr)
        return 2
    except TelegramNetworkError as exc:
        print(f"cannot reach Telegram at {settings.bot_api_url}: {exc}", file=sys.stderr)
        return 2
    except TelegramAPIError as exc:
        print(f"Telegram refused {args.command}: {exc.message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

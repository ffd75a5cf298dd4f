"""The bot inside the service's lifespan: a worker that registers with Telegram on start and, in polling
mode, asks for updates until the service stops.

- **webhook**: Telegram posts updates to ``POST /telegram/webhook`` with the secret token it was given by
  ``setWebhook`` (called on start when a public URL is configured); a request without that secret never
  reaches the dispatcher. Any number of replicas may serve the webhook.
- **polling**: for development, or where Telegram cannot reach the service. Telegram allows one
  ``getUpdates`` consumer per bot, so on PostgreSQL the replicas hold a lease (``bot.lease``): exactly one
  polls, and another takes over within seconds when it stops.
- **off**: no token. The HTTP API still runs; ``POST /v1/messages`` answers ``409 telegram_disabled``.

Telegram being unreachable at start delays registration (retried with backoff), it never stops the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from datetime import timedelta
from typing import Any, Literal

from aiogram import Bot
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode
from aiogram.exceptions import AiogramError
from aiogram.types import BotCommand, Update
from pydantic import ValidationError

from servicekit.db import Database
from servicekit.errors import ValidationFailedError
from servicekit.workers import backoff_delay
from telegram_gateway.bot.errors import TelegramDisabledError, WebhookNotInUseError, WebhookSecretInvalidError
from telegram_gateway.bot.handlers import build_dispatcher
from telegram_gateway.bot.lease import PollerLease
from telegram_gateway.clients.order_api import OrderApiClient
from telegram_gateway.clients.wallet_pool import WalletPoolClient
from telegram_gateway.metrics import GatewayMetrics
from telegram_gateway.operators.service import OperatorLinks
from telegram_gateway.settings import BotMode, Settings

log = logging.getLogger("telegram_gateway.bot")

ALLOWED_UPDATES = ["message", "callback_query"]
COMMANDS = [
    BotCommand(command="my", description="My open orders"),
    BotCommand(command="pool", description="Free wallets and queues per currency"),
    BotCommand(command="on", description="I am available"),
    BotCommand(command="off", description="I am away (I keep my orders)"),
    BotCommand(command="cancel", description="Stop completing an order"),
    BotCommand(command="help", description="What this bot does"),
    BotCommand(command="start", description="Link your account: /start <code>"),
]
STOP_TIMEOUT_SECONDS = 10.0
State = Literal["off", "starting", "ready", "failing"]


def new_bot(settings: Settings) -> Bot:
    """aiogram's ``Bot`` for the configured token, pointed at the configured Bot API URL (the service's bot and
    ``python -m telegram_gateway`` alike); its session is the caller's to close."""
    if settings.bot_token is None:
        raise TelegramDisabledError("No bot token is configured: Telegram is off on this gateway.")
    session = AiohttpSession(
        api=TelegramAPIServer.from_base(settings.bot_api_url), timeout=settings.bot_api_timeout_seconds
    )
    return Bot(
        token=settings.bot_token.get_secret_value(),
        session=session,
        default=DefaultBotProperties(parse_mode=ParseMode.HTML, link_preview_is_disabled=True),
    )


def webhook_secret(settings: Settings) -> str | None:
    return settings.webhook_secret.get_secret_value() if settings.webhook_secret else None


class TelegramBot:
    """aiogram's ``Bot`` (pointed at the configured Bot API URL) and ``Dispatcher``, started and stopped
    with the service (a :class:`servicekit.app.Worker`)."""

    def __init__(
        self,
        *,
        settings: Settings,
        database: Database,
        order_api: OrderApiClient,
        operator_links: OperatorLinks,
        wallet_pool: WalletPoolClient,
        metrics: GatewayMetrics,
    ) -> None:
        self.settings = settings
        self.dispatcher = build_dispatcher(
            database=database,
            order_api=order_api,
            operator_links=operator_links,
            wallet_pool=wallet_pool,
            metrics=metrics,
            completion_draft_lifetime=timedelta(seconds=settings.completion_draft_seconds),
        )
        self.bot: Bot | None = None
        self.mode: BotMode | None = None
        self.state: State = "off"
        self.problem: str | None = None
        self.username: str | None = None
        self._task: asyncio.Task[None] | None = None
        self.lease: PollerLease | None = None
        if settings.bot_token is not None:
            self.mode = settings.bot_mode
            self.state = "starting"
            self.bot = new_bot(settings)
            if self.mode == "polling" and database.is_postgres:  # SQLite: one node, no lease
                bot_id = settings.bot_token.get_secret_value().partition(":")[0]
                self.lease = PollerLease(
                    database_url=database.session_url,
                    schema=database.schema,
                    name=f"telegram-poller:{bot_id}",
                    retry_seconds=settings.poller_lease_retry_seconds,
                    leader=metrics.poller_leader,
                )

    # --- lifecycle ---------------------------------------------------------------------------------------

    async def announce(self) -> None:
        """Say at start what Telegram mode the service is in (on-start hook)."""
        settings = self.settings
        if self.bot is None:
            log.warning(
                "Telegram is off: no TELEGRAM_GATEWAY_BOT_TOKEN is configured. The HTTP API runs; "
                "POST /v1/messages answers 409 telegram_disabled"
            )
            return
        log.info(
            "Telegram bot on",
            extra={
                "mode": self.mode,
                "bot_api_url": settings.bot_api_url,
                "operators_chat_id": settings.operators_chat_id,
                "support_chat_id": settings.support_chat_id,
            },
        )
        if settings.operators_chat_id is None:
            log.warning(
                "no TELEGRAM_GATEWAY_OPERATORS_CHAT_ID: order cards and alerts cannot be posted "
                "(POST /v1/messages answers 409 telegram_disabled)"
            )
        if self.mode == "webhook" and not settings.webhook_url:
            log.info("webhook mode without WEBHOOK_URL: the webhook is expected to be registered already")

    def start(self) -> None:
        if self.bot is not None and self._task is None:
            self._task = asyncio.create_task(self._run(), name="telegram-bot")

    async def stop(self) -> None:
        if self._task is not None:
            if self.mode == "polling":
                with contextlib.suppress(RuntimeError, TimeoutError):  # RuntimeError: polling not started
                    await asyncio.wait_for(self.dispatcher.stop_polling(), STOP_TIMEOUT_SECONDS)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.lease is not None:
            await self.lease.release()
        if self.bot is not None:
            await self.bot.session.close()

    async def _run(self) -> None:
        await self._register()
        if self.mode != "polling":
            return
        if self.lease is None:
            await self._poll()
            return
        while True:
            await self.lease.acquire()
            polling = asyncio.create_task(self._poll(), name="telegram-polling")
            lost = asyncio.create_task(self.lease.lost(), name="telegram-poller-lease")
            try:
                done, _ = await asyncio.wait({polling, lost}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                lost.cancel()
                if not polling.done():
                    with contextlib.suppress(RuntimeError, TimeoutError):  # RuntimeError: not started yet
                        await asyncio.wait_for(self.dispatcher.stop_polling(), STOP_TIMEOUT_SECONDS)
                    polling.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await polling
            if lost not in done:  # polling stopped: the service is stopping
                return

    async def _register(self) -> None:
        """Check the token, publish the command menu, and set (webhook) or clear (polling) the webhook;
        retried with backoff until Telegram answers."""
        bot, settings = self._bot(), self.settings
        attempt = 0
        while True:
            try:
                me = await bot.me()
                await bot.set_my_commands(COMMANDS)
                if self.mode == "webhook" and settings.webhook_url:
                    await bot.set_webhook(
                        url=settings.webhook_url,
                        secret_token=webhook_secret(settings),
                        allowed_updates=ALLOWED_UPDATES,
                    )
                elif self.mode == "polling":
                    await bot.delete_webhook(drop_pending_updates=False)
            except AiogramError as error:
                attempt += 1
                delay = backoff_delay(
                    attempt, base_seconds=1.0, max_seconds=self.settings.setup_retry_max_seconds
                )
                self.state, self.problem = "failing", str(error)[:300]
                log.warning(
                    "Telegram registration failed; retrying",
                    extra={"error": self.problem, "retry_in_seconds": round(delay.total_seconds(), 1)},
                )
                await asyncio.sleep(delay.total_seconds())
                continue
            self.state, self.problem, self.username = "ready", None, me.username
            log.info("Telegram bot registered", extra={"bot": me.username, "mode": self.mode})
            return

    async def _poll(self) -> None:
        attempt = 0
        while True:
            try:
                await self.dispatcher.start_polling(
                    self._bot(),
                    handle_signals=False,
                    close_bot_session=False,
                    polling_timeout=self.settings.polling_timeout_seconds,
                    allowed_updates=ALLOWED_UPDATES,
                )
                return  # stop_polling was called
            except AiogramError as error:
                attempt += 1
                delay = backoff_delay(
                    attempt, base_seconds=1.0, max_seconds=self.settings.setup_retry_max_seconds
                )
                self.state, self.problem = "failing", str(error)[:300]
                log.warning("polling stopped on an error; restarting", extra={"error": self.problem})
                await asyncio.sleep(delay.total_seconds())

    def _bot(self) -> Bot:
        if self.bot is None:
            raise TelegramDisabledError("No bot token is configured: Telegram is off on this gateway.")
        return self.bot

    async def readiness(self) -> str | None:
        """For ``/health/ready`` (not critical): the mode, or why registration is failing."""
        if self.bot is None:
            return "off: no bot token"
        if self.state == "failing":
            raise RuntimeError(self.problem or "Telegram registration is failing")
        role = "" if self.lease is None else (" (the poller)" if self.lease.held else " (standby)")
        return f"{self.mode}: {self.state}{role}" + (f" as @{self.username}" if self.username else "")

    # --- webhook -----------------------------------------------------------------------------------------

    def verify_secret(self, presented: str | None) -> None:
        """Constant-time check of ``X-Telegram-Bot-Api-Secret-Token``; ``401`` when missing or wrong (also
        when no secret is configured: nothing can match then)."""
        expected = self.settings.webhook_secret
        if presented is None or expected is None:
            raise WebhookSecretInvalidError("The X-Telegram-Bot-Api-Secret-Token header is missing or wrong.")
        if not hmac.compare_digest(presented.encode(), expected.get_secret_value().encode()):
            raise WebhookSecretInvalidError("The X-Telegram-Bot-Api-Secret-Token header is missing or wrong.")

    async def receive_update(self, body: bytes) -> None:
        """One update from Telegram (its secret verified already): parsed, then handled before the answer
        (Telegram waits, and redelivers an update whose request failed)."""
        bot = self._bot()
        if self.mode != "webhook":
            raise WebhookNotInUseError("This gateway polls for updates; set TELEGRAM_GATEWAY_MODE=webhook.")
        update = self._parse(bot, body)
        await self.dispatcher.feed_webhook_update(bot, update)

    @staticmethod
    def _parse(bot: Bot, body: bytes) -> Update:
        try:
            payload: Any = json.loads(body)
        except ValueError as exc:
            raise ValidationFailedError.for_field("body", "not JSON", kind="json_invalid") from exc
        if not isinstance(payload, dict):
            raise ValidationFailedError.for_field("body", "a Telegram Update object is expected")
        try:
            return Update.model_validate(payload, context={"bot": bot})
        except ValidationError as exc:
            errors = [
                {
                    "field": ".".join(str(p) for p in e["loc"]) or "body",
                    "message": e["msg"],
                    "type": e["type"],
                }
                for e in exc.errors()
            ]
            raise ValidationFailedError("The body is not a Telegram Update.", errors=errors) from exc

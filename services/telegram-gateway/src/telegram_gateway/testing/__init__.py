"""A fake Telegram Bot API for the test suites (this service's and the cross-service ones).

:class:`FakeBotApi` is an aiohttp server on loopback that aiogram is pointed at
(``TELEGRAM_GATEWAY_BOT_API_URL``). It answers the Bot API methods the gateway uses with Telegram's JSON
(``{"ok": true, "result": ...}`` or ``{"ok": false, "error_code", "description", "parameters"}``), keeps
the chats' messages with every revision, records every call, and plays the users' side: it posts updates
(messages, button presses) to the webhook registered with ``setWebhook`` (with its secret token, or any
other for tests of the secret), or queues them for ``getUpdates`` when no webhook is set.

Like Telegram it refuses HTML that does not parse, callback data over 64 bytes, an edit that changes
nothing ("message is not modified"), an edit of an unknown message, a second answer to a button press, and
``getUpdates`` while a webhook is set. :meth:`FakeBotApi.fail` makes chosen calls fail (5xx, or 429 with
``retry_after``); :meth:`FakeBotApi.stop` takes it off the network and :meth:`FakeBotApi.start` brings it
back on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import itertools
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from servicekit.apikeys import ApiKeyEntry, hash_key, mint_key
from servicekit.testing import in_process_settings
from telegram_gateway.settings import Settings

BOT_TOKEN = "7000000001:AAHfakeTokenForTheExchangeDeskTests_01"
BOT_ID = 7000000001
BOT_USERNAME = "exchange_desk_test_bot"
OPERATORS_CHAT_ID = -1001000000001
SUPPORT_CHAT_ID = -1001000000002
WEBHOOK_SECRET = "test-webhook-secret_0123456789abcdef"

NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are exactly the "
    "same as a current content and reply markup of the message"
)
ALLOWED_TAGS = frozenset(
    {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler", "a", "code", "pre",
     "blockquote", "tg-emoji"}
)  # fmt: skip
_TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9-]*)((?:\s[^<>]*)?)>")
_ENTITY = re.compile(r"&(?:lt|gt|amp|quot|#\d+|#x[0-9a-fA-F]+);")
_JSON_FIELDS = frozenset(
    {"reply_markup", "allowed_updates", "commands", "reply_parameters", "link_preview_options", "entities",
     "scope"}
)  # fmt: skip
_INT_FIELDS = frozenset(
    {"chat_id", "message_id", "offset", "limit", "timeout", "reply_to_message_id", "cache_time",
     "max_connections"}
)  # fmt: skip
_BOOL_FIELDS = frozenset(
    {"show_alert", "drop_pending_updates", "disable_notification", "protect_content",
     "allow_sending_without_reply"}
)  # fmt: skip


class BotApiError(Exception):
    def __init__(self, status: int, description: str, *, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.retry_after = retry_after

    def payload(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": False, "error_code": self.status, "description": self.description}
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return body


def html_to_text(markup: str) -> str:
    """The text Telegram shows for ``markup`` in HTML parse mode; raises what Telegram answers when it does
    not parse (an unknown tag, an unmatched one, a bare ``<`` or ``&``)."""
    out: list[str] = []
    open_tags: list[str] = []
    position = 0
    while position < len(markup):
        char = markup[position]
        if char == "<":
            tag = _TAG.match(markup, position)
            if tag is None:
                raise BotApiError(
                    400,
                    f"Bad Request: can't parse entities: Unexpected character '<' at byte offset {position}",
                )
            closing, name = tag.group(1) == "/", tag.group(2).lower()
            if name not in ALLOWED_TAGS:
                raise BotApiError(
                    400,
                    f'Bad Request: can\'t parse entities: Unsupported start tag "{name}" at byte offset {position}',
                )
            if closing:
                if not open_tags or open_tags[-1] != name:
                    expected = f"</{open_tags[-1]}>" if open_tags else "nothing"
                    raise BotApiError(
                        400,
                        f"Bad Request: can't parse entities: Unmatched end tag at byte offset {position}, "
                        f'expected "{expected}", found "</{name}>"',
                    )
                open_tags.pop()
            else:
                open_tags.append(name)
            position = tag.end()
            continue
        if char == "&":
            entity = _ENTITY.match(markup, position)
            if entity is None:
                raise BotApiError(
                    400,
                    f"Bad Request: can't parse entities: Character '&' is reserved and must be escaped with "
                    f'the preceding "&amp;" at byte offset {position}',
                )
            out.append(html.unescape(entity.group(0)))
            position = entity.end()
            continue
        out.append(char)
        position += 1
    if open_tags:
        raise BotApiError(
            400,
            f"Bad Request: can't parse entities: Can't find end tag corresponding to start tag \"{open_tags[-1]}\"",
        )
    return "".join(out)


@dataclass(frozen=True)
class TelegramUser:
    id: int
    first_name: str
    username: str | None = None
    language_code: str = "en"

    def payload(self) -> dict[str, Any]:
        body: dict[str, Any] = {"id": self.id, "is_bot": False, "first_name": self.first_name}
        if self.username:
            body["username"] = self.username
        body["language_code"] = self.language_code
        return body


@dataclass(frozen=True)
class Chat:
    id: int
    type: str = "supergroup"
    title: str | None = "Desk operators"

    @classmethod
    def private(cls, user: TelegramUser) -> Chat:
        return cls(id=user.id, type="private", title=None)

    def payload(self) -> dict[str, Any]:
        body: dict[str, Any] = {"id": self.id, "type": self.type}
        if self.title:
            body["title"] = self.title
        return body


OPERATORS_CHAT = Chat(OPERATORS_CHAT_ID, title="Desk operators")
SUPPORT_CHAT = Chat(SUPPORT_CHAT_ID, title="Desk support")


@dataclass(frozen=True)
class Button:
    text: str
    callback_data: str | None


@dataclass(frozen=True)
class Revision:
    html: str | None
    text: str
    reply_markup: dict[str, Any] | None


@dataclass
class ChatMessage:
    """A message in a chat, as the fake keeps it: every revision (``edits`` after the first)."""

    chat: Chat
    message_id: int
    date: int
    sender: dict[str, Any]
    revisions: list[Revision]
    reply_to_message_id: int | None = None

    @property
    def from_bot(self) -> bool:
        return bool(self.sender.get("is_bot"))

    @property
    def text(self) -> str:
        return self.revisions[-1].text

    @property
    def html(self) -> str | None:
        return self.revisions[-1].html

    @property
    def reply_markup(self) -> dict[str, Any] | None:
        return self.revisions[-1].reply_markup

    @property
    def edits(self) -> int:
        return len(self.revisions) - 1

    def buttons(self) -> list[Button]:
        markup = self.reply_markup or {}
        return [
            Button(text=str(b.get("text")), callback_data=b.get("callback_data"))
            for row in markup.get("inline_keyboard", [])
            for b in row
        ]

    def button(self, label: str) -> Button:
        """The button whose text contains ``label``."""
        found = [b for b in self.buttons() if label.lower() in b.text.lower()]
        if len(found) != 1:
            raise AssertionError(f"no single button {label!r} on message {self.message_id}: {self.buttons()}")
        return found[0]

    def payload(self, messages: Mapping[tuple[int, int], ChatMessage] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "message_id": self.message_id,
            "from": self.sender,
            "chat": self.chat.payload(),
            "date": self.date,
            "text": self.text,
        }
        if self.edits:
            body["edit_date"] = self.date + self.edits
        if self.reply_markup and "inline_keyboard" in self.reply_markup:
            body["reply_markup"] = self.reply_markup
        if self.text.startswith("/"):
            command = self.text.split()[0]
            body["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
        if self.reply_to_message_id is not None and messages is not None:
            replied = messages.get((self.chat.id, self.reply_to_message_id))
            if replied is not None:
                body["reply_to_message"] = replied.payload()
        return body


@dataclass(frozen=True)
class ApiCall:
    method: str
    params: dict[str, Any]
    host: str = ""
    """The ``Host`` the caller addressed: tells apart gateways pointed at the fake by different names."""


@dataclass(frozen=True)
class CallbackAnswer:
    text: str | None
    show_alert: bool


@dataclass(frozen=True)
class Delivery:
    """An update the fake sent: its id and the webhook's HTTP status (``None`` when queued for polling)."""

    update_id: int
    status: int | None
    query_id: str | None = None
    message: ChatMessage | None = None


@dataclass
class _Failure:
    method: str | None
    status: int
    description: str
    retry_after: int | None
    remaining: int | None


@dataclass
class FakeBotApi:
    token: str = BOT_TOKEN
    bot_id: int = BOT_ID
    username: str = BOT_USERNAME
    port: int | None = None
    calls: list[ApiCall] = field(default_factory=list)
    messages: dict[tuple[int, int], ChatMessage] = field(default_factory=dict)
    callback_answers: dict[str, CallbackAnswer] = field(default_factory=dict)
    commands: list[dict[str, Any]] = field(default_factory=list)
    webhook_url: str | None = None
    webhook_secret: str | None = None
    refused_chats: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None
        self._failures: list[_Failure] = []
        self._pending: list[dict[str, Any]] = []
        self._update_ids = itertools.count(100_001)
        self._query_ids = itertools.count(5_000_001)
        self._message_ids: dict[int, itertools.count[int]] = {}
        self._open_queries: set[str] = set()
        self._changed = asyncio.Condition()
        self._polling = False

    # --- server ------------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("the fake Bot API is not started")
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> FakeBotApi:
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port or 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        return self

    async def stop(self) -> None:
        """Off the network (connections are refused); :meth:`start` serves again on the same port."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def close(self) -> None:
        await self.stop()
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def __aenter__(self) -> FakeBotApi:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # --- what happened -----------------------------------------------------------------------------------

    def calls_to(self, *methods: str) -> list[ApiCall]:
        return [call for call in self.calls if call.method in methods]

    def chat_messages(self, chat_id: int, *, from_bot: bool = True) -> list[ChatMessage]:
        return [
            m for (chat, _), m in sorted(self.messages.items()) if chat == chat_id and m.from_bot == from_bot
        ]

    def message(self, chat_id: int, message_id: int) -> ChatMessage:
        return self.messages[(chat_id, message_id)]

    async def answer_to(self, query_id: str, *, within: float = 15.0) -> CallbackAnswer:
        """The bot's answer to a button press (waits for it: in polling mode it comes asynchronously)."""
        async with self._changed:
            await asyncio.wait_for(
                self._changed.wait_for(lambda: query_id in self.callback_answers), timeout=within
            )
        return self.callback_answers[query_id]

    def delete_message(self, message: ChatMessage) -> None:
        """Someone deleted the message in Telegram: edits of it now fail."""
        self.messages.pop((message.chat.id, message.message_id), None)

    # --- failures ----------------------------------------------------------------------------------------

    def fail(
        self,
        method: str | None = None,
        *,
        status: int = 502,
        times: int | None = 1,
        retry_after: int | None = None,
        description: str | None = None,
    ) -> None:
        """The next ``times`` calls of ``method`` (any method when ``None``; ``times=None``: until
        :meth:`recover`) fail with ``status`` (429 carries ``retry_after``, 5 s by default)."""
        if status == 429 and retry_after is None:
            retry_after = 5
        text = description or {
            429: f"Too Many Requests: retry after {retry_after}",
            500: "Internal Server Error",
            502: "Bad Gateway",
            503: "Service Unavailable",
        }.get(status, f"Error {status}")
        self._failures.append(_Failure(method, status, text, retry_after, times))

    def recover(self) -> None:
        self._failures.clear()

    def _injected_failure(self, method: str) -> BotApiError | None:
        for failure in self._failures:
            if failure.method not in (None, method) or failure.remaining == 0:
                continue
            if failure.remaining is not None:
                failure.remaining -= 1
            return BotApiError(failure.status, failure.description, retry_after=failure.retry_after)
        return None

    # --- the users' side ---------------------------------------------------------------------------------

    async def send_text(
        self,
        user: TelegramUser,
        text: str,
        *,
        chat: Chat | None = None,
        reply_to: ChatMessage | None = None,
        secret: str | None = "",
    ) -> Delivery:
        """``user`` writes ``text`` (in a private chat with the bot unless ``chat``); the update goes to the
        webhook (with the registered secret unless ``secret`` says otherwise; ``None`` sends none) or the
        ``getUpdates`` queue."""
        where = chat or Chat.private(user)
        message = self._store(
            where, sender=user.payload(), html_text=None, text=text, reply_markup=None,
            reply_to=reply_to.message_id if reply_to else None,
        )  # fmt: skip
        update_id = next(self._update_ids)
        status = await self.deliver(
            {"update_id": update_id, "message": message.payload(self.messages)}, secret=secret
        )
        return Delivery(update_id=update_id, status=status, message=message)

    async def press(
        self, user: TelegramUser, message: ChatMessage, callback_data: str, *, secret: str | None = ""
    ) -> Delivery:
        """``user`` presses the button with ``callback_data`` under ``message``."""
        query_id = str(next(self._query_ids))
        self._open_queries.add(query_id)
        update_id = next(self._update_ids)
        update = {
            "update_id": update_id,
            "callback_query": {
                "id": query_id,
                "from": user.payload(),
                "message": message.payload(self.messages),
                "chat_instance": str(abs(message.chat.id)),
                "data": callback_data,
            },
        }
        status = await self.deliver(update, secret=secret)
        return Delivery(update_id=update_id, status=status, query_id=query_id)

    async def deliver(self, update: dict[str, Any], *, secret: str | None = "") -> int | None:
        """To the webhook when one is set (returns its HTTP status), else queued for ``getUpdates``.
        ``secret=""`` sends the secret token registered with ``setWebhook``; ``None`` sends no header."""
        if self.webhook_url is None:
            async with self._changed:
                self._pending.append(update)
                self._changed.notify_all()
            return None
        return await self.post_to_webhook(update, secret=self.webhook_secret if secret == "" else secret)

    async def post_to_webhook(self, update: dict[str, Any], *, secret: str | None) -> int:
        if self.webhook_url is None or self._http is None:
            raise RuntimeError("no webhook is set")
        headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret is not None else {}
        async with self._http.post(self.webhook_url, json=update, headers=headers) as response:
            await response.read()
            return response.status

    # --- the Bot API -------------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params = await self._params(request)
        self.calls.append(ApiCall(method=method, params=params, host=request.host))
        try:
            if request.match_info["token"] != self.token:
                raise BotApiError(401, "Unauthorized")
            failure = self._injected_failure(method)
            if failure is not None:
                raise failure
            handler = getattr(self, f"_api_{method.lower()}", None)
            if handler is None:
                raise BotApiError(404, "Not Found")
            result = await handler(params)
        except BotApiError as error:
            return web.json_response(error.payload(), status=error.status)
        async with self._changed:
            self._changed.notify_all()
        return web.json_response({"ok": True, "result": result})

    @staticmethod
    async def _params(request: web.Request) -> dict[str, Any]:
        if request.content_type == "application/json":
            raw: dict[str, Any] = await request.json()
        else:
            raw = {key: value for key, value in (await request.post()).items() if isinstance(value, str)}
        params: dict[str, Any] = {}
        for key, value in raw.items():
            if isinstance(value, str) and key in _JSON_FIELDS:
                value = json.loads(value)
            elif isinstance(value, str) and key in _INT_FIELDS:
                with contextlib.suppress(ValueError):
                    value = int(value)
            elif isinstance(value, str) and key in _BOOL_FIELDS:
                value = value.lower() in ("true", "1")
            params[key] = value
        return params

    def _bot_user(self) -> dict[str, Any]:
        return {"id": self.bot_id, "is_bot": True, "first_name": "Exchange Desk", "username": self.username}

    def _store(
        self,
        chat: Chat,
        *,
        sender: dict[str, Any],
        html_text: str | None,
        text: str,
        reply_markup: dict[str, Any] | None,
        reply_to: int | None = None,
    ) -> ChatMessage:
        ids = self._message_ids.setdefault(chat.id, itertools.count(1))
        message = ChatMessage(
            chat=chat,
            message_id=next(ids),
            date=int(time.time()),
            sender=sender,
            revisions=[Revision(html=html_text, text=text, reply_markup=reply_markup)],
            reply_to_message_id=reply_to,
        )
        self.messages[(chat.id, message.message_id)] = message
        return message

    @staticmethod
    def _render(params: Mapping[str, Any]) -> tuple[str | None, str]:
        source = str(params.get("text") or "")
        if not source.strip():
            raise BotApiError(400, "Bad Request: message text is empty")
        if str(params.get("parse_mode", "")).upper() == "HTML":
            text = html_to_text(source)
            markup: str | None = source
        else:
            text, markup = source, None
        if len(text) > 4096:
            raise BotApiError(400, "Bad Request: message is too long")
        return markup, text

    @staticmethod
    def _check_markup(markup: Any) -> dict[str, Any] | None:
        if markup is None:
            return None
        if not isinstance(markup, dict):
            raise BotApiError(400, "Bad Request: can't parse reply keyboard markup JSON object")
        for row in markup.get("inline_keyboard", []):
            for button in row:
                data = button.get("callback_data")
                if data is not None and not 1 <= len(str(data).encode()) <= 64:
                    raise BotApiError(400, "Bad Request: BUTTON_DATA_INVALID")
        return markup

    def _chat_of(self, params: Mapping[str, Any]) -> Chat:
        chat_id = params.get("chat_id")
        if not isinstance(chat_id, int) or chat_id in self.refused_chats:
            raise BotApiError(400, "Bad Request: chat not found")
        for (known, _), message in self.messages.items():
            if known == chat_id:
                return message.chat
        if chat_id == OPERATORS_CHAT_ID:
            return OPERATORS_CHAT
        if chat_id == SUPPORT_CHAT_ID:
            return SUPPORT_CHAT
        return Chat(
            chat_id, type="private" if chat_id > 0 else "supergroup", title=None if chat_id > 0 else "A group"
        )

    def _editable(self, params: Mapping[str, Any]) -> ChatMessage:
        message = self.messages.get((params.get("chat_id"), params.get("message_id")))  # type: ignore[arg-type]
        if message is None:
            raise BotApiError(400, "Bad Request: message to edit not found")
        if not message.from_bot:
            raise BotApiError(400, "Bad Request: message can't be edited")
        return message

    async def _api_getme(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return {
            **self._bot_user(),
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }

    async def _api_sendmessage(self, params: Mapping[str, Any]) -> dict[str, Any]:
        chat = self._chat_of(params)
        markup_html, text = self._render(params)
        reply_markup = self._check_markup(params.get("reply_markup"))
        reply = params.get("reply_parameters") or {}
        reply_to = reply.get("message_id") or params.get("reply_to_message_id")
        if reply_to is not None and (chat.id, reply_to) not in self.messages:
            if not reply.get("allow_sending_without_reply"):
                raise BotApiError(400, "Bad Request: message to be replied not found")
            reply_to = None
        message = self._store(
            chat, sender=self._bot_user(), html_text=markup_html, text=text, reply_markup=reply_markup,
            reply_to=reply_to,
        )  # fmt: skip
        return message.payload(self.messages)

    async def _api_editmessagetext(self, params: Mapping[str, Any]) -> dict[str, Any]:
        message = self._editable(params)
        markup_html, text = self._render(params)
        reply_markup = self._check_markup(params.get("reply_markup"))
        revision = Revision(html=markup_html, text=text, reply_markup=reply_markup)
        if revision == message.revisions[-1]:
            raise BotApiError(400, NOT_MODIFIED)
        message.revisions.append(revision)
        return message.payload(self.messages)

    async def _api_editmessagereplymarkup(self, params: Mapping[str, Any]) -> dict[str, Any]:
        message = self._editable(params)
        reply_markup = self._check_markup(params.get("reply_markup"))
        if reply_markup == message.reply_markup:
            raise BotApiError(400, NOT_MODIFIED)
        current = message.revisions[-1]
        message.revisions.append(Revision(html=current.html, text=current.text, reply_markup=reply_markup))
        return message.payload(self.messages)

    async def _api_deletemessage(self, params: Mapping[str, Any]) -> bool:
        if self.messages.pop((params.get("chat_id"), params.get("message_id")), None) is None:  # type: ignore[arg-type]
            raise BotApiError(400, "Bad Request: message to delete not found")
        return True

    async def _api_answercallbackquery(self, params: Mapping[str, Any]) -> bool:
        query_id = str(params.get("callback_query_id"))
        if query_id not in self._open_queries:
            raise BotApiError(
                400, "Bad Request: query is too old and response timeout expired or query ID is invalid"
            )
        text = params.get("text")
        if text is not None and len(str(text)) > 200:
            raise BotApiError(400, "Bad Request: MESSAGE_TOO_LONG")
        self._open_queries.discard(query_id)
        self.callback_answers[query_id] = CallbackAnswer(
            text=None if text is None else str(text), show_alert=bool(params.get("show_alert", False))
        )
        return True

    async def _api_setwebhook(self, params: Mapping[str, Any]) -> bool:
        url = params.get("url")
        if not url:
            raise BotApiError(400, "Bad Request: bad webhook: an HTTPS URL must be provided for webhook")
        self.webhook_url = str(url)
        self.webhook_secret = params.get("secret_token")
        if params.get("drop_pending_updates"):
            self._pending.clear()
        return True

    async def _api_deletewebhook(self, params: Mapping[str, Any]) -> bool:
        self.webhook_url = self.webhook_secret = None
        if params.get("drop_pending_updates"):
            self._pending.clear()
        return True

    async def _api_getwebhookinfo(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "url": self.webhook_url or "",
            "has_custom_certificate": False,
            "pending_update_count": len(self._pending),
        }

    async def _api_setmycommands(self, params: Mapping[str, Any]) -> bool:
        self.commands = list(params.get("commands") or [])
        return True

    async def _api_getupdates(self, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        if self.webhook_url is not None:
            raise BotApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete "
                "the webhook first",
            )
        if self._polling:
            raise BotApiError(
                409,
                "Conflict: terminated by other getUpdates request; make sure that only one bot instance is "
                "running",
            )
        offset = int(params.get("offset") or 0)
        limit = int(params.get("limit") or 100)
        timeout = float(params.get("timeout") or 0)
        self._polling = True
        try:
            async with self._changed:
                self._pending = [u for u in self._pending if u["update_id"] >= offset]
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait_for(lambda: bool(self._pending)), timeout)
                return self._pending[:limit]
        finally:
            self._polling = False


# --- the gateway under test ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Keys:
    """API keys for an in-process gateway: the notifier's (``messages:send``) and one without the scope."""

    notifier: str = field(default_factory=lambda: mint_key("nt"))
    other: str = field(default_factory=lambda: mint_key("nt"))

    def entries(self) -> list[ApiKeyEntry]:
        return [
            ApiKeyEntry(name="notifier", hash=hash_key(self.notifier), scopes=["messages:send"]),
            ApiKeyEntry(name="other", hash=hash_key(self.other), scopes=["events:publish"]),
        ]


KEYS = Keys()


def make_settings(
    *, database_url: str | None, var_dir: Path, fake: FakeBotApi | None, **overrides: Any
) -> Settings:
    """Settings for an in-process gateway talking to ``fake`` (``None``: Telegram off), in polling mode
    unless ``webhook_url``/``mode`` say otherwise, with both chats configured."""
    values: dict[str, Any] = {
        **in_process_settings(database_url=database_url, var_dir=var_dir, api_keys=KEYS.entries()),
        "webhook_secret": WEBHOOK_SECRET,
        "operators_chat_id": OPERATORS_CHAT_ID,
        "support_chat_id": SUPPORT_CHAT_ID,
        "polling_timeout_seconds": 1,
        "bot_api_timeout_seconds": 5.0,
        "setup_retry_max_seconds": 0.5,
        **overrides,
    }
    if fake is not None:
        values.setdefault("bot_token", fake.token)
        values.setdefault("bot_api_url", fake.url)
    return Settings(**values)

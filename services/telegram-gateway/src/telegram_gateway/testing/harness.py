"""The rest of telegram-gateway's test helpers (the fake Bot API is in ``telegram_gateway.testing``): stand-ins for order-api and wallet-pool (small aiohttp apps on
loopback that behave like the real operator endpoints and record every call), the gateway served by uvicorn
in this process (Telegram must be able to reach its webhook), and contract-B message bodies."""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Self

import httpx
import uvicorn
from aiohttp import web
from fastapi import FastAPI

from servicekit.apikeys import mint_key
from servicekit.db import decimal_places, strip_trailing_zeros
from servicekit.testing import eventually, free_port
from telegram_gateway.bot.runtime import TelegramBot
from telegram_gateway.clients.order_api import CARD_FIELDS
from telegram_gateway.context import context_of
from telegram_gateway.messages.schemas import ORDER_EXAMPLE
from telegram_gateway.testing import (
    KEYS,
    OPERATORS_CHAT_ID,
    CallbackAnswer,
    ChatMessage,
    FakeBotApi,
    TelegramUser,
)

ANNA = TelegramUser(id=401, first_name="Anna", username="anna_ops")
BORIS = TelegramUser(id=402, first_name="Boris", username="boris_ops")
MALLORY = TelegramUser(id=666, first_name="Mallory", username="mallory")
GATEWAY_KEY = mint_key("tg")  # what the stand-ins expect from the gateway


def problem(status: int, code: str, detail: str, **extra: Any) -> web.Response:
    body = {"type": f"urn:exchange-desk:problem:{code}", "title": code, "status": status, "detail": detail}
    return web.json_response(
        {**body, "code": code, **extra}, status=status, content_type="application/problem+json"
    )


def invalid(field: str, message: str, code: str = "transaction_invalid") -> web.Response:
    """order-api's ``422`` naming ``field`` (``transaction_required``, ``transaction_invalid`` …)."""
    errors = [{"field": field, "message": message, "type": "invalid"}]
    return problem(422, code, f"{field}: {message}", errors=errors)


def plain(amount: Decimal) -> str:
    """A decimal as order-api answers it: no trailing zeros, no exponent."""
    return format(strip_trailing_zeros(amount), "f")


TX_HASH_FORMATS = {
    "bitcoin": re.compile(r"[0-9a-fA-F]{64}"),
    "TRC20": re.compile(r"[0-9a-fA-F]{64}"),
    "ERC20": re.compile(r"0x[0-9a-fA-F]{64}"),
}
"""The transaction contract's hash formats, for the networks the stand-in's orders use."""
OTHER_TX_HASH = re.compile(r"[0-9A-Za-z]{32,128}")
PRECISION = {"BTC": 8, "USDT": 6}


@dataclass
class Call:
    method: str
    path: str
    headers: Mapping[str, str]  # case-insensitive, like HTTP
    body: Any


@dataclass
class StandIn:
    """A peer service on a fixed loopback port: :meth:`stop` takes it down, :meth:`start` brings it back."""

    port: int = field(default_factory=free_port)
    calls: list[Call] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._runner: web.AppRunner | None = None
        self._thawed = asyncio.Event()
        self._thawed.set()
        self._failures: dict[str, int] = {}

    def freeze(self) -> None:
        """Like ``SIGSTOP``: requests are still received (and recorded) but get no answer until :meth:`thaw`."""
        self._thawed.clear()

    def thaw(self) -> None:
        self._thawed.set()

    def fail(self, path_ending: str, *, times: int) -> None:
        """The next ``times`` requests whose path ends with ``path_ending`` get ``503`` (then served again)."""
        self._failures[path_ending] = times

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        body = await request.json() if request.can_read_body else None
        self.calls.append(Call(request.method, request.path, request.headers.copy(), body))
        await self._thawed.wait()
        for ending, left in self._failures.items():
            if left > 0 and request.path.endswith(ending):
                self._failures[ending] = left - 1
                return problem(503, "unavailable", "Try again.")
        if request.headers.get("Authorization") != f"Bearer {GATEWAY_KEY}":
            return problem(401, "api_key_invalid", "The API key is unknown.")
        response: web.StreamResponse = await handler(request)
        return response

    async def start(self) -> StandIn:
        app = web.Application(middlewares=[self._record])
        self.routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


@dataclass
class StandInOrderApi(StandIn):
    """order-api's operator endpoints and Telegram links, in memory, with order-api's rules and errors."""

    operators: dict[str, dict[str, Any]] = field(default_factory=dict)
    link_codes: dict[str, str] = field(default_factory=dict)
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    max_held_orders: int = 5
    transaction_required: bool = True
    """``ORDER_API_COMPLETION_TRANSACTION_REQUIRED``: a completion without its transaction record is refused."""

    def add_operator(self, name: str, *, role: str = "operator") -> str:
        operator_id = str(uuid.uuid4())
        self.operators[operator_id] = {
            "name": name,
            "role": role,
            "telegram_user_id": None,
            "presence": "available",
        }
        return operator_id

    def issue_code(self, operator_id: str) -> str:
        code = secrets.token_hex(5).upper()
        self.link_codes[code] = operator_id
        return code

    def link(self, operator_id: str, user: TelegramUser) -> None:
        self.operators[operator_id]["telegram_user_id"] = user.id

    def add_order(self, **fields: Any) -> dict[str, Any]:
        order_id = str(uuid.uuid4())
        now = datetime.now(UTC)
        order = {
            **{name: value for name, value in ORDER_EXAMPLE.items() if name != "order_id"},
            "id": order_id,
            "payout_address": "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t",
            "estimated_wait_seconds": None,
            "expires_at": (now + timedelta(hours=1)).isoformat(),
            "created_at": now.isoformat(),
            "updated_at": now.isoformat(),
            "escalated": False,
            **fields,
        }
        self.orders[order_id] = order
        return order

    def operator_calls(self) -> list[Call]:
        """Calls acting for an operator or linking one (not the gateway's lookups of who someone is)."""
        return [c for c in self.calls if c.path.startswith(("/v1/operator/", "/v1/telegram/links"))]

    def lookups(self) -> list[int]:
        """The Telegram users the gateway asked about (``GET /v1/telegram/operators/{id}``), in order."""
        prefix = "/v1/telegram/operators/"
        return [int(c.path.removeprefix(prefix)) for c in self.calls if c.path.startswith(prefix)]

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/telegram/links", self._link)
        app.router.add_get("/v1/telegram/operators/{telegram_user_id}", self._who)
        app.router.add_get("/v1/operator/orders/mine", self._mine)
        app.router.add_get("/v1/operator/orders/{order_id}", self._read)
        app.router.add_post("/v1/operator/orders/{order_id}/take", self._take)
        app.router.add_post("/v1/operator/orders/{order_id}/accept", self._accept)
        app.router.add_post("/v1/operator/orders/{order_id}/status", self._status)
        app.router.add_post("/v1/operator/orders/{order_id}/release", self._release)
        app.router.add_post("/v1/operator/orders/{order_id}/escalate", self._escalate)
        app.router.add_put("/v1/operator/presence", self._presence)
        app.router.add_post("/v1/admin/orders/{order_id}/reassign", self._reassign)

    def _held(self, operator_id: str) -> int:
        return sum(
            o["operator_id"] == operator_id and o["status"] == "in_progress" for o in self.orders.values()
        )

    def _at_capacity(self, operator_id: str) -> web.Response | None:
        held = self._held(operator_id)
        if held < self.max_held_orders:
            return None
        name = self.operators[operator_id]["name"]
        return problem(
            409,
            "operator_at_capacity",
            f"{name} already holds {held} orders (the cap is {self.max_held_orders}).",
            held_orders=held,
            max_held_orders=self.max_held_orders,
        )

    async def _presence(self, request: web.Request) -> web.Response:
        who = self._operator(request)
        if isinstance(who, web.Response):
            return who
        operator_id, operator = who
        operator["presence"] = (await request.json())["status"]
        return web.json_response(
            {
                "operator_id": operator_id,
                "name": operator["name"],
                "status": operator["presence"],
                "since": datetime.now(UTC).isoformat(),
                "held_orders": self._held(operator_id),
                "max_held_orders": self.max_held_orders,
            }
        )

    async def _reassign(self, request: web.Request) -> web.Response:
        who, order = self._operator(request), self._order(request)
        if isinstance(who, web.Response):
            return who
        if isinstance(order, web.Response):
            return order
        if who[1]["role"] not in ("support", "admin"):
            return problem(403, "operator_forbidden", "This needs the role support or admin.")
        expected = request.headers.get("If-Match")
        if expected is not None and int(expected) != order["version"]:
            return problem(412, "order_version_mismatch", "The order has changed.", version=order["version"])
        name = str((await request.json())["operator_name"]).lower()
        found = [i for i, o in self.operators.items() if o["name"].lower() == name]
        if not found:
            return problem(404, "operator_not_found", f"No active operator is called {name}.")
        refusal = self._at_capacity(found[0])
        if refusal is not None:
            return refusal
        return self._change(order, operator_id=found[0], operator_name=self.operators[found[0]]["name"])

    async def _link(self, request: web.Request) -> web.Response:
        body = await request.json()
        operator_id = self.link_codes.pop(str(body["code"]).strip().upper(), None)
        if operator_id is None:
            return problem(422, "link_code_invalid", "The link code is wrong, expired or already used.")
        operator = self.operators[operator_id]
        operator["telegram_user_id"] = body["telegram_user_id"]
        return web.json_response(self._linked(operator_id))

    def _linked(self, operator_id: str) -> dict[str, Any]:
        operator = self.operators[operator_id]
        return {
            "operator_id": operator_id,
            "name": operator["name"],
            "role": operator["role"],
            "telegram_user_id": operator["telegram_user_id"],
        }

    async def _who(self, request: web.Request) -> web.Response:
        user_id = request.match_info["telegram_user_id"]
        for operator_id, operator in self.operators.items():
            if str(operator["telegram_user_id"]) == user_id:
                return web.json_response(self._linked(operator_id))
        return problem(404, "telegram_link_not_found", f"No active operator is linked to {user_id}.")

    def _operator(self, request: web.Request) -> tuple[str, dict[str, Any]] | web.Response:
        user_id = request.headers.get("X-Operator-Telegram-Id")
        for operator_id, operator in self.operators.items():
            if user_id is not None and str(operator["telegram_user_id"]) == user_id:
                return operator_id, operator
        return problem(403, "telegram_operator_unknown", f"No active operator is linked to {user_id}.")

    def _order(self, request: web.Request) -> dict[str, Any] | web.Response:
        order = self.orders.get(request.match_info["order_id"])
        return order if order is not None else problem(404, "order_not_found", "No such order.")

    def _held_by(self, order: dict[str, Any]) -> dict[str, Any] | None:
        if order["operator_id"] is None:
            return None
        return {"operator_id": order["operator_id"], "name": order["operator_name"]}

    def _change(self, order: dict[str, Any], **changes: Any) -> web.Response:
        order.update(changes, version=order["version"] + 1, updated_at=datetime.now(UTC).isoformat())
        return web.json_response(order)

    async def _mine(self, request: web.Request) -> web.Response:
        who = self._operator(request)
        if isinstance(who, web.Response):
            return who
        items = [
            o for o in self.orders.values() if o["operator_id"] == who[0] and o["status"] == "in_progress"
        ]
        return web.json_response({"items": items, "next_cursor": None})

    async def _read(self, request: web.Request) -> web.Response:
        who, order = self._operator(request), self._order(request)
        for refusal in (who, order):
            if isinstance(refusal, web.Response):
                return refusal
        return web.json_response(order)

    async def _take(self, request: web.Request) -> web.Response:
        who, order = self._operator(request), self._order(request)
        if isinstance(who, web.Response):
            return who
        if isinstance(order, web.Response):
            return order
        operator_id, operator = who
        if order["status"] == "in_progress" and order["operator_id"] == operator_id:
            return web.json_response(order)
        if order["status"] == "in_progress":
            return problem(
                409,
                "order_already_taken",
                f"{order['operator_name']} has taken this order.",
                held_by=self._held_by(order),
            )
        if order["status"] != "awaiting_deposit":
            return problem(409, "order_transition_not_allowed", f"The order is {order['status']}.")
        refusal = self._at_capacity(operator_id)
        if refusal is not None:
            return refusal
        return self._change(
            order, status="in_progress", operator_id=operator_id, operator_name=operator["name"]
        )

    def _drivable(self, request: web.Request) -> tuple[str, dict[str, Any]] | web.Response:
        who, order = self._operator(request), self._order(request)
        if isinstance(who, web.Response):
            return who
        if isinstance(order, web.Response):
            return order
        expected = request.headers.get("If-Match")
        if expected is not None and int(expected) != order["version"]:
            return problem(412, "order_version_mismatch", "The order has changed.", version=order["version"])
        if order["operator_id"] != who[0]:
            return problem(409, "order_not_held", "You do not hold this order.", held_by=self._held_by(order))
        return who[0], order

    async def _accept(self, request: web.Request) -> web.Response:
        """Accepting an order auto-assigned to me keeps it mine; its version does not change."""
        who, order = self._operator(request), self._order(request)
        for refusal in (who, order):
            if isinstance(refusal, web.Response):
                return refusal
        assert isinstance(who, tuple)
        assert isinstance(order, dict)
        if order["operator_id"] != who[0]:
            return problem(409, "order_not_held", "You do not hold this order.", held_by=self._held_by(order))
        return web.json_response(order)

    async def _status(self, request: web.Request) -> web.Response:
        drivable = self._drivable(request)
        if isinstance(drivable, web.Response):
            return drivable
        _, order = drivable
        body = await request.json()
        record = body.get("transaction")
        if record is not None and body["status"] != "completed":
            return invalid("transaction", "A transaction is recorded with a completion only.")
        if body["status"] == "completed":
            refusal = self._transaction_refusal(order, record)
            if refusal is not None:
                return refusal
        return self._change(order, status=body["status"])

    def _transaction_refusal(
        self, order: dict[str, Any], record: dict[str, Any] | None
    ) -> web.Response | None:
        """The transaction contract's rules for a completion (the record is kept on the order)."""
        if record is None:
            if self.transaction_required:
                return invalid(
                    "transaction", "This desk requires the transaction record.", "transaction_required"
                )
            return None
        known = order.get("transaction") or {}
        deposit, payout = record.get("deposit") or known.get("deposit"), record.get("payout")
        if deposit is None:
            return invalid("transaction.deposit", "The deposit is required.")
        if payout is None:
            return invalid("transaction.payout", "The payout is required.")
        refusal = self._refusal(order, deposit, side="from", prefix="transaction.deposit") or (
            self._refusal(order, payout, side="to", prefix="transaction.payout")
        )
        if refusal is not None:
            return refusal
        ordered, received = Decimal(order["amount"]), Decimal(deposit["amount"])
        payment = "exact" if received == ordered else "underpaid" if received < ordered else "overpaid"
        if payment != "exact" and record.get("payment_difference") != "adjusted_payout":
            return problem(
                409,
                "payment_mismatch",
                f"{received} arrived of the {ordered} ordered.",
                ordered=plain(ordered),
                received=plain(received),
                difference=payment,
            )
        order["transaction"] = {
            "deposit": deposit,
            "payout": payout,
            "payment": payment,
            "difference": plain(received - ordered),
        }
        return None

    @staticmethod
    def _refusal(order: dict[str, Any], moved: Any, *, side: str, prefix: str) -> web.Response | None:
        """A hash not of the chain's format, or an amount not > 0 within the currency's precision."""
        if not isinstance(moved, dict):
            return invalid(prefix, "Give tx_hash and amount.")
        if not TX_HASH_FORMATS.get(order[f"{side}_network"], OTHER_TX_HASH).fullmatch(
            str(moved.get("tx_hash"))
        ):
            return invalid(f"{prefix}.tx_hash", f"Not a {order[f'{side}_network']} transaction hash.")
        amounts = {"amount": moved.get("amount")}
        if side == "to" and moved.get("network_fee") is not None:
            amounts["network_fee"] = moved["network_fee"]
        precision = PRECISION.get(order[f"{side}_currency"], 8)
        for name, value in amounts.items():
            try:
                amount = Decimal(str(value))
            except InvalidOperation:
                return invalid(f"{prefix}.{name}", "Not a decimal amount.")
            if not amount.is_finite() or amount <= 0 or decimal_places(amount) > precision:  # 1.50 is 1.5
                return invalid(f"{prefix}.{name}", f"Must be > 0 with at most {precision} decimal places.")
        return None

    async def _release(self, request: web.Request) -> web.Response:
        drivable = self._drivable(request)
        if isinstance(drivable, web.Response):
            return drivable
        _, order = drivable
        return self._change(order, status="awaiting_deposit", operator_id=None, operator_name=None)

    async def _escalate(self, request: web.Request) -> web.Response:
        drivable = self._drivable(request)
        if isinstance(drivable, web.Response):
            return drivable
        _, order = drivable
        if order["escalated"]:
            return problem(409, "order_already_escalated", "Comment on the open escalation instead.")
        body = await request.json()
        if body.get("reason", "other") not in ("underpaid", "overpaid", "other"):
            return invalid("reason", "underpaid, overpaid or other.", "validation_failed")
        if body.get("deposit") is not None:
            if order["status"] != "in_progress":  # a closed order's record is final
                return problem(
                    409,
                    "order_transition_not_allowed",
                    f"A deposit is recorded on an order in progress; this one is {order['status']}.",
                    order_status=order["status"],
                )
            refusal = self._refusal(order, body["deposit"], side="from", prefix="deposit")
            if refusal is not None:
                return refusal
            order["transaction"] = {
                "deposit": body["deposit"],
                "payout": None,
                "payment": None,
                "difference": None,
            }
            order["version"] += 1  # recording the deposit is a new version of the order
        order["escalated"] = True
        comment = body["comment"]
        return web.json_response(
            {"id": str(uuid.uuid4()), "order_id": order["id"], "comment": comment}, status=201
        )


@dataclass
class StandInWalletPool(StandIn):
    stats: dict[str, Any] = field(
        default_factory=lambda: {
            "generated_at": datetime.now(UTC).isoformat(),
            "window_seconds": 3600,
            "currencies": [
                {
                    "currency": "BTC", "total": 20, "free": 3, "reserved": 17, "disabled": 0, "queue_length": 0,
                    "oldest_wait_seconds": None, "average_wait_seconds": None,
                    "networks": [{"network": "bitcoin", "total": 20, "free": 3, "reserved": 17, "disabled": 0,
                                  "queue_length": 0}],
                },
                {
                    "currency": "USDT", "total": 10, "free": 0, "reserved": 10, "disabled": 0, "queue_length": 4,
                    "oldest_wait_seconds": 720.0, "average_wait_seconds": 300.0,
                    "networks": [
                        {"network": "TRC20", "total": 5, "free": 0, "reserved": 5, "disabled": 0, "queue_length": 3},
                        {"network": "ERC20", "total": 5, "free": 0, "reserved": 5, "disabled": 0, "queue_length": 1},
                    ],
                },
            ],
        }
    )  # fmt: skip

    def routes(self, app: web.Application) -> None:
        async def stats(request: web.Request) -> web.Response:
            return web.json_response(self.stats)

        app.router.add_get("/v1/stats", stats)


@dataclass
class Gateway:
    """The gateway served by uvicorn in this process."""

    app: FastAPI
    url: str
    client: httpx.AsyncClient

    @property
    def telegram(self) -> TelegramBot:
        return context_of(self.app).telegram

    async def post_message(self, body: dict[str, Any], *, key: str | None = KEYS.notifier) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return await self.client.post("/v1/messages", json=body, headers=headers)


@contextlib.asynccontextmanager
async def serve(app: FastAPI, port: int) -> AsyncIterator[Gateway]:
    """``app`` with its lifespan, on ``127.0.0.1:port``, until the block ends."""
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            lifespan="on",
            log_config=None,
            access_log=False,
            proxy_headers=False,  # as every launch does (servicekit.server.UVICORN_OPTIONS)
            server_header=False,
        )
    )
    task = asyncio.create_task(server.serve())

    async def started() -> bool:
        if task.done():
            task.result()  # raises why it stopped
        return server.started

    await eventually(started, within=20.0, message="the gateway starts")
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30.0) as client:
            yield Gateway(app=app, url=url, client=client)
    finally:
        server.should_exit = True
        await task


def order_message(
    order: dict[str, Any],
    *,
    event: str,
    message_id: str | None = None,
    note: str | None = None,
    chat: str = "operators",
    **changes: Any,
) -> dict[str, Any]:
    """A contract-B order card for ``order`` (a stand-in order-api order), as the notifier sends it."""
    merged = {**order, **changes}
    return {
        "message_id": message_id or str(uuid.uuid4()),
        "kind": "order_card",
        "chat": chat,
        "event": event,
        "order": {
            "order_id": merged["id"],
            **{key: merged[key] for key in CARD_FIELDS},
        },
        "note": note,
    }


def alert_message(**alert: Any) -> dict[str, Any]:
    return {
        "message_id": str(uuid.uuid4()),
        "kind": "alert",
        "chat": alert.pop("chat", "operators"),
        "alert": {
            "alert_id": str(uuid.uuid4()),
            "key": "pool.low:BTC:bitcoin",
            "severity": "warning",
            "title": "BTC pool is low",
            "text": "1 of 20 addresses free (5.00 %), 3 orders queued.",
            **alert,
        },
    }


async def registered(fake: FakeBotApi, gateway: Gateway) -> None:
    """Wait until the bot registered with the fake Bot API (commands set, webhook set or cleared)."""
    await eventually(lambda: _ready(gateway), within=20.0, message="the bot registers with the Bot API")
    assert fake.commands


async def _ready(gateway: Gateway) -> bool:
    return gateway.telegram.state == "ready"


Launch = Callable[..., contextlib.AbstractAsyncContextManager[Gateway]]
"""What the ``launch`` fixture hands out: ``async with launch(**settings) as gateway``."""


@dataclass
class Desk:
    """Operators linked in the bot, and the card of an order in the operators' chat (:func:`open_desk`)."""

    gateway: Gateway
    fake: FakeBotApi
    order_api: StandInOrderApi
    order: dict[str, Any]
    card: ChatMessage
    operators: dict[str, str]  # first name -> operator id

    async def press(
        self, user: TelegramUser, label: str, *, card: ChatMessage | None = None
    ) -> CallbackAnswer:
        card = card or self.card
        pressed = await self.fake.press(user, card, card.button(label).callback_data or "")
        assert pressed.status in (200, None)  # None: queued for getUpdates (polling mode)
        return await self.fake.answer_to(pressed.query_id or "")

    async def say(self, user: TelegramUser, text: str, **options: Any) -> list[ChatMessage]:
        """What the bot answered ``user`` in the chat (private unless ``chat=``)."""
        chat = options.get("chat")
        before = {m.message_id for m in self.fake.chat_messages(chat.id if chat else user.id)}
        delivery = await self.fake.send_text(user, text, **options)
        assert delivery.status == 200
        return [
            m for m in self.fake.chat_messages(chat.id if chat else user.id) if m.message_id not in before
        ]


async def link(fake: FakeBotApi, order_api: StandInOrderApi, user: TelegramUser) -> str:
    operator = order_api.add_operator(user.first_name)
    delivery = await fake.send_text(user, f"/start {order_api.issue_code(operator)}")
    assert delivery.status in (200, None)  # None: queued for getUpdates (polling mode)
    await eventually(
        lambda: asyncio.sleep(0, order_api.operators[operator]["telegram_user_id"]),
        until=lambda linked: linked == user.id,
        message="the operator is linked",
    )
    return operator


@contextlib.asynccontextmanager
async def open_desk(
    launch: Launch, fake_bot_api: FakeBotApi, order_api: StandInOrderApi, **settings: Any
) -> AsyncIterator[Desk]:
    """Anna and Boris linked, and the card of a new order in the operators' chat."""
    async with launch(**settings) as gateway:
        operators = {u.first_name: await link(fake_bot_api, order_api, u) for u in (ANNA, BORIS)}
        order = order_api.add_order()
        posted = await gateway.post_message(order_message(order, event="order.created"))
        assert posted.status_code == 200, posted.text
        [card] = fake_bot_api.chat_messages(OPERATORS_CHAT_ID)
        order_api.calls.clear()
        yield Desk(gateway, fake_bot_api, order_api, order, card, operators)

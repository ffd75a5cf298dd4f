"""The fault suite's harness: the desk as four processes on a database of its own and a private Redis, a bounded
steady load of customers and operators, fault injectors, and the invariants read back from the databases.

Every check returns :class:`Finding` values (empty when the invariant holds) so a test reports all that is
wrong at once, in the business's words, with the evidence (order ids, counts)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import signal
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import httpx

from coin_addresses import demo_address
from desk_testing.balancer import RoundRobin
from desk_testing.stack import Stack, replica
from notifier.testing import SmtpServer
from order_api.testing import completion_body, order_body
from servicekit.testing import PrivateRedis, ServiceProcess, eventually, migrated_database
from telegram_gateway.testing import OPERATORS_CHAT_ID, ChatMessage, FakeBotApi, TelegramUser

SERVICES = ("wallet-pool", "order-api", "notifier", "telegram-gateway")
POOL_SIZE = 30
"""BTC deposit addresses in the pool: small, so the load keeps a wait queue."""
DOCUMENTED = frozenset({200, 201, 204, 404, 409, 412, 422, 429, 503})
"""What a client may be answered during a fault (a 503 only with ``Retry-After``)."""
OPEN = ("queued", "awaiting_address", "awaiting_deposit", "in_progress")
CLOSED_BY_LOAD = ("completed", "cancelled")
BOT_OPERATOR = TelegramUser(id=7301, first_name="Fiona", username="fiona_desk")
TAKEN_BY_BOT = "is yours: complete, cancel, release or escalate it from the card."


# --- the stack ---------------------------------------------------------------------------------------------


@dataclass
class Operator:
    name: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class FaultStack:
    """The desk under test: the four services as processes, their PostgreSQL database (the suite's own), the
    private Redis, the SMTP server the notifier sends to and the fake Telegram Bot API.

    With replicas, ``processes`` names each ``<service>#<n>`` and ``balancers`` holds what spreads requests
    over a service's replicas: the address its peers, the clients and the Bot API's webhook use."""

    stack: Stack
    database_url: str
    redis: PrivateRedis
    smtp: SmtpServer
    bot_api: FakeBotApi
    processes: dict[str, ServiceProcess]
    balancers: dict[str, RoundRobin] = field(default_factory=dict)
    operator: Operator | None = None
    bot_operator: Operator | None = None
    addresses: list[str] = field(default_factory=list)

    def replicas(self, service: str) -> list[ServiceProcess]:
        return [p for name, p in self.processes.items() if name.split("#")[0] == service]

    def url(self, service: str) -> str:
        """Where ``service`` is reached: its balancer, or its one process."""
        balancer = self.balancers.get(service)
        return balancer.url if balancer is not None else self.processes[service].url

    @property
    def dsn(self) -> str:
        return self.database_url.replace("postgresql+asyncpg://", "postgresql://", 1)

    @property
    def database_name(self) -> str:
        return self.dsn.rsplit("/", 1)[1]

    @property
    def order_api(self) -> ServiceProcess:
        return self.replicas("order-api")[0]

    async def connect(self) -> asyncpg.Connection:
        return await asyncpg.connect(self.dsn)


RETRIES = "200"
"""Attempts before an event or a message is dead-lettered. ``desk_stack`` shrinks the backoffs to fractions of
a second (production: seconds to an hour), so the attempts are raised to keep what production promises: a
peer down for as long as a restart (tens of seconds on a loaded machine) delays work and never kills it."""


def service_env(redis: PrivateRedis) -> dict[str, dict[str, str]]:
    """What each process gets besides ``desk_stack``'s wiring: the private Redis, retry budgets for the
    shrunken backoffs, and limits per client network high enough that one test client on loopback is many
    customers."""
    return {
        "wallet-pool": {"WALLET_POOL_REDIS_URL": redis.url, "WALLET_POOL_OUTBOX_MAX_ATTEMPTS": RETRIES},
        "order-api": {
            "ORDER_API_REDIS_URL": redis.url,
            "ORDER_API_OUTBOX_MAX_ATTEMPTS": RETRIES,
            "ORDER_API_ORDER_RATE_LIMIT": "100000/minute",
            "ORDER_API_MAX_OPEN_ORDERS_PER_IP": "100000",
            # one operator account takes every customer's order, many at once: no cap stands in its way
            "ORDER_API_OPERATOR_MAX_HELD_ORDERS": "1000",
        },
        "notifier": {
            "NOTIFIER_REDIS_URL": redis.url,
            "NOTIFIER_DELIVERY_MAX_ATTEMPTS": RETRIES,
            "NOTIFIER_DELIVERY_LEASE_SECONDS": "10",
        },
        "telegram-gateway": {"TELEGRAM_GATEWAY_REDIS_URL": redis.url},
    }


@asynccontextmanager
async def fault_stack(
    logs: Path,
    *,
    replicas: int = 1,
    env: dict[str, dict[str, str]] | None = None,
    prefix: str = "desk_faults",
) -> AsyncIterator[FaultStack]:
    """The whole desk started for a module of tests, stopped and its database dropped after it. With
    ``replicas`` above one, each service runs that many processes on one database and one Redis, behind a
    :class:`RoundRobin` on the service's port. ``env``: more settings per service, over :func:`service_env`."""
    redis = PrivateRedis()
    smtp = SmtpServer()
    async with migrated_database(*SERVICES, prefix=prefix) as url, FakeBotApi() as bot_api:
        stack = Stack(database_url=url, logs=logs)
        settings = service_env(redis)
        for service, extra in (env or {}).items():
            settings[service] = {**settings[service], **extra}
        single = {
            "wallet-pool": stack.wallet_pool(**settings["wallet-pool"]),
            "order-api": stack.order_api(**settings["order-api"]),
            "notifier": stack.notifier(smtp_port=smtp.port, **settings["notifier"]),
            "telegram-gateway": stack.telegram_gateway(bot_api=bot_api, **settings["telegram-gateway"]),
        }
        processes = (
            single
            if replicas == 1
            else {
                f"{name}#{n}": replica(process, n)
                for n in range(1, replicas + 1)
                for name, process in single.items()
            }
        )
        desk = FaultStack(
            stack=stack, database_url=url, redis=redis, smtp=smtp, bot_api=bot_api, processes=processes
        )
        if replicas > 1:
            desk.balancers = {
                service: RoundRobin(
                    port=getattr(stack, f"{service.replace('-', '_')}_port"), replicas=desk.replicas(service)
                )
                for service in SERVICES
            }
        await redis.start()
        smtp.start()
        try:
            for balancer in desk.balancers.values():
                await balancer.start()
            await asyncio.gather(
                *(
                    process.start(ready_within=START_WITHIN, probe_timeout=10.0)
                    for process in processes.values()
                )
            )
            await eventually(
                lambda: _true(bot_api.webhook_url is not None), within=30, message="the bot's webhook is set"
            )
            await _seed(desk)
            yield desk
        finally:
            for process in processes.values():
                if process.process is not None and process.process.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(process.process.pid, signal.SIGCONT)
                await process.stop()
            for balancer in desk.balancers.values():
                await balancer.stop()
            smtp.stop()
            await redis.kill()


async def _true(value: bool) -> bool:
    return value


async def _seed(desk: FaultStack) -> None:
    """The pool's BTC addresses, an operator working through the API and one working through the bot."""
    keys = desk.stack.keys
    desk.addresses = [
        demo_address(currency="BTC", network="bitcoin", seed=5000 + i) for i in range(POOL_SIZE)
    ]
    async with httpx.AsyncClient(timeout=10) as client:
        imported = await client.post(
            f"{desk.url('wallet-pool')}/v1/wallets",
            json={"currency": "BTC", "addresses": desk.addresses},
            headers={"Authorization": f"Bearer {keys.wallet_pool_admin}"},
        )
        assert imported.status_code == 201, imported.text
        admin = {"Authorization": f"Bearer {keys.admin}"}
        made = []
        for body in (
            {"name": "Olga", "role": "operator"},
            {"name": BOT_OPERATOR.first_name, "role": "operator", "telegram_user_id": BOT_OPERATOR.id},
        ):
            created = await client.post(
                f"{desk.url('order-api')}/v1/admin/operators", json=body, headers=admin
            )
            assert created.status_code == 201, created.text
            made.append(Operator(name=str(body["name"]), token=created.json()["token"]))
    desk.operator, desk.bot_operator = made


# --- what clients saw --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Exchange:
    """One request a client sent and what came back (``status`` ``None``: no answer, a timeout or a refused
    or broken connection)."""

    action: str
    started: float
    seconds: float
    status: int | None
    retry_after: bool = False
    code: str | None = None
    error: str | None = None


@dataclass
class Intent:
    """One customer's order as the client knows it: its key and email, and the order id once answered 201."""

    key: str
    email: str
    order_id: str | None = None
    token: str | None = None
    status: str | None = None
    refused: str | None = None
    gave_up: str | None = None


@dataclass
class Traffic:
    exchanges: list[Exchange] = field(default_factory=list)
    intents: list[Intent] = field(default_factory=list)

    def between(self, start: float, end: float) -> list[Exchange]:
        return [e for e in self.exchanges if start <= e.started <= end]


def problem_code(response: httpx.Response) -> str | None:
    if "json" not in response.headers.get("content-type", ""):
        return None
    with contextlib.suppress(ValueError, AttributeError):
        code = response.json().get("code")
        return str(code) if code else None
    return None


def _detail_hint(response: httpx.Response) -> str:
    """ " (did not finish)" when the problem's detail says the key is dead, to tell it from one still running."""
    with contextlib.suppress(ValueError, AttributeError):
        if "did not finish" in str(response.json().get("detail")):
            return " (did not finish)"
    return ""


RETRYABLE_409 = frozenset({"idempotency_key_in_flight"})


class Client:
    """The desk's clients as real ones behave: a timeout per request, and a retry of a 503 (after its
    ``Retry-After``, capped), of a request still in flight (409) or of no answer at all, with the SAME
    ``Idempotency-Key``, until the client's own patience runs out."""

    def __init__(
        self, desk: FaultStack, traffic: Traffic, *, timeout: float = 10.0, patience: float = 40.0
    ) -> None:
        self.desk = desk
        self.traffic = traffic
        self.patience = patience
        self.http = httpx.AsyncClient(
            base_url=desk.url("order-api"),
            timeout=timeout,
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    async def once(self, action: str, method: str, path: str, **kwargs: Any) -> httpx.Response | None:
        started = time.monotonic()
        try:
            response = await self.http.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            self.traffic.exchanges.append(
                Exchange(action, started, time.monotonic() - started, None, error=type(error).__name__)
            )
            return None
        self.traffic.exchanges.append(
            Exchange(
                action,
                started,
                time.monotonic() - started,
                response.status_code,
                retry_after="retry-after" in response.headers,
                code=problem_code(response),
            )
        )
        return response

    async def call(self, action: str, method: str, path: str, **kwargs: Any) -> httpx.Response | None:
        """The request, retried as a client retries it; the last answer (``None``: none before patience ran out)."""
        deadline = time.monotonic() + self.patience
        delay = 0.5
        while True:
            response = await self.once(action, method, path, **kwargs)
            retry = response is None or response.status_code == 503
            if response is not None and response.status_code == 409:
                retry = problem_code(response) in RETRYABLE_409 and not _detail_hint(response)
            if not retry or time.monotonic() + delay > deadline:
                return response
            wait = delay
            if response is not None and response.status_code == 503:
                with contextlib.suppress(ValueError):
                    wait = min(float(response.headers.get("retry-after", delay)), 2.0)
            await asyncio.sleep(wait + random.uniform(0, 0.1))
            delay = min(delay * 2, 4.0)


async def place_order(client: Client, intent: Intent, *, retried: bool = True) -> None:
    """The customer's ``POST /v1/orders`` (retried as a client does, or sent once); what it came to is kept on
    ``intent``: the order, a refusal the customer is told about (a limit: 409, 429), or ``gave_up``."""
    send = client.call if retried else client.once
    response = await send(
        "create",
        "POST",
        "/v1/orders",
        json=order_body(intent.email),
        headers={"Idempotency-Key": intent.key},
    )
    if response is None:
        intent.gave_up = "no answer"
    elif response.status_code == 201:
        body = response.json()
        intent.order_id, intent.token, intent.status = body["id"], body["session_token"], body["status"]
    elif response.status_code == 429 or (
        response.status_code == 409 and problem_code(response) not in RETRYABLE_409
    ):
        intent.refused = f"{response.status_code} {problem_code(response)}"
    else:
        intent.gave_up = f"{response.status_code} {problem_code(response)}{_detail_hint(response)}"


async def customer(client: Client, intent: Intent, *, rng: random.Random, bot_share: float) -> None:
    """A customer places an order; a moment later it is either cancelled by the customer or, once it holds an
    address, taken and completed by an operator (through the API or by pressing the card's buttons)."""
    await place_order(client, intent)
    if intent.order_id is None:
        return
    await asyncio.sleep(rng.uniform(0.3, 1.5))
    if rng.random() < 0.4:
        await cancel(client, intent)
        return
    desk = client.desk
    assert desk.operator is not None
    assert desk.bot_operator is not None
    operator = desk.operator
    taken = None
    if rng.random() < bot_share:
        operator = desk.bot_operator
        taken = await take_by_bot(client, intent)
    if taken is None:
        response = await client.call(
            "take", "POST", f"/v1/operator/orders/{intent.order_id}/take", headers=operator.headers
        )
        taken = response is not None and response.status_code == 200
    if not taken:
        await cancel(client, intent)
        return
    await client.call(
        "complete",
        "POST",
        f"/v1/operator/orders/{intent.order_id}/status",
        json=completion_body(
            {"id": intent.order_id, "from_network": "bitcoin", **order_body()}, comment="Paid out"
        ),  # the order of order_body(): 0.05 BTC (bitcoin) for USDT (TRC20)
        headers=operator.headers,
    )


async def cancel(client: Client, intent: Intent) -> None:
    await client.call(
        "cancel",
        "POST",
        f"/v1/orders/{intent.order_id}/cancel",
        headers={"Authorization": f"Bearer {intent.token}"},
    )


def card_of(bot_api: FakeBotApi, order_id: str) -> ChatMessage | None:
    marker = f"Order {order_id[:8]}"
    for message in bot_api.chat_messages(OPERATORS_CHAT_ID):
        if marker in message.text:
            return message
    return None


async def take_by_bot(client: Client, intent: Intent) -> bool | None:
    """The bot's operator presses Take on the order's card: ``True`` taken, ``False`` refused, ``None`` no card
    with a Take button (the API is used instead). The press is recorded as an exchange whose status is the
    webhook's, and whose time runs until the bot answers the press (``None``: no answer within 10 s)."""
    assert intent.order_id is not None
    bot_api = client.desk.bot_api
    card = card_of(bot_api, intent.order_id)
    if card is None or not any("Take" in b.text for b in card.buttons()):
        return None
    started = time.monotonic()
    try:
        delivery = await bot_api.press(BOT_OPERATOR, card, card.button("Take").callback_data or "")
        if delivery.status != 200:
            record = Exchange("bot take", started, time.monotonic() - started, delivery.status)
            client.traffic.exchanges.append(record)
            return False
        answer = await bot_api.answer_to(delivery.query_id or "", within=10.0)
    except (TimeoutError, OSError, aiohttp.ClientError) as error:
        client.traffic.exchanges.append(
            Exchange("bot take", started, time.monotonic() - started, None, error=type(error).__name__)
        )
        return False
    client.traffic.exchanges.append(
        Exchange("bot take", started, time.monotonic() - started, delivery.status)
    )
    return (answer.text or "").endswith(TAKEN_BY_BOT)


async def steady_load(
    desk: FaultStack,
    traffic: Traffic,
    *,
    label: str,
    rate: float,
    stop: asyncio.Event,
    bot_share: float = 0.25,
) -> None:
    """``rate`` new customers a second until ``stop`` is set, each followed through; returns when every one
    is done."""
    rng = random.Random(label)
    client = Client(desk, traffic)
    tasks: list[asyncio.Task[None]] = []
    try:
        start = time.monotonic()
        n = 0
        while not stop.is_set():
            due = int((time.monotonic() - start) * rate) + 1
            while n < due:
                intent = Intent(key=str(uuid.uuid4()), email=f"{label}-{n}@faults.example.com")
                traffic.intents.append(intent)
                tasks.append(asyncio.create_task(customer(client, intent, rng=rng, bot_share=bot_share)))
                n += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1 / rate)
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await client.aclose()


async def burst(desk: FaultStack, traffic: Traffic, *, label: str, count: int) -> None:
    """``count`` customers press "create" at the same instant: one request each, no retries."""
    client = Client(desk, traffic, timeout=30.0)
    intents = [Intent(key=str(uuid.uuid4()), email=f"{label}-{n}@faults.example.com") for n in range(count)]
    traffic.intents.extend(intents)
    try:
        go = asyncio.Event()

        async def one(intent: Intent) -> None:
            await go.wait()
            await place_order(client, intent, retried=False)

        tasks = [asyncio.create_task(one(intent)) for intent in intents]
        await asyncio.sleep(0.2)
        go.set()
        await asyncio.gather(*tasks)
    finally:
        await client.aclose()


# --- faults ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """One fault: ``inject`` it, hold it for ``hold`` seconds, ``heal`` it. ``answer_within``: the longest a
    client may wait for an answer to an action (``create``, ``bot take``) sent during the fault."""

    name: str
    inject: Callable[[FaultStack], Awaitable[None]]
    heal: Callable[[FaultStack], Awaitable[None]]
    hold: float = 3.0
    answer_within: dict[str, float] = field(default_factory=dict)


def kill(*processes: str) -> Fault:
    """``kill -9`` of the named processes (a service, or a replica: ``order-api#2``) at once, and each started
    again on its port."""

    async def inject(desk: FaultStack) -> None:
        await asyncio.gather(*(desk.processes[name].stop(sig=signal.SIGKILL) for name in processes))

    async def heal(desk: FaultStack) -> None:
        await asyncio.gather(
            *(
                desk.processes[name].start(ready_within=RESTART_WITHIN, probe_timeout=10.0)
                for name in processes
            )
        )

    return Fault("kill -9 " + " and ".join(processes), inject, heal)


def _freeze(service: str, *, hold: float, answer_within: dict[str, float]) -> Fault:
    def pid(desk: FaultStack) -> int:
        process = desk.processes[service].process
        assert process is not None
        return process.pid

    async def inject(desk: FaultStack) -> None:
        os.kill(pid(desk), signal.SIGSTOP)

    async def heal(desk: FaultStack) -> None:
        os.kill(pid(desk), signal.SIGCONT)

    return Fault(f"SIGSTOP {service}", inject, heal, hold=hold, answer_within=answer_within)


INTAKE_WITHIN = 3.0
"""Seconds within which ``POST /v1/orders`` answers while wallet-pool is frozen."""
PRESS_WITHIN = 5.0
"""Seconds within which the bot answers a button press while order-api is frozen."""


async def restore(desk: FaultStack) -> None:
    """Every process running and Redis up, whatever an earlier test left behind."""
    for process in desk.processes.values():
        if process.process is not None and process.process.poll() is None:
            os.kill(process.process.pid, signal.SIGCONT)
        else:
            await process.start(ready_within=RESTART_WITHIN, probe_timeout=10.0)
    if desk.redis.process is None or desk.redis.process.poll() is not None:
        await desk.redis.start()


async def _kill_redis(desk: FaultStack) -> None:
    await desk.redis.kill()


async def _restart_redis(desk: FaultStack) -> None:
    await desk.redis.start()


async def terminate_connections(desk: FaultStack) -> int:
    """``pg_terminate_backend`` on every connection to the suite's own database but this one."""
    connection = await desk.connect()
    try:
        rows = await connection.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid()",
            desk.database_name,
        )
    finally:
        await connection.close()
    return len(rows)


async def _terminate_repeatedly(desk: FaultStack) -> None:
    """Three rounds of terminations across the fault window, so work in flight is cut more than once."""
    for _ in range(3):
        await terminate_connections(desk)
        await asyncio.sleep(1.0)


async def _nothing(desk: FaultStack) -> None:
    return None


FAULTS: tuple[Fault, ...] = (
    *(kill(service) for service in SERVICES),
    # A customer's order is answered within 3 s whatever wallet-pool does.
    _freeze("wallet-pool", hold=5.0, answer_within={"create": INTAKE_WITHIN}),
    # An operator's press is answered within Telegram's patience whatever order-api does.
    _freeze("order-api", hold=8.0, answer_within={"bot take": PRESS_WITHIN}),
    Fault("Redis killed and restarted", _kill_redis, _restart_redis),
    Fault("PostgreSQL connections terminated", _terminate_repeatedly, _nothing, hold=0.0),
)


# --- the databases after the fault -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Finding:
    """One broken invariant: what (``invariant``), how many cases, and examples as evidence."""

    invariant: str
    count: int
    evidence: str
    lost: int = 0
    duplicated: int = 0

    def __str__(self) -> str:
        return f"{self.invariant}: {self.count} ({self.evidence})"


def _examples(items: list[Any], limit: int = 5) -> str:
    shown = ", ".join(str(i) for i in items[:limit])
    return shown + (f" … and {len(items) - limit} more" if len(items) > limit else "")


@dataclass
class Snapshot:
    """The desk's state, read in one go from the four schemas."""

    orders: list[asyncpg.Record]
    wallets: list[asyncpg.Record]
    allocations: dict[str, asyncpg.Record]
    wait_queue: list[asyncpg.Record]
    pending_work: dict[str, int]
    dead_work: dict[str, int]


PENDING_WORK = {
    "order-api outbox": "SELECT count(*) FROM order_api.outbox WHERE delivered_at IS NULL AND dead_at IS NULL",
    "wallet-pool outbox": "SELECT count(*) FROM wallet_pool.outbox WHERE delivered_at IS NULL AND dead_at IS NULL",
    "notifier delivery queue": "SELECT count(*) FROM notifier.notification WHERE status IN ('pending', 'failed')",
    "orders waiting for wallet-pool's answer": 'SELECT count(*) FROM order_api."order" '
    "WHERE allocation_state = 'pending' AND status = ANY($1::varchar[])",
    "orders not announced": 'SELECT count(*) FROM order_api."order" WHERE announced_at IS NULL',
}
DEAD_WORK = {
    "order-api outbox": "SELECT count(*) FROM order_api.outbox WHERE dead_at IS NOT NULL",
    "wallet-pool outbox": "SELECT count(*) FROM wallet_pool.outbox WHERE dead_at IS NOT NULL",
    "notifier delivery queue": "SELECT count(*) FROM notifier.notification WHERE status = 'dead'",
}


async def snapshot(desk: FaultStack) -> Snapshot:
    connection = await desk.connect()
    try:
        orders = await connection.fetch(
            "SELECT id, status, deposit_address, allocation_state, queue_position, created_at, announced_at, "
            "address_assigned_at "
            'FROM order_api."order"'
        )
        wallets = await connection.fetch(
            "SELECT address, status, order_id, currency, network FROM wallet_pool.wallet"
        )
        allocations = {
            row["order_id"]: row
            for row in await connection.fetch(
                "SELECT order_id, status, address, handed_to_order_id FROM wallet_pool.allocation"
            )
        }
        wait_queue = await connection.fetch(
            "SELECT order_id, currency, network FROM wallet_pool.wait_queue_entry "
            "ORDER BY priority DESC, enqueued_at, id"
        )
        pending: dict[str, int] = {}
        for name, query in PENDING_WORK.items():
            args = [list(OPEN)] if "$1" in query else []
            pending[name] = int(await connection.fetchval(query, *args))
        dead = {name: int(await connection.fetchval(query)) for name, query in DEAD_WORK.items()}
    finally:
        await connection.close()
    return Snapshot(orders, wallets, allocations, wait_queue, pending, dead)


async def drained(desk: FaultStack, *, within: float) -> tuple[float | None, Snapshot]:
    """Wait until no work is pending anywhere (outboxes, the delivery queue, answers owed by wallet-pool):
    the seconds it took (``None``: not within ``within``) and the state then."""
    started = time.monotonic()
    while True:
        try:
            state = await snapshot(desk)
        except (OSError, asyncpg.PostgresError):
            state = None
        if state is not None and not any(state.pending_work.values()):
            return time.monotonic() - started, state
        if time.monotonic() - started > within:
            return None, state if state is not None else await snapshot(desk)
        await asyncio.sleep(0.5)


def check_answers(exchanges: list[Exchange]) -> list[Finding]:
    """Clients saw only documented answers: never a bare 500 (or any other status), a 503 only with
    Retry-After."""
    findings = []
    undocumented = [e for e in exchanges if e.status is not None and e.status not in DOCUMENTED]
    if undocumented:
        by = Counter(f"{e.action} {e.status}" for e in undocumented)
        findings.append(Finding("undocumented answers", len(undocumented), _examples(sorted(by.items()))))
    bare_503 = [e for e in exchanges if e.status == 503 and not e.retry_after]
    if bare_503:
        by = Counter(f"{e.action} {e.code}" for e in bare_503)
        findings.append(Finding("503 without Retry-After", len(bare_503), _examples(sorted(by.items()))))
    return findings


def check_latency(exchanges: list[Exchange], bounds: dict[str, float]) -> list[Finding]:
    """Actions sent during the fault answered within their bound (no answer at all counts as too slow)."""
    findings = []
    for action, bound in bounds.items():
        slow = sorted(
            e.seconds for e in exchanges if e.action == action and (e.status is None or e.seconds > bound)
        )
        if slow:
            findings.append(
                Finding(
                    f"{action} answered later than {bound:g} s during the fault",
                    len(slow),
                    "slowest " + ", ".join(f"{t:.1f}s" for t in slow[-3:]),
                )
            )
    return findings


def check_intake(intents: list[Intent], state: Snapshot, several: dict[str, list[str]]) -> list[Finding]:
    """Every order answered 201 exists, and exactly once: one customer (one email, one Idempotency-Key) has
    one order; and every customer retrying with the key got the order in the end."""
    findings = []
    ids = {row["id"] for row in state.orders}
    lost = [i.order_id for i in intents if i.order_id is not None and i.order_id not in ids]
    if lost:
        findings.append(
            Finding(
                "orders answered 201 missing from the database", len(lost), _examples(lost), lost=len(lost)
            )
        )
    if several:
        extra = sum(len(orders) - 1 for orders in several.values())
        findings.append(
            Finding(
                "one customer's key made more than one order",
                extra,
                _examples([" + ".join(orders) for orders in several.values()]),
                duplicated=extra,
            )
        )
    dead_ends = Counter(i.gave_up for i in intents if i.gave_up is not None)
    if dead_ends:
        findings.append(
            Finding(
                "customers retrying with their Idempotency-Key never got their order",
                sum(dead_ends.values()),
                _examples(sorted(dead_ends.items())),
            )
        )
    return findings


async def several_orders_per_customer(desk: FaultStack, *, since: datetime) -> dict[str, list[str]]:
    """Customers of the run (each is one client's email and key) holding more than one order."""
    connection = await desk.connect()
    try:
        rows = await connection.fetch(
            'SELECT customer_id, array_agg(id ORDER BY created_at) AS ids FROM order_api."order" '
            "WHERE created_at >= $1 GROUP BY customer_id HAVING count(*) > 1",
            since,
        )
    finally:
        await connection.close()
    return {row["customer_id"]: list(row["ids"]) for row in rows}


def check_allocations(state: Snapshot) -> list[Finding]:
    """No address held twice; every open order holds an address or waits in the queue (as wallet-pool's queue
    says); a closed order's address went back to the pool or to the head of the queue."""
    findings = []
    open_orders = [o for o in state.orders if o["status"] in OPEN]
    holders = Counter(o["deposit_address"] for o in open_orders if o["deposit_address"] is not None)
    doubled = [address for address, n in holders.items() if n > 1]
    if doubled:
        findings.append(Finding("deposit address held by two open orders", len(doubled), _examples(doubled)))
    reserved = {w["address"]: w["order_id"] for w in state.wallets if w["status"] == "reserved"}
    wrong_holder = [
        o["id"]
        for o in open_orders
        if o["deposit_address"] is not None and reserved.get(o["deposit_address"]) != o["id"]
    ]
    if wrong_holder:
        findings.append(
            Finding(
                "open order's address not reserved for it in wallet-pool",
                len(wrong_holder),
                _examples(wrong_holder),
            )
        )
    queued_ids = [row["order_id"] for row in state.wait_queue]
    waiting = {o["id"] for o in open_orders if o["deposit_address"] is None}
    not_queued = [
        o["id"]
        for o in open_orders
        if o["deposit_address"] is None
        and (o["status"] not in ("queued", "awaiting_address") or o["id"] not in queued_ids)
    ]
    if not_queued:
        findings.append(
            Finding(
                "open order with neither an address nor a place in wallet-pool's queue",
                len(not_queued),
                _examples(
                    [f"{i} ({next(o['status'] for o in open_orders if o['id'] == i)})" for i in not_queued]
                ),
            )
        )
    stale_queue = [order_id for order_id in queued_ids if order_id not in waiting]
    if stale_queue:
        findings.append(
            Finding(
                "wallet-pool's queue holds orders that no longer wait",
                len(stale_queue),
                _examples(stale_queue),
            )
        )
    if len(set(queued_ids)) != len(queued_ids):
        findings.append(
            Finding(
                "queue positions not dense (an order queued twice)",
                len(queued_ids) - len(set(queued_ids)),
                "",
            )
        )
    by_id = {o["id"]: o for o in state.orders}
    kept = [
        order_id
        for order_id in reserved.values()
        if order_id is not None and (order_id not in by_id or by_id[order_id]["status"] not in OPEN)
    ]
    if kept:
        findings.append(
            Finding("address still reserved for a closed (or unknown) order", len(kept), _examples(kept))
        )
    free = Counter((w["currency"], w["network"]) for w in state.wallets if w["status"] == "free")
    queued_in = Counter((row["currency"], row["network"]) for row in state.wait_queue)
    for pool in sorted(set(free) & set(queued_in)):
        findings.append(
            Finding(
                "addresses free while orders wait in the queue (a release not handed to the queue head)",
                min(free[pool], queued_in[pool]),
                f"{'/'.join(pool)}: {free[pool]} free, {queued_in[pool]} waiting",
            )
        )
    return findings


ORDER_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
SUBJECT_KIND = (("has been created", "order_created"), ("deposit address is ready", "address_ready"))


def mail_by_order(messages: list[EmailMessage]) -> dict[str, Counter[str]]:
    """Emails the SMTP server accepted, per order id and kind (order_created, address_ready, or the status
    the subject names)."""
    found: dict[str, Counter[str]] = {}
    for message in messages:
        subject = str(message["Subject"])
        match = ORDER_ID.search(subject)
        if match is None:
            continue
        kind = next((k for text, k in SUBJECT_KIND if text in subject), subject.rsplit(": ", 1)[-1])
        found.setdefault(match.group(0), Counter())[kind] += 1
    return found


def _allocated_address(state: Snapshot, order_id: str) -> str | None:
    allocation = state.allocations.get(order_id)
    return None if allocation is None else str(allocation["address"]) if allocation["address"] else None


def _addresses_told(messages: list[EmailMessage]) -> dict[str, set[str]]:
    """Per order id, the text of every email about it (the deposit address, when one was told, is in it)."""
    told: dict[str, set[str]] = {}
    for message in messages:
        match = ORDER_ID.search(str(message["Subject"]))
        if match is not None:
            told.setdefault(match.group(0), set()).update(_body(message).split())
    return told


def _body(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    return str(part.get_content()) if part is not None else ""


def check_messages(
    desk: FaultStack, state: Snapshot, *, since: datetime, notifier_killed: bool
) -> tuple[list[Finding], int]:
    """Every order of the run produced one "order created" email and one operator card, at most one "address
    ready" and one email per closing; no email says "None". Duplicates where the notifier itself was killed
    mid-send are returned (counted) rather than failed, as long as they stay few. Returns the findings and
    the tolerated duplicates."""
    findings = []
    orders = [o for o in state.orders if o["created_at"] >= since]
    mail = mail_by_order(desk.smtp.messages)
    no_created = [o["id"] for o in orders if mail.get(o["id"], Counter())["order_created"] == 0]
    if no_created:
        findings.append(
            Finding(
                'orders whose customer never got the "order created" email',
                len(no_created),
                _examples(no_created),
                lost=len(no_created),
            )
        )
    closing = {"completed": "completed", "cancelled": "cancelled", "expired": "expired"}
    no_closing = [
        o["id"]
        for o in orders
        if o["status"] in closing and mail.get(o["id"], Counter())[closing[o["status"]]] == 0
    ]
    if no_closing:
        findings.append(
            Finding(
                "closed orders whose customer was not told",
                len(no_closing),
                _examples(no_closing),
                lost=len(no_closing),
            )
        )
    extra_mail = {
        f"{o['id']} {kind}": n - 1
        for o in orders
        for kind, n in mail.get(o["id"], Counter()).items()
        if n > 1
    }
    cards = Counter(
        m.text.split("Order ", 1)[1][:8]
        for m in desk.bot_api.chat_messages(OPERATORS_CHAT_ID)
        if "Order " in m.text
    )
    no_card = [o["id"] for o in orders if cards[o["id"][:8]] == 0]
    if no_card:
        findings.append(
            Finding("orders with no operator card", len(no_card), _examples(no_card), lost=len(no_card))
        )
    extra_cards = {f"{o['id']} card": n - 1 for o in orders if (n := cards[o["id"][:8]]) > 1}
    duplicates = {**extra_mail, **extra_cards}
    tolerated = 0
    total = sum(duplicates.values())
    if duplicates:
        bound = 5
        if notifier_killed and total <= bound:
            tolerated = total
        else:
            findings.append(
                Finding(
                    "the same fact told twice (emails or operator cards)",
                    total,
                    _examples(sorted(duplicates.items())),
                    duplicated=total,
                )
            )
    told = _addresses_told(desk.smtp.messages)
    untold = [
        o["id"]
        for o in orders
        if o["address_assigned_at"] is not None
        and (address := o["deposit_address"] or _allocated_address(state, o["id"])) is not None
        and address not in told.get(o["id"], set())
    ]
    if untold:
        findings.append(
            Finding(
                "orders given an address their customer was never emailed",
                len(untold),
                _examples(untold),
                lost=len(untold),
            )
        )
    ids = {o["id"] for o in orders}
    wrong = sorted(
        {
            match.group(0)
            for m in desk.smtp.messages
            if (match := ORDER_ID.search(str(m["Subject"]))) is not None
            and match.group(0) in ids
            and re.search(r"\bNone\b", _body(m))
        }
    )
    if wrong:
        findings.append(Finding('emails that say "None"', len(wrong), _examples(wrong)))
    return findings, tolerated


def check_work(state: Snapshot, drain_seconds: float | None, *, dead_before: dict[str, int]) -> list[Finding]:
    """Nothing left pending once drained, and nothing newly dead-lettered during the run."""
    findings = []
    if drain_seconds is None:
        left = {name: n for name, n in state.pending_work.items() if n}
        findings.append(
            Finding(
                "work still pending after the drain deadline",
                sum(left.values()),
                _examples(sorted(left.items())),
            )
        )
    dead = {
        name: n - dead_before.get(name, 0)
        for name, n in state.dead_work.items()
        if n > dead_before.get(name, 0)
    }
    if dead:
        findings.append(Finding("dead-lettered work", sum(dead.values()), _examples(sorted(dead.items()))))
    return findings


# --- the report --------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    fault: str
    requests: int
    answers: Counter[str]
    p99_during: float | None
    recovery_seconds: float | None
    """From the fault's end until a customer's order is accepted again (``None``: not during the load)."""
    drain_seconds: float | None
    """From the load's end until no work is pending anywhere (``None``: not within the deadline)."""
    lost: int
    duplicated: int
    tolerated_duplicates: int
    findings: list[Finding]


def p99(exchanges: list[Exchange]) -> float | None:
    times = sorted(e.seconds for e in exchanges)
    if not times:
        return None
    return times[min(len(times) - 1, int(len(times) * 0.99))]


def answers(exchanges: list[Exchange]) -> Counter[str]:
    return Counter("none" if e.status is None else str(e.status) for e in exchanges)


def outcome(
    fault: str,
    traffic: Traffic,
    *,
    window: tuple[float, float],
    drain: float | None,
    findings: list[Finding],
    tolerated: int,
) -> Outcome:
    healed = window[1]
    served_again = [
        e.started + e.seconds
        for e in traffic.exchanges
        if e.status == 201 and e.started + e.seconds >= healed
    ]
    return Outcome(
        fault=fault,
        requests=len(traffic.exchanges),
        answers=answers(traffic.exchanges),
        p99_during=p99(traffic.between(*window)),
        recovery_seconds=min(served_again) - healed if served_again else None,
        drain_seconds=drain,
        lost=sum(f.lost for f in findings),
        duplicated=sum(f.duplicated for f in findings) + tolerated,
        tolerated_duplicates=tolerated,
        findings=findings,
    )


def table(outcomes: list[Outcome]) -> str:
    header = (
        "fault",
        "requests",
        "answers by status",
        "p99 during",
        "recovery",
        "drained",
        "lost",
        "duplicated",
    )
    rows = [header]
    for o in outcomes:
        rows.append(
            (
                o.fault,
                str(o.requests),
                " ".join(f"{status}:{n}" for status, n in sorted(o.answers.items())),
                "-" if o.p99_during is None else f"{o.p99_during:.2f}s",
                "-" if o.recovery_seconds is None else f"{o.recovery_seconds:.1f}s",
                "not drained" if o.drain_seconds is None else f"{o.drain_seconds:.1f}s",
                str(o.lost),
                str(o.duplicated)
                + (f" ({o.tolerated_duplicates} notifier mid-send)" if o.tolerated_duplicates else ""),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) + " |" for row in rows
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def now_utc() -> datetime:
    return datetime.now(UTC)


# --- one fault, start to finish ----------------------------------------------------------------------------

RATE = 5.0
"""New customers a second during a fault's run (each followed by a cancel, or a take and a completion)."""
INJECT_AFTER = 2.0
"""Seconds of load before the fault."""
LOAD_AFTER_HEAL = 3.0
"""Seconds of load after the fault is healed (a restarted service is ready again)."""
DRAIN_WITHIN = 60.0
RESTART_WITHIN = 120.0
"""A restarted process is given this long to be ready (imports are slow on a loaded machine)."""
START_WITHIN = 240.0
"""Every process of the desk is given this long to be ready when all start at once (eight importing side by side
on two busy cores take minutes)."""


async def run_fault(desk: FaultStack, fault: Fault, *, rate: float = RATE) -> Outcome:
    """Steady load; ``fault`` injected ``INJECT_AFTER`` seconds in, held, healed; the load goes on for
    ``LOAD_AFTER_HEAL`` seconds and stops, the desk drains, and every invariant is read back from the
    databases."""
    await restore(desk)
    since = now_utc()
    dead_before = (await snapshot(desk)).dead_work
    traffic = Traffic()
    label = re.sub(r"[^a-z0-9]+", "-", fault.name.lower()).strip("-")
    stop = asyncio.Event()
    load = asyncio.create_task(steady_load(desk, traffic, label=label, rate=rate, stop=stop))
    try:
        await asyncio.sleep(INJECT_AFTER)  # the fault's place on the load's timeline
        injected = time.monotonic()
        await fault.inject(desk)
        try:
            await asyncio.sleep(fault.hold)  # how long the fault lasts
        finally:
            await fault.heal(desk)
        healed = time.monotonic()
        await asyncio.sleep(LOAD_AFTER_HEAL)  # the load's tail, on the healed desk
    finally:
        stop.set()
        await load
    drain_seconds, state = await drained(desk, within=DRAIN_WITHIN)
    return await assess(
        desk,
        fault.name,
        traffic,
        state=state,
        since=since,
        window=(injected, healed),
        drain_seconds=drain_seconds,
        dead_before=dead_before,
        notifier_killed=fault.name == "kill -9 notifier",
        answer_within=fault.answer_within,
    )


async def assess(
    desk: FaultStack,
    name: str,
    traffic: Traffic,
    *,
    state: Snapshot,
    since: datetime,
    window: tuple[float, float],
    drain_seconds: float | None,
    dead_before: dict[str, int],
    notifier_killed: bool = False,
    answer_within: dict[str, float] | None = None,
) -> Outcome:
    several = await several_orders_per_customer(desk, since=since)
    message_findings, tolerated = check_messages(desk, state, since=since, notifier_killed=notifier_killed)
    findings = [
        *check_answers(traffic.exchanges),
        *check_latency(traffic.between(*window), answer_within or {}),
        *check_intake(traffic.intents, state, several),
        *check_allocations(state),
        *message_findings,
        *check_work(state, drain_seconds, dead_before=dead_before),
    ]
    return outcome(name, traffic, window=window, drain=drain_seconds, findings=findings, tolerated=tolerated)


async def run_burst(desk: FaultStack, *, count: int) -> Outcome:
    """``count`` customers at once (no fault), then the same drain and invariants as after a fault."""
    await restore(desk)
    since, traffic = now_utc(), Traffic()
    dead_before = (await snapshot(desk)).dead_work
    started = time.monotonic()
    await burst(desk, traffic, label="burst", count=count)
    drain_seconds, state = await drained(desk, within=DRAIN_WITHIN)
    return await assess(
        desk,
        f"burst: {count} concurrent orders",
        traffic,
        state=state,
        since=since,
        window=(started, time.monotonic()),
        drain_seconds=drain_seconds,
        dead_before=dead_before,
    )

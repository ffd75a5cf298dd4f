"""A realistic day on the desk, made by the services' own code: ``make seed-day`` (``--help`` for the options).

order-api and wallet-pool are built in this process from the same environment ``make run`` gives them
(``scripts/devstack.py``: the credentials in ``var/``, the embedded SQLite databases there, or the
``ORDER_API_DATABASE_URL`` / ``WALLET_POOL_DATABASE_URL`` you export or pass), and every step of the day goes
through their HTTP routes, service functions and workers while a simulated clock
(``servicekit.db.SimulatedClock``) stands at the step's moment. So the rows are the rows the desk writes: the
order and its history, the audit trail, the allocations and the wait queue, the outbox events between the
two services. Events to the notifier are acknowledged by a stand-in (a seeded day mails nobody).

The day (deterministic for a ``--seed``, on ``--day``, yesterday by default):

- customers arrive along an hourly profile (quiet at night, a late-morning and an evening peak) with BTC, ETH
  and USDT on TRC20 and ERC20, in amounts spread over several bands; a few are VIP-sized;
- each pool holds fewer wallets than the peak needs, so at peak orders queue; some queued customers give up
  and cancel, some queued orders expire;
- operators look at the takeable list every couple of minutes and take what they have noticed (at most their
  cap each), then complete the order, or cancel it; some customers cancel before anyone takes their order;
  some orders nobody takes expire;
- after the last arrival the desk runs on until every order of the day is closed (or until now).

Run it while the desk's services are stopped: their workers run on the wall clock and would, for example,
expire the past day's orders while they are being made.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import ipaddress
import math
import random
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Request
from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parent))

import devstack

from coin_addresses import demo_address, demo_transaction_hash
from order_api.context import context_of
from servicekit.db import SimulatedClock
from servicekit.outbox import OutboxRelay
from servicekit.settings import PRODUCTION, load_settings
from servicekit.state import service_state

HOURLY_PROFILE = (
    1, 1, 1, 1, 1, 2, 3, 5, 7, 9, 11, 12, 11, 9, 8, 8, 9, 11, 12, 10, 7, 5, 3, 2,
)  # fmt: skip
"""Relative arrivals per UTC hour of the day: a late-morning and an evening peak."""


@dataclass(frozen=True, slots=True)
class Market:
    """One deposit pool: its share of arrivals, its amounts (log-uniform between two bounds), what customers
    receive, and how many wallets it holds for ``orders`` arrivals a day (per 300)."""

    currency: str
    network: str
    share: float
    low: Decimal
    high: Decimal
    precision: int
    to_currency: str
    payout_network: str
    wallets_per_300: int


MARKETS = (
    Market("BTC", "bitcoin", 0.40, Decimal("0.002"), Decimal("1.5"), 4, "USDT", "TRC20", 4),
    Market("ETH", "ethereum", 0.20, Decimal("0.02"), Decimal("30"), 3, "BTC", "bitcoin", 3),
    Market("USDT", "TRC20", 0.25, Decimal("50"), Decimal("60000"), 0, "BTC", "bitcoin", 3),
    Market("USDT", "ERC20", 0.15, Decimal("50"), Decimal("60000"), 0, "ETH", "ethereum", 3),
)
PAYOUT_SEEDS = {"USDT": 1, "BTC": 2, "ETH": 3}
USD_RATES = {"BTC": Decimal(60000), "ETH": Decimal(3000), "USDT": Decimal(1)}
"""The day's fixed exchange rates: what a completed order paid out."""


def payout(amount: Decimal, from_currency: str, to_currency: str) -> Decimal:
    value = amount * USD_RATES[from_currency] / USD_RATES[to_currency] * Decimal("0.99")  # the desk's 1 %
    return value.quantize(Decimal("0.000001"))


OPERATORS = 4
ROUND = timedelta(minutes=3)
"""How often operators look at the takeable list (and the desk's sweeps run)."""
MAX_HANDLING = timedelta(minutes=28)
"""Operators finish within the assignment timeout (30 minutes by default), so no order returns to the list."""


@dataclass(slots=True)
class Customer:
    """One arrival and what this customer and the desk will do, drawn up front from the seed."""

    index: int
    at: datetime
    market: Market
    amount: Decimal
    patience: timedelta  # how long they wait in the queue before cancelling
    cancels_before_take: timedelta | None  # with an address, they change their mind after this long
    noticed_after: timedelta  # how long an operator takes to notice the takeable order
    taken: bool  # False: nobody takes it (it expires)
    handling: timedelta
    completes: bool  # False: the operator cancels it
    order_id: str | None = None
    token: str | None = None
    takeable_since: datetime | None = None
    holder: int | None = None
    closed: bool = False


@dataclass(slots=True)
class DayPlan:
    day: date
    customers: list[Customer]
    wallets: dict[tuple[str, str], int]


def plan_day(*, day: date, orders: int, seed: int) -> DayPlan:
    """Who comes when with what, and what everyone will do: all of it from ``random.Random(seed)``."""
    rng = random.Random(seed)  # noqa: S311  (a reproducible simulation, not a secret)
    start = datetime.combine(day, time(0), tzinfo=UTC)
    hours = rng.choices(range(24), weights=HOURLY_PROFILE, k=orders)
    moments = sorted(start + timedelta(hours=h, seconds=rng.uniform(0, 3600)) for h in hours)
    customers = []
    for index, moment in enumerate(moments):
        market = rng.choices(MARKETS, weights=[m.share for m in MARKETS])[0]
        exponent = rng.uniform(math.log10(market.low), math.log10(market.high))
        amount = Decimal(str(round(10**exponent, market.precision)))
        customers.append(
            Customer(
                index=index,
                at=moment,
                market=market,
                amount=max(amount, market.low),
                patience=timedelta(minutes=rng.expovariate(1 / 30)),
                cancels_before_take=(timedelta(minutes=rng.uniform(1, 20)) if rng.random() < 0.07 else None),
                noticed_after=timedelta(minutes=rng.expovariate(1 / 6)),
                taken=rng.random() > 0.05,
                handling=min(timedelta(minutes=2 + rng.expovariate(1 / 10)), MAX_HANDLING),
                completes=rng.random() < 0.85,
            )
        )
    scale = orders / 300
    wallets = {(m.currency, m.network): max(1, round(m.wallets_per_300 * scale)) for m in MARKETS}
    return DayPlan(day=day, customers=customers, wallets=wallets)


def notifier_stand_in() -> FastAPI:
    """Accepts every event as the notifier would, sends nothing."""
    app = FastAPI()

    @app.post("/v1/events")
    async def one(request: Request) -> dict[str, str]:
        return {"status": "processed", "event_id": (await request.json())["id"]}

    @app.post("/v1/events/batch")
    async def batch(request: Request) -> dict[str, Any]:
        events = (await request.json())["events"]
        return {"receipts": [{"event_id": e["id"], "status": "processed"} for e in events]}

    return app


def route(client: Any, app: FastAPI) -> None:
    """Send a peer client's requests to ``app`` in this process."""
    client.http = httpx.AsyncClient(
        base_url=client.base_url,
        transport=httpx.ASGITransport(app=app),
        timeout=httpx.Timeout(client.timeout_seconds),
        headers=client.headers,
    )


@dataclass(frozen=True, slots=True)
class DatabaseUrls:
    order_api: str | None = None
    wallet_pool: str | None = None


@dataclass
class Desk:
    """order-api and wallet-pool in this process, wired to each other, their workers run by hand."""

    order_api: FastAPI
    wallet_pool: FastAPI
    orders: httpx.AsyncClient
    pool: httpx.AsyncClient
    admin_token: str
    pool_admin_key: str
    passes: list[Callable[[], Awaitable[int]]] = field(default_factory=list)
    relays: list[OutboxRelay] = field(default_factory=list)

    async def settle(self) -> None:
        """Deliver the outbox events committed since the last delivery (each relay woken by a commit that
        queued one, as in the running service), until no relay is woken."""
        while woken := [relay for relay in self.relays if relay.woken]:
            for relay in woken:
                await relay.run_pass()

    async def sweep(self) -> int:
        """The desk's periodic sweeps (expiry, the queue), then what they announced; how many rows they moved.
        Every delivery succeeds in process, so no relay has a retry to poll for."""
        moved = 0
        for sweep in self.passes:
            moved += await sweep()
        await self.settle()
        return moved


class SeedRefused(Exception):
    """The target looks like a real desk: a seeded day would mix made-up orders into it."""


@asynccontextmanager
async def built_desk(var_dir: Path, urls: DatabaseUrls, *, force: bool = False) -> AsyncIterator[Desk]:
    """The two services as ``make run`` configures them (``urls`` overriding their databases). Refused
    (:class:`SeedRefused`) in production, and on an order-api database that has orders already unless
    ``force``."""
    from order_api.main import create_app as create_order_api
    from order_api.orders.models import Order
    from order_api.settings import Settings as OrderApiSettings
    from order_api.workers.sweeper import expire_overdue_orders
    from wallet_pool.main import create_app as create_wallet_pool
    from wallet_pool.settings import Settings as WalletPoolSettings
    from wallet_pool.workers.queue_sweeper import QueueSweeper

    dev = devstack.dev_environment(var_dir)
    order_env = {
        **dev.envs["order-api"],
        # Customers come from many networks (X-Forwarded-For from this process), as on a real day.
        "ORDER_API_TRUSTED_PROXIES": '["127.0.0.0/8"]',
        "ORDER_API_LOG_LEVEL": "WARNING",  # a line per request of a whole day says nothing
        **({"ORDER_API_DATABASE_URL": urls.order_api} if urls.order_api else {}),
    }
    pool_env = {
        **dev.envs["wallet-pool"],
        "WALLET_POOL_LOG_LEVEL": "WARNING",
        **({"WALLET_POOL_DATABASE_URL": urls.wallet_pool} if urls.wallet_pool else {}),
    }
    with devstack.environment(order_env):
        order_settings = load_settings(OrderApiSettings)
    with devstack.environment(pool_env):
        pool_settings = load_settings(WalletPoolSettings)
    if PRODUCTION in (order_settings.environment, pool_settings.environment):
        raise SeedRefused("Refusing to seed a production desk (ORDER_API_/WALLET_POOL_ENVIRONMENT).")
    order_api = create_order_api(order_settings.model_copy(update={"redis_url": None}))
    wallet_pool = create_wallet_pool(pool_settings.model_copy(update={"redis_url": None}))
    notifier = notifier_stand_in()
    order_runtime = service_state(order_api).runtime
    pool_runtime = service_state(wallet_pool).runtime
    route(order_runtime.peers["wallet-pool"], wallet_pool)
    route(order_runtime.peers["notifier"], notifier)
    route(pool_runtime.peers["order-api"], order_api)
    route(pool_runtime.peers["notifier"], notifier)
    protection, metrics = context_of(order_api).protection, context_of(order_api).metrics
    sweeper = QueueSweeper(database=pool_runtime.database, settings=pool_settings)

    async def expire() -> int:
        return await expire_overdue_orders(
            database=order_runtime.database, protection=protection, metrics=metrics
        )

    async with AsyncExitStack() as stack:
        for runtime in (order_runtime, pool_runtime):
            stack.push_async_callback(runtime.stop)  # closes the database and the peer clients; no worker ran
        async with order_runtime.database.sessionmaker() as session:
            has_orders = await session.scalar(select(Order.id).limit(1)) is not None
        if has_orders and not force:
            raise SeedRefused("The order-api database has orders already; --force to seed it anyway.")
        orders = await stack.enter_async_context(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=order_api), base_url="http://order-api")
        )
        pool = await stack.enter_async_context(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=wallet_pool), base_url="http://wallet-pool")
        )
        yield Desk(
            order_api=order_api,
            wallet_pool=wallet_pool,
            orders=orders,
            pool=pool,
            admin_token=dev.credentials["admin_token"],
            pool_admin_key=dev.credentials["wallet_pool_admin_key"],
            # The queue sweeper hands out wallets whose reuse cool-down has passed: none to wait for without one.
            passes=[expire, *([sweeper.run_once] if pool_settings.reuse_cooldown_seconds else [])],
            relays=[
                w for r in (order_runtime, pool_runtime) for w in r.workers if isinstance(w, OutboxRelay)
            ],
        )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def ok(response: httpx.Response, *expected: int) -> dict[str, Any]:
    if response.status_code not in (expected or (200,)):
        raise SystemExit(
            f"seed-day: {response.request.method} {response.request.url.path} answered "
            f"{response.status_code}: {response.text}"
        )
    body: dict[str, Any] = response.json()
    return body


@dataclass
class DayReport:
    orders: int = 0
    queued_at_intake: int = 0
    taken: int = 0
    completed: int = 0
    cancelled_by_operator: int = 0
    cancelled_by_customer: int = 0
    wallets: int = 0
    operators: list[str] = field(default_factory=list)


class Day:
    """Plays a :class:`DayPlan` on a :class:`Desk`: every action at its moment, in time order."""

    def __init__(
        self, desk: Desk, plan: DayPlan, clock: SimulatedClock, *, seed: int, until: datetime
    ) -> None:
        self.desk = desk
        self.plan = plan
        self.clock = clock
        self.seed = seed
        self.until = until
        self.report = DayReport()
        self.operators: list[dict[str, Any]] = []
        self.held: list[int] = []
        self.cap: int = context_of(desk.order_api).settings.operator_max_held_orders
        self.by_order: dict[str, Customer] = {}
        self.agenda: list[tuple[datetime, int, str, int]] = []
        self._sequence = 0
        self.lifetime = timedelta(0)  # the longest an order stays open untaken (from the settings, in play)

    def at(self, moment: datetime, action: str, customer: int = -1) -> None:
        self._sequence += 1
        heapq.heappush(self.agenda, (moment, self._sequence, action, customer))

    async def open_desk(self) -> None:
        self.clock.set(datetime.combine(self.plan.day, time(0), tzinfo=UTC) - timedelta(minutes=30))
        start = 100_000 + self.seed * 10_000
        for (currency, network), count in self.plan.wallets.items():
            addresses = [
                demo_address(currency=currency, network=network, seed=start + n) for n in range(count)
            ]
            body = {"currency": currency, "network": network, "addresses": addresses}
            ok(
                await self.desk.pool.post("/v1/wallets", json=body, headers=bearer(self.desk.pool_admin_key)),
                201,
            )
            self.report.wallets += count
        for n in range(OPERATORS):
            body = {"name": f"Day operator {n + 1} ({self.plan.day}, seed {self.seed})", "role": "operator"}
            hired = ok(
                await self.desk.orders.post(
                    "/v1/admin/operators", json=body, headers=bearer(self.desk.admin_token)
                ),
                201,
            )
            self.operators.append(hired)
            self.held.append(0)
            self.report.operators.append(hired["id"])

    async def play(self) -> DayReport:
        await self.open_desk()
        for customer in self.plan.customers:
            self.at(customer.at, "arrive", customer.index)
        end_of_arrivals = datetime.combine(self.plan.day, time(0), tzinfo=UTC) + timedelta(days=1)
        # No order of the day is open after this: the longest a customer may wait for an address, then for
        # their deposit, then the longest handling.
        rules = context_of(self.desk.order_api).settings.currencies
        self.lifetime = max(
            timedelta(minutes=r.queued_minutes + r.awaiting_deposit_minutes) for r in rules.values()
        )
        last_close = end_of_arrivals + self.lifetime + MAX_HANDLING + ROUND
        self.until = min(self.until, last_close)
        moment = datetime.combine(self.plan.day, time(0), tzinfo=UTC)
        while self.agenda or (moment < self.until and not self._all_closed(end_of_arrivals, moment)):
            next_round = moment + ROUND
            if self.agenda and self.agenda[0][0] < next_round:
                when, _, action, index = heapq.heappop(self.agenda)
                if when > self.until:
                    break
                self.clock.set(when)
                await getattr(self, action)(self.plan.customers[index])
                await self.desk.settle()
                continue
            if next_round > self.until:
                break
            if not any(self._may_be_open(c) for c in self.by_order.values()):
                # Nothing open: the sweeps and the operators have nothing to do until the next arrival.
                if not self.agenda:
                    break
                skipped = (self.agenda[0][0] - moment) // ROUND
                if skipped >= 1:
                    moment += skipped * ROUND
                    continue
            moment = next_round
            self.clock.set(moment)
            if await self.desk.sweep():
                await self.learn_closures()
            await self.operators_look()
        return self.report

    def _all_closed(self, end_of_arrivals: datetime, moment: datetime) -> bool:
        return moment >= end_of_arrivals and all(c.closed for c in self.plan.customers if c.order_id)

    async def arrive(self, customer: Customer) -> None:
        market = customer.market
        body = {
            "email": f"day{self.seed}.customer{customer.index}@example.com",
            "from_currency": market.currency,
            "from_network": market.network,
            "to_currency": market.to_currency,
            "to_network": market.payout_network,
            "amount": str(customer.amount),
            "payout_address": demo_address(
                currency=market.to_currency,
                network=market.payout_network,
                seed=PAYOUT_SEEDS[market.to_currency],
            ),
        }
        network = ipaddress.ip_address("198.18.0.0") + (self.seed * 7919 + customer.index) % 131_072
        order = ok(
            await self.desk.orders.post("/v1/orders", json=body, headers={"X-Forwarded-For": str(network)}),
            201,
        )
        customer.order_id, customer.token = order["id"], order["session_token"]
        self.by_order[order["id"]] = customer
        self.report.orders += 1
        if order["status"] == "queued":
            self.report.queued_at_intake += 1
            self.at(self.clock.now + customer.patience, "give_up", customer.index)
        if customer.cancels_before_take is not None:
            self.at(self.clock.now + customer.cancels_before_take, "change_mind", customer.index)

    async def _customer_cancels(self, customer: Customer, *, unless_beyond: tuple[str, ...]) -> None:
        if customer.closed or customer.token is None:
            return
        auth = bearer(customer.token)
        order = ok(await self.desk.orders.get(f"/v1/orders/{customer.order_id}", headers=auth))
        if order["status"] not in unless_beyond:
            return
        ok(await self.desk.orders.post(f"/v1/orders/{customer.order_id}/cancel", headers=auth))
        customer.closed = True
        self.report.cancelled_by_customer += 1

    async def give_up(self, customer: Customer) -> None:
        """A queued customer who still has no address gives up."""
        await self._customer_cancels(customer, unless_beyond=("queued", "awaiting_address"))

    async def change_mind(self, customer: Customer) -> None:
        """A customer cancels before anyone took the order."""
        await self._customer_cancels(
            customer, unless_beyond=("queued", "awaiting_address", "awaiting_deposit")
        )

    async def operators_look(self) -> None:
        """Operators read the takeable list; what they have noticed by now, the least busy of them takes."""
        if not any(self._may_be_takeable(c) for c in self.by_order.values()):
            return  # nothing to take: nobody needs to look
        listing = ok(
            await self.desk.orders.get(
                "/v1/operator/orders", params={"limit": 200}, headers=bearer(self.operators[0]["token"])
            )
        )
        listed = {item["id"] for item in listing["items"]}
        for waiting in self.by_order.values():
            if (
                waiting.takeable_since is not None
                and waiting.holder is None
                and waiting.order_id not in listed
            ):
                waiting.closed = True  # it left the list untaken: expired (or cancelled)
        for item in listing["items"]:
            customer = self.by_order.get(item["id"])
            if customer is None or customer.closed:
                continue
            if customer.takeable_since is None:
                customer.takeable_since = self.clock.now
            if not customer.taken or self.clock.now < customer.takeable_since + customer.noticed_after:
                continue
            holder = min(range(len(self.operators)), key=lambda n: (self.held[n], n))
            if self.held[holder] >= self.cap:
                return  # everyone is busy: the order waits for the next look
            response = await self.desk.orders.post(
                f"/v1/operator/orders/{item['id']}/take", headers=bearer(self.operators[holder]["token"])
            )
            if response.status_code == 409:  # closed or taken in between: look again next round
                continue
            ok(response)
            customer.holder = holder
            self.held[holder] += 1
            self.report.taken += 1
            self.at(self.clock.now + customer.handling, "finish", customer.index)

    async def learn_closures(self) -> None:
        """Which of the orders still open to the simulation the sweeps closed (expired): one read."""
        from order_api.orders.lifecycle import TERMINAL
        from order_api.orders.models import Order

        open_ids = [c.order_id for c in self.by_order.values() if not c.closed]
        async with service_state(self.desk.order_api).runtime.database.sessionmaker() as session:
            closed = await session.scalars(
                select(Order.id).where(Order.id.in_(open_ids), Order.status.in_([s.value for s in TERMINAL]))
            )
            for order_id in closed:
                self.by_order[order_id].closed = True

    def transaction(self, customer: Customer) -> dict[str, Any]:
        """What moved: the ordered deposit, and a payout on the network the customer asked for."""
        market, key = customer.market, f"day{self.seed}/{customer.index}"
        return {
            "deposit": {
                "tx_hash": demo_transaction_hash(network=market.network, seed=f"deposit/{key}"),
                "amount": str(customer.amount),
            },
            "payout": {
                "tx_hash": demo_transaction_hash(network=market.payout_network, seed=f"payout/{key}"),
                "amount": str(payout(customer.amount, market.currency, market.to_currency)),
            },
        }

    def _may_be_open(self, customer: Customer) -> bool:
        """Whether the order may still be open, as far as the simulation knows."""
        return not customer.closed and self.clock.now < customer.at + self.lifetime + MAX_HANDLING + ROUND

    def _may_be_takeable(self, customer: Customer) -> bool:
        """Whether an operator would take this order if it were on the list now."""
        return (
            customer.taken
            and not customer.closed
            and customer.holder is None
            and self.clock.now < customer.at + self.lifetime
        )

    async def finish(self, customer: Customer) -> None:
        """The operator who holds the order completes it, or cancels it."""
        if customer.holder is None:
            return
        body: dict[str, Any] = {"status": "cancelled", "comment": "The deposit never came."}
        if customer.completes:
            body = {"status": "completed", "comment": "Paid out.", "transaction": self.transaction(customer)}
        ok(
            await self.desk.orders.post(
                f"/v1/operator/orders/{customer.order_id}/status",
                json=body,
                headers=bearer(self.operators[customer.holder]["token"]),
            )
        )
        self.held[customer.holder] -= 1
        customer.closed = True
        if customer.completes:
            self.report.completed += 1
        else:
            self.report.cancelled_by_operator += 1


async def seed_day(
    *,
    var_dir: Path,
    urls: DatabaseUrls,
    day: date,
    orders: int,
    seed: int,
    until: datetime | None = None,
    force: bool = False,
) -> DayReport:
    """Make the day on the desk; returns what was done. ``until``: stop there (default: now)."""
    plan = plan_day(day=day, orders=orders, seed=seed)
    async with built_desk(var_dir, urls, force=force) as desk:
        with SimulatedClock(datetime.combine(day, time(0), tzinfo=UTC)) as clock:
            return await Day(desk, plan, clock, seed=seed, until=until or datetime.now(UTC)).play()


def parser() -> argparse.ArgumentParser:
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--orders", type=int, default=300, help="Arrivals in the day (default 300).")
    p.add_argument("--seed", type=int, default=1, help="The same seed makes the same day (default 1).")
    p.add_argument(
        "--day", type=date.fromisoformat, default=yesterday, help="The UTC date (default yesterday)."
    )
    p.add_argument(
        "--var-dir", type=Path, default=devstack.ROOT / "var", help="make run's var/ (credentials)."
    )
    p.add_argument("--order-api-database-url", help="Instead of ORDER_API_DATABASE_URL or the embedded one.")
    p.add_argument(
        "--wallet-pool-database-url", help="Instead of WALLET_POOL_DATABASE_URL or the embedded one."
    )
    p.add_argument("--force", action="store_true", help="Seed an order-api database that has orders already.")
    return p


def main(argv: Iterable[str] | None = None) -> int:
    args = parser().parse_args(None if argv is None else list(argv))
    urls = DatabaseUrls(order_api=args.order_api_database_url, wallet_pool=args.wallet_pool_database_url)
    try:
        report = asyncio.run(
            seed_day(
                var_dir=args.var_dir,
                urls=urls,
                day=args.day,
                orders=args.orders,
                seed=args.seed,
                force=args.force,
            )
        )
    except SeedRefused as refused:
        print(refused, file=sys.stderr)
        return 2
    print(
        f"seeded {args.day}: {report.orders} orders ({report.queued_at_intake} queued at intake), "
        f"{report.taken} takes, {report.completed} completed, {report.cancelled_by_operator} cancelled by "
        f"operators, {report.cancelled_by_customer} by customers, the rest expired or open; "
        f"{report.wallets} wallets, {len(report.operators)} operators"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

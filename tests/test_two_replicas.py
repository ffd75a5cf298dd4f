"""Two replicas of every service behave like one. The whole desk runs as two processes per service (each on a
port of its own) on one PostgreSQL database and one Redis, behind a round robin per service that stands in for a
Kubernetes Service: every call between services, every Telegram webhook delivery and the load's customers
alternate between the replicas. The tests' own requests go to one replica, then the other, on purpose."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
import pytest

from coin_addresses import demo_address
from desk_testing.faults import (
    BOT_OPERATOR,
    TAKEN_BY_BOT,
    Client,
    FaultStack,
    Intent,
    Traffic,
    card_of,
    check_messages,
    customer,
    drained,
    fault_stack,
    kill,
    mail_by_order,
    now_utc,
    run_fault,
    snapshot,
)
from order_api.testing import order_body
from servicekit.testing import eventually
from telegram_gateway.testing import OPERATORS_CHAT_ID

pytestmark = pytest.mark.timeout(420)  # the first test includes starting the desk

ADMIN_EMAIL = "ops@desk.test"
PAYOUT_BTC = demo_address(currency="BTC", network="bitcoin", seed=9999)


@pytest.fixture(scope="module")
async def desk(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[FaultStack]:
    # eight processes on one PostgreSQL beside the other test worker: a smaller pool each keeps the desk well
    # inside the server's default max_connections (100), as the manifests' connection budget does
    env = {
        "order-api": {"ORDER_API_DATABASE_POOL_SIZE": "6"},
        "telegram-gateway": {"TELEGRAM_GATEWAY_DATABASE_POOL_SIZE": "4"},
        "wallet-pool": {
            "WALLET_POOL_DATABASE_POOL_SIZE": "6",
            "WALLET_POOL_POOL_WATCH_SECONDS": "0.2",
            "WALLET_POOL_POOL_LOW_THRESHOLD_PERCENT_BY_CURRENCY": json.dumps({"USDT": 30}),
        },
        "notifier": {
            "NOTIFIER_DATABASE_POOL_SIZE": "6",
            # the SMTP server shares the test's process with the balancers and the load: a slow answer from it
            # must not pass for a failed send (sent again, the mail would arrive twice)
            "NOTIFIER_SMTP_TIMEOUT_SECONDS": "15",
            "NOTIFIER_ADMIN_EMAILS": json.dumps([ADMIN_EMAIL]),
            "NOTIFIER_ALERT_CHECK_SECONDS": "0.2",
            "NOTIFIER_ALERT_WARNING_TO_CRITICAL_SECONDS": "600",
        },
    }
    async with fault_stack(
        tmp_path_factory.mktemp("replicas"), replicas=2, env=env, prefix="desk_replicas"
    ) as started:
        yield started


@asynccontextmanager
async def replicas(desk: FaultStack, service: str) -> AsyncIterator[list[httpx.AsyncClient]]:
    """A client per replica of ``service``, talking to it directly."""
    clients = [httpx.AsyncClient(base_url=p.url, timeout=15) for p in desk.replicas(service)]
    try:
        yield clients
    finally:
        for client in clients:
            await client.aclose()


def admin(desk: FaultStack) -> dict[str, str]:
    return {"Authorization": f"Bearer {desk.stack.keys.admin}"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def place(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await client.post(
        "/v1/orders", json=order_body(f"{uuid.uuid4().hex[:12]}@replicas.test", **body)
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def import_wallets(
    desk: FaultStack, *, currency: str, network: str, count: int, seed: int
) -> list[str]:
    addresses = [demo_address(currency=currency, network=network, seed=seed + i) for i in range(count)]
    async with replicas(desk, "wallet-pool") as (_, second):
        response = await second.post(
            "/v1/wallets",
            json={"currency": currency, "network": network, "addresses": addresses},
            headers=bearer(desk.stack.keys.wallet_pool_admin),
        )
    assert response.status_code == 201, response.text
    return addresses


async def fetch(desk: FaultStack, query: str, *args: Any) -> list[asyncpg.Record]:
    connection = await desk.connect()
    try:
        return list(await connection.fetch(query, *args))
    finally:
        await connection.close()


async def customers(desk: FaultStack, *, label: str, bot_share: float, count: int = 10) -> list[Intent]:
    """``count`` customers at once through order-api's balancer (so alternating between its replicas), each
    followed through as the fault suite's load does: cancelled, or taken (through the API or the bot's card)
    and completed."""
    client = Client(desk, Traffic())
    rng = random.Random(label)
    intents = [Intent(key=str(uuid.uuid4()), email=f"{label}-{n}@replicas.test") for n in range(count)]
    try:
        await asyncio.gather(*(customer(client, i, rng=rng, bot_share=bot_share) for i in intents))
    finally:
        await client.aclose()
    return intents


async def settled(desk: FaultStack) -> None:
    """Nothing pending anywhere: outboxes delivered, notifications sent."""
    seconds, state = await drained(desk, within=60)
    assert seconds is not None, f"work still pending: {state.pending_work}"


async def test_racing_takes_on_both_replicas_have_one_winner(desk: FaultStack) -> None:
    """Four operators take each order at once, two through each order-api replica, while the bot's operator
    presses Take on its card (the press reaching either gateway): one of them gets it, every other is told it
    is taken."""
    async with replicas(desk, "order-api") as apis:
        operators = []
        for n in range(4):
            made = await apis[n % 2].post(
                "/v1/admin/operators", json={"name": f"Racer {n}", "role": "operator"}, headers=admin(desk)
            )
            assert made.status_code == 201, made.text
            operators.append(made.json())
        orders = [await place(apis[n % 2]) for n in range(3)]
        for order in orders:

            async def card(order_id: str = order["id"]) -> Any:
                found = card_of(desk.bot_api, order_id)
                return found if found is not None and found.buttons() else None

            posted = await eventually(card, within=30, message=f"the card of {order['id']}")
            takes = [
                apis[n % 2].post(f"/v1/operator/orders/{order['id']}/take", headers=bearer(op["token"]))
                for n, op in enumerate(operators)
            ]
            press = desk.bot_api.press(BOT_OPERATOR, posted, posted.button("Take").callback_data or "")
            answers, pressed = await asyncio.gather(asyncio.gather(*takes), press)
            assert pressed.status == 200
            bot_won = ((await desk.bot_api.answer_to(pressed.query_id or "")).text or "").endswith(
                TAKEN_BY_BOT
            )
            statuses = sorted(a.status_code for a in answers)
            assert statuses.count(200) + bot_won == 1, (statuses, bot_won)
            assert set(statuses) <= {200, 409}, [a.text for a in answers]
            assert {a.json()["code"] for a in answers if a.status_code == 409} <= {"order_already_taken"}
            winner = (
                BOT_OPERATOR.first_name
                if bot_won
                else next(
                    op["name"] for op, a in zip(operators, answers, strict=True) if a.status_code == 200
                )
            )
            seen = await apis[1].get(f"/v1/orders/{order['id']}", headers=bearer(order["session_token"]))
            assert seen.json()["status"] == "in_progress", seen.text
            [row] = await fetch(
                desk,
                'SELECT op.name FROM order_api."order" o JOIN order_api.operator op ON op.id = o.operator_id '
                "WHERE o.id = $1",
                order["id"],
            )
            assert row["name"] == winner


async def test_a_release_hands_the_address_to_the_queue_head_once(desk: FaultStack) -> None:
    """One ETH address, three customers: the first holds it, two wait. The first order is cancelled on both
    order-api replicas at once; the address goes to the head of the queue, once, and its customer is emailed
    it once; the second in the queue keeps waiting, first now."""
    [address] = await import_wallets(desk, currency="ETH", network="ethereum", count=1, seed=7000)
    eth = {"from_currency": "ETH", "amount": "0.01"}
    async with replicas(desk, "order-api") as (one, two):
        holder, head, second = await place(one, **eth), await place(two, **eth), await place(one, **eth)
        assert (holder["status"], holder["deposit_address"]) == ("awaiting_deposit", address)
        assert (head["status"], second["status"]) == ("queued", "queued")
        cancels = await asyncio.gather(
            *(
                client.post(f"/v1/orders/{holder['id']}/cancel", headers=bearer(holder["session_token"]))
                for client in (one, two)
            )
        )
        assert 200 in [c.status_code for c in cancels], [c.text for c in cancels]
        assert {c.status_code for c in cancels} <= {200, 409}, [c.text for c in cancels]

        async def order(client: httpx.AsyncClient, placed: dict[str, Any]) -> dict[str, Any]:
            response = await client.get(f"/v1/orders/{placed['id']}", headers=bearer(placed["session_token"]))
            return dict(response.json())

        await eventually(
            lambda: order(two, head),
            until=lambda o: o["status"] == "awaiting_deposit",
            within=30,
            message="the queue head gets the address",
        )
        await settled(desk)
        got, waiting = await order(one, head), await order(two, second)
    assert got["deposit_address"] == address
    assert (waiting["status"], waiting["queue_position"], waiting.get("deposit_address")) == (
        "queued",
        1,
        None,
    )
    assigned = await fetch(
        desk,
        "SELECT payload FROM wallet_pool.outbox WHERE event_type = 'wallet.assigned'",
    )
    handed = Counter(json.loads(r["payload"])["order_id"] for r in assigned)
    assert (handed[head["id"]], handed[second["id"]]) == (1, 0), handed
    mail = mail_by_order(desk.smtp.messages)
    assert mail[head["id"]]["address_ready"] == 1, mail[head["id"]]
    assert mail.get(second["id"], Counter())["address_ready"] == 0


async def test_each_fact_gives_one_email_and_one_card(desk: FaultStack) -> None:
    """Customers through both order-api replicas, operators taking and completing through the API and the bot
    (webhooks spread over both gateways), events relayed by both replicas of each service and sent by both
    notifiers: every order gets one "created" email, one card and one email when it closes."""
    since = now_utc()
    intents = await customers(desk, label="fact", bot_share=0.5)
    assert all(i.order_id for i in intents), [(i.refused, i.gave_up) for i in intents]
    await settled(desk)
    state = await snapshot(desk)
    findings, tolerated = check_messages(desk, state, since=since, notifier_killed=False)
    assert not findings, "\n".join(map(str, findings))
    assert tolerated == 0
    for service, balancer in desk.balancers.items():
        assert len(balancer.answered) == 2, f"{service}: {dict(balancer.answered)}"


async def test_each_pool_crossing_gives_one_alert(desk: FaultStack) -> None:
    """Both wallet-pool replicas watch the USDT (ERC20) pool every 0.2 s and both notifiers handle the alerts:
    the pool dropping below its threshold raises one alert, told once by email and once in Telegram, and its
    recovery resolves it, told once each too."""
    await import_wallets(desk, currency="USDT", network="ERC20", count=10, seed=8000)
    key = "pool.low:USDT:ERC20"
    usdt = {"from_currency": "USDT", "from_network": "ERC20", "amount": "20", "to_currency": "BTC",
            "to_network": None, "payout_address": PAYOUT_BTC}  # fmt: skip
    async with replicas(desk, "order-api") as apis, replicas(desk, "notifier") as notifiers:

        async def alerts(client: httpx.AsyncClient) -> list[dict[str, Any]]:
            response = await client.get("/v1/alerts", headers=bearer(desk.stack.keys.notifier_admin))
            assert response.status_code == 200, response.text
            return [a for a in response.json()["items"] if a["key"] == key]

        orders = [await place(apis[n % 2], **usdt) for n in range(8)]  # 2 of 10 free: 20 % < 30 %
        [raised] = await eventually(
            lambda: alerts(notifiers[0]), until=lambda found: len(found) == 1, within=30
        )
        assert raised["status"] == "open"
        for n, order in enumerate(orders[:2]):  # 4 of 10 free: 40 %, past 30 % + 5 %
            cancelled = await apis[n % 2].post(
                f"/v1/orders/{order['id']}/cancel", headers=bearer(order["session_token"])
            )
            assert cancelled.status_code == 200, cancelled.text
        [resolved] = await eventually(
            lambda: alerts(notifiers[1]),
            until=lambda found: len(found) == 1 and found[0]["status"] == "resolved",
            within=30,
        )
    assert resolved["id"] == raised["id"]
    await settled(desk)
    announced = Counter(
        r["event_type"]
        for r in await fetch(desk, "SELECT event_type, payload FROM wallet_pool.outbox")
        if r["event_type"].startswith("pool.") and "ERC20" in str(r["payload"])
    )
    assert announced == Counter({"pool.low": 1, "pool.recovered": 1}), announced
    pool = "USDT (ERC20)"  # how the alert names the pool
    emails = [
        str(m["Subject"]) for m in desk.smtp.messages if str(m["To"]) == ADMIN_EMAIL and pool in _text(m)
    ]
    assert len(emails) == 2, emails  # raised, resolved
    told = [
        m.text
        for m in desk.bot_api.chat_messages(OPERATORS_CHAT_ID)
        if pool in m.text and "usable addresses free" in m.text  # an alert, not an order's card
    ]
    assert len(told) == 2, told


def _text(message: Any) -> str:
    body = message.get_body(preferencelist=("plain",))
    return f"{message['Subject']}\n{body.get_content() if body is not None else ''}"


async def test_rate_limits_are_shared_by_the_replicas(desk: FaultStack) -> None:
    """Five one-time codes an hour per email address: five asked for alternately on the two replicas are sent,
    and the sixth is refused on either replica."""
    email = "limited@replicas.test"
    async with replicas(desk, "order-api") as apis:
        sent = [await apis[n % 2].post("/v1/auth/email-code", json={"email": email}) for n in range(5)]
        assert [r.status_code for r in sent] == [202] * 5, [r.text for r in sent]
        for client in apis:
            refused = await client.post("/v1/auth/email-code", json={"email": email})
            assert refused.status_code == 429, refused.text
            assert "retry-after" in refused.headers


async def test_outbox_events_are_delivered_once(desk: FaultStack) -> None:
    """Both replicas of each service relay their shared outbox side by side: every event the desk has written
    so far is delivered, and its receiver (either of its replicas) was handed it once."""
    await customers(desk, label="once", bot_share=0.3)
    await settled(desk)
    handed = Counter[str]()
    for balancer in desk.balancers.values():
        handed.update(balancer.events)
    for service in ("order-api", "wallet-pool"):
        table = service.replace("-", "_") + ".outbox"
        rows = await fetch(desk, f"SELECT id, destination, delivered_at FROM {table}")  # noqa: S608
        assert rows, f"{service} wrote no events"
        undelivered = [r["id"] for r in rows if r["delivered_at"] is None]
        assert not undelivered, f"{service}: {undelivered}"
        wrong = {r["id"]: handed[r["id"]] for r in rows if handed[r["id"]] != 1}
        assert not wrong, f"{service}'s events handed to their receiver other than once: {wrong}"
    for name, process in desk.processes.items():
        duplicates = [r for r in process.log_records() if r.get("event") == "duplicate event ignored"]
        assert not duplicates, f"{name} was handed events twice: {duplicates[:3]}"


async def test_killing_one_replica_mid_load_loses_nothing(desk: FaultStack) -> None:
    """Steady customers and operators; one order-api replica and one wallet-pool replica are killed (-9)
    mid-load and come back later: every order acknowledged exists once, every address is held by one order,
    every customer and operator is told each fact once, and the outboxes drain."""
    # a pace the surviving replicas carry alone while the killed ones restart (a minute on a busy machine):
    # this is about losing nothing, not about throughput
    outcome = await run_fault(desk, kill("order-api#2", "wallet-pool#2"), rate=2.0)
    assert not outcome.findings, "\n".join(map(str, outcome.findings))
    assert outcome.answers["201"] > 0, outcome.answers

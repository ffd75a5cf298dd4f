"""Importing, listing, disabling and enabling wallets, through the HTTP API."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from wallet_pool.main import create_app
from wallet_pool.testing import PoolApi, RunningApp, addresses, make_settings


def typo(address: str) -> str:
    """The same address with its last character changed: a checksum error."""
    return address[:-1] + ("q" if address[-1] != "q" else "p")


async def wallet_count(session: AsyncSession) -> int:
    return int((await session.execute(text("SELECT count(*) FROM wallet"))).scalar_one())


async def test_import_stores_addresses_normalised_as_free_wallets(api: PoolApi) -> None:
    btc = addresses("BTC", "bitcoin", 2)
    response = await api.import_wallets("btc", [f"  {btc[0].upper()} ", btc[1]])
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["imported"], body["currency"], body["network"]) == (2, "BTC", "bitcoin")
    assert [w["address"] for w in body["wallets"]] == btc
    assert {w["status"] for w in body["wallets"]} == {"free"}
    assert all(w["released_at"] is None and w["allocation_count"] == 0 for w in body["wallets"])

    eth = addresses("ETH", "ethereum", 1)[0]
    response = await api.import_wallets("ETH", [eth.lower()])
    assert response.json()["wallets"][0]["address"] == eth  # EIP-55 case

    usdt = await api.import_wallets("USDT", addresses("USDT", "ERC20", 1), network="erc20")
    assert (usdt.json()["network"], usdt.json()["wallets"][0]["network"]) == ("ERC20", "ERC20")
    default = await api.import_wallets("USDT", addresses("USDT", "TRC20", 1))
    assert default.json()["network"] == "TRC20"


async def test_a_bad_line_refuses_the_whole_import_naming_its_line(
    api: PoolApi, session: AsyncSession
) -> None:
    lines = addresses("BTC", "bitcoin", 4)
    lines[2] = typo(lines[2])
    response = await api.import_wallets("BTC", lines)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "validation_failed"
    assert problem["errors"] == [
        {
            "field": "addresses.2",
            "line": 3,
            "address": lines[2],
            "message": "bad checksum: the address has a typo",
            "type": "invalid_address",
        }
    ]
    assert "nothing was imported" in problem["detail"]
    assert await wallet_count(session) == 0


async def test_every_bad_line_is_reported(api: PoolApi, session: AsyncSession) -> None:
    good = addresses("USDT", "TRC20", 3)
    eth = addresses("ETH", "ethereum", 1)[0]
    response = await api.import_wallets("USDT", [good[0], "", eth, good[1], typo(good[2])], network="TRC20")
    assert response.status_code == 422
    errors = response.json()["errors"]
    assert [(e["line"], e["field"], e["type"]) for e in errors] == [
        (2, "addresses.1", "invalid_address"),
        (3, "addresses.2", "invalid_address"),
        (5, "addresses.4", "invalid_address"),
    ]
    assert "Ethereum" in errors[1]["message"]
    assert await wallet_count(session) == 0


async def test_duplicates_in_the_request_or_the_pool_are_refused(api: PoolApi, session: AsyncSession) -> None:
    btc = addresses("BTC", "bitcoin", 3)
    await api.stock("BTC", 1)  # btc[0] is in the pool now

    twice = await api.import_wallets("BTC", [btc[1], btc[2], btc[1].upper()])
    assert twice.status_code == 422
    assert twice.json()["errors"] == [
        {
            "field": "addresses.2",
            "line": 3,
            "address": btc[1].upper(),
            "message": "duplicate of line 1",
            "type": "duplicate_in_request",
        }
    ]

    again = await api.import_wallets("BTC", [btc[1], btc[0]])
    assert again.status_code == 422
    assert again.json()["errors"] == [
        {
            "field": "addresses.1",
            "line": 2,
            "address": btc[0],
            "message": "already in the pool (BTC/bitcoin)",
            "type": "already_in_pool",
        }
    ]
    # The same Ethereum address cannot serve two pools either.
    eth = addresses("ETH", "ethereum", 1)
    assert (await api.import_wallets("ETH", eth)).status_code == 201
    erc20 = await api.import_wallets("USDT", eth, network="ERC20")
    assert erc20.json()["errors"][0]["message"] == "already in the pool (ETH/ethereum)"
    assert await wallet_count(session) == 2


async def test_an_import_over_the_limit_or_for_an_unknown_pool_is_refused(
    pool_app: RunningApp, api: PoolApi
) -> None:
    limit = pool_app.settings.wallet_import_max_addresses
    too_many = await api.import_wallets("BTC", addresses("BTC", "bitcoin", limit + 1))
    assert too_many.status_code == 422
    assert too_many.json()["errors"][0]["field"] == "addresses"
    assert too_many.json()["errors"][0]["type"] == "too_long"

    for currency, network, field in (("DOGE", None, "currency"), ("USDT", "BEP20", "network")):
        response = await api.import_wallets(currency, addresses("BTC", "bitcoin", 1), network=network)
        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == field
    empty = await api.import_wallets("BTC", [])
    assert empty.status_code == 422
    assert empty.json()["errors"][0]["field"] == "addresses"


async def test_the_limit_is_a_setting(database_url: str) -> None:
    from servicekit.testing import running_app
    from wallet_pool.testing import KEYS

    app = create_app(make_settings(database_url, wallet_import_max_addresses=2))
    async with running_app(app) as client:
        response = await client.post(
            "/v1/wallets",
            json={"currency": "BTC", "addresses": addresses("BTC", "bitcoin", 3)},
            headers={"Authorization": f"Bearer {KEYS.admin}"},
        )
    assert response.status_code == 422
    assert "at most 2" in response.json()["errors"][0]["message"]


async def test_wallets_are_listed_a_page_at_a_time_stable_under_inserts(api: PoolApi) -> None:
    first = await api.stock("BTC", 5)
    eth = await api.stock("ETH", 2)
    seen: list[int] = []
    page = (await api.list_wallets(currency="BTC", limit=2)).json()
    seen += [w["id"] for w in page["items"]]
    await api.stock("BTC", 2, start=100)  # arrives while the client pages
    cursor = page["next_cursor"]
    while cursor:
        page = (await api.list_wallets(currency="BTC", limit=2, cursor=cursor)).json()
        seen += [w["id"] for w in page["items"]]
        cursor = page["next_cursor"]
    assert seen[:5] == first
    assert len(seen) == len(set(seen)) == 7

    everything = (await api.list_wallets(limit=200)).json()
    assert [w["id"] for w in everything["items"]] == sorted(w["id"] for w in everything["items"])
    assert everything["next_cursor"] is None
    assert {w["id"] for w in everything["items"]} >= set(first + eth)
    assert [w["id"] for w in (await api.list_wallets(currency="eth")).json()["items"]] == eth
    assert (await api.list_wallets(network="trc20")).json()["items"] == []
    assert [w["id"] for w in (await api.list_wallets(network="Ethereum")).json()["items"]] == eth


async def test_list_filters_by_status_and_refuses_bad_paging(api: PoolApi) -> None:
    ids = await api.stock("BTC", 3)
    await api.disable(ids[1])
    disabled = (await api.list_wallets(status="disabled")).json()["items"]
    assert [w["id"] for w in disabled] == [ids[1]]
    assert [w["id"] for w in (await api.list_wallets(status="free")).json()["items"]] == [ids[0], ids[2]]

    for params in ({"limit": 201}, {"limit": 0}, {"cursor": "not-a-cursor"}, {"status": "lost"}):
        response = await api.list_wallets(**params)
        assert response.status_code == 422, params
        assert response.headers["content-type"] == "application/problem+json"


async def test_disable_and_enable_a_free_wallet(api: PoolApi) -> None:
    (wallet_id,) = await api.stock("BTC", 1)
    disabled = await api.disable(wallet_id)
    assert disabled.status_code == 200
    assert (disabled.json()["status"], disabled.json()["disable_on_release"]) == ("disabled", False)
    assert (await api.disable(wallet_id)).json()["status"] == "disabled"  # again: no change
    # A disabled wallet is never handed out.
    assert (await api.allocate("order-1")).status_code == 202

    enabled = await api.enable(wallet_id)
    assert enabled.status_code == 200
    # Enabling it hands it to the order waiting in its pool at once.
    assert (enabled.json()["status"], enabled.json()["order_id"]) == ("reserved", "order-1")
    assert (await api.allocation("order-1")).json()["status"] == "allocated"


async def test_a_reserved_wallet_is_disabled_when_released_not_handed_on(
    api: PoolApi, session: AsyncSession
) -> None:
    (wallet_id,) = await api.stock("BTC", 1)
    assert (await api.allocate("holder")).status_code == 201
    assert (await api.allocate("waiting")).status_code == 202

    flagged = (await api.disable(wallet_id)).json()
    assert (flagged["status"], flagged["order_id"], flagged["disable_on_release"]) == (
        "reserved",
        "holder",
        True,
    )

    released = (await api.release("holder")).json()
    assert released["handed_to_order_id"] is None
    wallet = (await api.list_wallets()).json()["items"][0]
    assert (wallet["status"], wallet["order_id"], wallet["disable_on_release"]) == ("disabled", None, False)
    assert (await api.allocation("waiting")).json()["status"] == "queued"
    events = await session.execute(text("SELECT count(*) FROM outbox"))
    assert events.scalar_one() == 0


async def test_enable_cancels_a_pending_disable(api: PoolApi) -> None:
    (wallet_id,) = await api.stock("BTC", 1)
    await api.allocate("holder")
    await api.disable(wallet_id)
    enabled = (await api.enable(wallet_id)).json()
    assert (enabled["status"], enabled["disable_on_release"]) == ("reserved", False)
    await api.allocate("waiting")
    assert (await api.release("holder")).json()["handed_to_order_id"] == "waiting"


async def test_unknown_wallets_are_404_and_writes_need_the_scope(api: PoolApi, reader_api: PoolApi) -> None:
    for response in (await api.disable(999_999), await api.enable(999_999)):
        assert response.status_code == 404
        assert response.json()["code"] == "wallet_not_found"
    (wallet_id,) = await api.stock("BTC", 1)
    assert (await reader_api.list_wallets()).status_code == 200
    for response in (
        await reader_api.import_wallets("BTC", addresses("BTC", "bitcoin", 1, start=50)),
        await reader_api.disable(wallet_id),
        await reader_api.enable(wallet_id),
    ):
        assert response.status_code == 403
        assert response.json()["code"] == "scope_missing"
    assert (await api.client.get("/v1/wallets")).status_code == 401


async def test_an_import_serves_the_orders_waiting_in_its_pool(api: PoolApi, session: AsyncSession) -> None:
    for order, priority in (("first", "normal"), ("second", "normal"), ("vip", "vip")):
        assert (await api.allocate(order, priority=priority)).status_code == 202
    response = await api.import_wallets("BTC", addresses("BTC", "bitcoin", 2))
    wallets = response.json()["wallets"]
    assert [(w["status"], w["order_id"]) for w in wallets] == [("reserved", "vip"), ("reserved", "first")]
    assert (await api.allocation("second")).json()["position"] == 1
    announced = await session.execute(
        text("SELECT aggregate_id FROM outbox WHERE event_type = 'wallet.assigned' ORDER BY created_at")
    )
    assert announced.scalars().all() == ["vip", "first"]

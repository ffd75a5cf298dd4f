"""``GET /v1/currencies``: what the website builds its order form from. It says what the settings say and what
intake applies, and it is cacheable (strong ``ETag``, ``Cache-Control: public``, ``304``)."""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from typing import Any

import pytest

from coin_addresses import ADDRESS_FORMATS, SUPPORTED, demo_address
from order_api.currencies.service import currency_catalogue
from order_api.orders.errors import OrderInputError
from order_api.orders.intake import validate_order
from order_api.orders.schemas import OrderCreate
from order_api.testing import OrderApiRunner, SettingsFactory

CHANGED: dict[str, Any] = {
    "BTC": {
        "precision": 6,
        "min_amount": "0.002",
        "max_amount": "2.5",
        "awaiting_deposit_minutes": 45,
        "queued_minutes": 90,
    },
    "ETH": None,
    "LTC": {"precision": 8, "min_amount": "0.1", "max_amount": "100"},
}
"""``ORDER_API_CURRENCIES`` as a desk would change it (laid over the defaults): BTC's every rule, no more ETH,
and a currency no network is known for."""


async def test_the_catalogue_is_the_settings_field_by_field(order_api: OrderApiRunner) -> None:
    async with order_api(currencies=CHANGED) as running:
        answer = await running.client.get("/v1/currencies")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    listed = answer.json()["currencies"]
    # LTC has no network the desk can validate addresses on (intake refuses it): it is not offered.
    assert [currency["code"] for currency in listed] == ["BTC", "USDT"]
    for currency in listed:
        rules = running.settings.currencies[currency["code"]]
        networks = SUPPORTED[currency["code"]]
        assert currency == {
            "code": currency["code"],
            "precision": rules.precision,
            "min_amount": format(rules.min_amount, "f"),
            "max_amount": format(rules.max_amount, "f"),
            "default_network": networks[0],
            "networks": [
                {
                    "code": network,
                    "default": network == networks[0],
                    "address_format": {
                        "description": ADDRESS_FORMATS[network].description,
                        "pattern": ADDRESS_FORMATS[network].pattern,
                    },
                }
                for network in networks
            ],
            "awaiting_deposit_minutes": rules.awaiting_deposit_minutes,
            "queued_minutes": rules.queued_minutes,
            "exchangeable_to": [code for code in ("BTC", "USDT") if code != currency["code"]],
        }
    btc = listed[0]
    assert (btc["precision"], btc["min_amount"], btc["max_amount"]) == (6, "0.002", "2.5")
    assert (btc["awaiting_deposit_minutes"], btc["queued_minutes"]) == (45, 90)
    assert [network["code"] for network in listed[1]["networks"]] == ["TRC20", "ERC20"]


async def test_the_catalogue_is_public_cacheable_and_answers_304_to_the_current_copy(
    order_api: OrderApiRunner,
) -> None:
    async with order_api(currencies_cache_seconds=120) as running:
        client = running.client
        first = await client.get("/v1/currencies")  # no Authorization: public
        etag = first.headers["etag"]
        same = await client.get("/v1/currencies", headers={"If-None-Match": etag})
        weak = await client.get("/v1/currencies", headers={"If-None-Match": f'"stale", W/{etag}'})
        any_copy = await client.get("/v1/currencies", headers={"If-None-Match": "*"})
        stale = await client.get("/v1/currencies", headers={"If-None-Match": '"0123abcd"'})
    assert first.status_code == 200
    # A strong tag, the hash of the very bytes answered.
    assert etag == f'"{hashlib.sha256(first.content).hexdigest()[:32]}"'
    assert first.headers["cache-control"] == "public, max-age=120"
    for revalidated in (same, weak, any_copy):
        assert revalidated.status_code == 304
        assert revalidated.content == b""
        assert revalidated.headers["etag"] == etag
        assert revalidated.headers["cache-control"] == "public, max-age=120"
    assert stale.status_code == 200
    assert stale.content == first.content


async def test_changed_settings_change_the_body_and_the_etag(order_api: OrderApiRunner) -> None:
    async with order_api() as before:
        old = await before.client.get("/v1/currencies")
    async with order_api(currencies=CHANGED) as after:
        new = await after.client.get("/v1/currencies", headers={"If-None-Match": old.headers["etag"]})
        again = await after.client.get("/v1/currencies", headers={"If-None-Match": new.headers["etag"]})
    assert new.status_code == 200  # the copy the website holds is no longer current
    assert new.headers["etag"] != old.headers["etag"]
    assert new.json() != old.json()
    assert [c["code"] for c in old.json()["currencies"]] == ["BTC", "ETH", "USDT"]
    assert old.json()["currencies"][0]["min_amount"] == "0.0001"
    assert again.status_code == 304


async def test_a_website_on_an_allowed_origin_may_revalidate_its_copy(order_api: OrderApiRunner) -> None:
    website = {"Origin": "https://desk.example"}
    async with order_api(cors_origins=["https://desk.example"]) as running:
        first = await running.client.get("/v1/currencies", headers=website)
        preflight = await running.client.options(
            "/v1/currencies",
            headers={
                **website,
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "if-none-match",
            },
        )
    assert first.headers["access-control-allow-origin"] == "https://desk.example"
    assert "etag" in first.headers["access-control-expose-headers"].lower()  # a page's script may read it
    assert preflight.status_code == 200, preflight.text
    assert "if-none-match" in preflight.headers["access-control-allow-headers"].lower()


def order(**fields: Any) -> OrderCreate:
    return OrderCreate.model_validate({"email": "customer@example.com", **fields})


def test_every_choice_the_catalogue_offers_is_one_intake_accepts(make_settings: SettingsFactory) -> None:
    """Whatever the form lets the customer pick within the catalogue is accepted by intake, and just past its
    limits is refused: the catalogue and intake read the same rules."""
    currencies = make_settings(currencies=CHANGED).currencies
    catalogue = json.loads(currency_catalogue(currencies=currencies).model_dump_json())
    for sent in catalogue["currencies"]:
        step = Decimal(1).scaleb(-sent["precision"])
        for target_code in sent["exchangeable_to"]:
            target = next(c for c in catalogue["currencies"] if c["code"] == target_code)
            for from_network in sent["networks"]:
                for to_network in target["networks"]:
                    payout = demo_address(currency=target_code, network=to_network["code"], seed=1)
                    for amount in (sent["min_amount"], sent["max_amount"]):
                        valid = validate_order(
                            order(
                                from_currency=sent["code"],
                                from_network=from_network["code"],
                                to_currency=target_code,
                                to_network=to_network["code"],
                                amount=amount,
                                payout_address=payout,
                            ),
                            currencies=currencies,
                        )
                        assert valid.amount == Decimal(amount)
            defaults = order(
                from_currency=sent["code"],
                to_currency=target_code,
                amount=sent["min_amount"],
                payout_address=demo_address(currency=target_code, network=target["default_network"], seed=2),
            )
            assert validate_order(defaults, currencies=currencies).to_network == target["default_network"]
            refused = [
                Decimal(sent["min_amount"]) - step,
                Decimal(sent["max_amount"]) + step,
                Decimal(sent["min_amount"]) + step / 10,  # one decimal place too many
            ]
            for amount in refused:
                with pytest.raises(OrderInputError) as refusal:
                    validate_order(defaults.model_copy(update={"amount": amount}), currencies=currencies)
                assert refusal.value.extra["errors"][0]["field"] == "amount"
        assert sent["code"] not in sent["exchangeable_to"]
        with pytest.raises(OrderInputError):  # the same currency on both sides
            validate_order(
                order(
                    from_currency=sent["code"],
                    to_currency=sent["code"],
                    amount=sent["min_amount"],
                    payout_address="x",
                ),
                currencies=currencies,
            )
    # A currency of the settings the catalogue leaves out is one intake refuses, on either side.
    for pair in (
        {"from_currency": "LTC", "to_currency": "BTC"},
        {"from_currency": "BTC", "to_currency": "LTC"},
    ):
        with pytest.raises(OrderInputError):
            validate_order(
                order(
                    **pair,
                    amount="0.5",
                    payout_address=demo_address(currency="BTC", network="bitcoin", seed=3),
                ),
                currencies=currencies,
            )

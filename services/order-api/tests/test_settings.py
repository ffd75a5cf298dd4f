"""Per-currency settings as an operator writes them: what is given is laid over the defaults, a currency is
removed only by saying so, and a new currency without its rules is refused naming the setting."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError

from order_api.settings import DEFAULT_CURRENCIES, Settings
from servicekit.testing import settings_from_scratch


@pytest.fixture(autouse=True)
def nothing_configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings_from_scratch(monkeypatch, tmp_path, "ORDER_API_")


def test_changing_one_currencys_minimum_keeps_its_other_rules_and_the_other_currencies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ORDER_API_CURRENCIES", json.dumps({"BTC": {"min_amount": "0.001"}}))
    currencies = Settings().currencies
    assert sorted(currencies) == ["BTC", "ETH", "USDT"]
    assert currencies["BTC"].min_amount == Decimal("0.001")
    assert currencies["BTC"].max_amount == DEFAULT_CURRENCIES["BTC"].max_amount
    assert currencies["BTC"].precision == DEFAULT_CURRENCIES["BTC"].precision
    assert currencies["ETH"] == DEFAULT_CURRENCIES["ETH"]


def test_one_field_alone_through_a_nested_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDER_API_CURRENCIES__BTC__MIN_AMOUNT", "0.002")
    monkeypatch.setenv("ORDER_API_PRIORITY__VIP_AMOUNT__ETH", "40")
    settings = Settings()
    assert settings.currencies["BTC"].min_amount == Decimal("0.002")
    assert settings.currencies["USDT"] == DEFAULT_CURRENCIES["USDT"]
    assert settings.priority.vip_amount == {
        "BTC": Decimal("1"),
        "ETH": Decimal("40"),
        "USDT": Decimal("50000"),
    }


def test_a_currency_is_removed_only_by_an_explicit_null(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDER_API_CURRENCIES", json.dumps({"USDT": None}))
    assert sorted(Settings().currencies) == ["BTC", "ETH"]


def test_a_new_currency_needs_its_rules_and_is_refused_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ORDER_API_CURRENCIES", json.dumps({"LTC": {"min_amount": "0.1"}}))
    with pytest.raises(ValidationError, match=r"currencies\.LTC\.(precision|max_amount)"):
        Settings()

    rules = {"precision": 8, "min_amount": "0.1", "max_amount": "100"}
    monkeypatch.setenv("ORDER_API_CURRENCIES", json.dumps({"ltc": rules}))
    currencies = Settings().currencies
    assert sorted(currencies) == ["BTC", "ETH", "LTC", "USDT"]
    assert currencies["LTC"].max_amount == Decimal("100")


def test_priority_amounts_are_laid_over_the_defaults_per_currency(monkeypatch: pytest.MonkeyPatch) -> None:
    given = {"vip_amount": {"BTC": "2"}, "priority_amount": {"USDT": None}, "priority_completed_orders": 5}
    monkeypatch.setenv("ORDER_API_PRIORITY", json.dumps(given))
    priority = Settings().priority
    assert priority.vip_amount == {"BTC": Decimal("2"), "ETH": Decimal("20"), "USDT": Decimal("50000")}
    assert priority.priority_amount == {"BTC": Decimal("0.2"), "ETH": Decimal("5")}
    assert (priority.priority_completed_orders, priority.vip_completed_orders) == (5, 20)


def test_assignment_timeouts_per_currency_name_currencies_as_orders_do(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ORDER_API_ASSIGNMENT_TIMEOUT_BY_CURRENCY__btc", "15")
    assert Settings().assignment_timeout_by_currency == {"BTC": 15}


@pytest.mark.parametrize(
    ("rules", "said"),
    [
        ({"precision": 2}, "min_amount 0.0001 has more decimal places than precision 2"),
        ({"min_amount": "20"}, "min_amount 20 is above max_amount 10"),
        ({"min_amount": "0"}, "greater than 0"),
        ({"awaiting_deposit_minutes": 0}, "greater than 0"),
    ],
)
def test_currency_rules_intake_would_contradict_stop_the_service_naming_them(
    monkeypatch: pytest.MonkeyPatch, rules: dict[str, object], said: str
) -> None:
    """The catalogue (``GET /v1/currencies``) publishes these limits: one the intake would refuse is a
    setting that never starts."""
    monkeypatch.setenv("ORDER_API_CURRENCIES", json.dumps({"BTC": rules}))
    with pytest.raises(ValidationError, match=r"currencies\.BTC") as refused:
        Settings()
    assert said in str(refused.value)

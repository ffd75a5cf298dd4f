"""Per-currency settings name currencies as orders do, however the operator spells them."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from servicekit.testing import settings_from_scratch
from wallet_pool.settings import Settings


@pytest.fixture(autouse=True)
def nothing_configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings_from_scratch(monkeypatch, tmp_path, "WALLET_POOL_")


def test_a_cool_down_and_a_threshold_set_for_one_currency_leave_the_others_at_their_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WALLET_POOL_REUSE_COOLDOWN_SECONDS__btc", "600")
    monkeypatch.setenv("WALLET_POOL_POOL_LOW_THRESHOLD_PERCENT_BY_CURRENCY", json.dumps({"eth": 25}))
    settings = Settings()
    assert (settings.reuse_cooldown("BTC"), settings.reuse_cooldown("ETH")) == (
        timedelta(minutes=10),
        timedelta(0),
    )
    assert (settings.pool_low_threshold("ETH"), settings.pool_low_threshold("BTC")) == (
        Decimal(25),
        Decimal(10),
    )

"""order-api's retention sweep covers its outbox (delivered events) and its inbox (wallet-pool's events)."""

from __future__ import annotations

from order_api.main import create_app
from order_api.testing import SettingsFactory
from servicekit.state import service_state


def test_the_sweep_covers_the_outbox_and_the_inbox(make_settings: SettingsFactory) -> None:
    app = create_app(make_settings())
    assert [rule.name for rule in service_state(app).runtime.retention_rules] == [
        "outbox delivered",
        "inbox processed",
    ]

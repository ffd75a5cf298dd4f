"""wallet-pool's retention sweep covers its outbox (delivered events) and its inbox (order-api's events)."""

from __future__ import annotations

from pathlib import Path

from servicekit.state import service_state
from wallet_pool.main import create_app
from wallet_pool.testing import make_settings


def test_the_sweep_covers_the_outbox_and_the_inbox(tmp_path: Path) -> None:
    app = create_app(make_settings(None, var_dir=tmp_path))
    assert [rule.name for rule in service_state(app).runtime.retention_rules] == [
        "outbox delivered",
        "inbox processed",
    ]

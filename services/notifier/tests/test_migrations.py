"""notifier's migrations create exactly what its models declare, inside its own schema only."""

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from alembic import command

from notifier.db import SCHEMA
from notifier.protection import DataProtection
from notifier.settings import Settings
from servicekit.db import resolve_database_url
from servicekit.migrations import alembic_config, upgrade
from servicekit.testing import check_migrations, service_dir


async def test_upgrade_head_then_alembic_check_finds_no_drift() -> None:
    outside = await check_migrations("notifier", schema=SCHEMA)
    assert outside == [], f"tables outside the {SCHEMA} schema: {outside}"


def test_notifications_already_stored_are_sealed_by_the_upgrade_and_opened_by_the_downgrade(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFIER_VAR_DIR", str(tmp_path))  # the migration's keys: development keys made there
    url = resolve_database_url(None, var_dir=tmp_path, service_name="notifier")
    upgrade(service_dir("notifier"), url=url, revision="0003")
    database = tmp_path / "notifier.db"
    with closing(sqlite3.connect(database)) as connection, connection:
        connection.execute(
            "INSERT INTO notification (id, channel, template, locale, recipient, variables, status, attempts, "
            "next_attempt_at, created_at) VALUES ('n-1', 'email', 'email_code', 'en', 'carol@example.com', "
            "'{\"code\": \"974760\", \"minutes\": 10}', 'pending', 0, '2026-12-06 05:00:00', '2026-12-06 05:00:00')"
        )

    upgrade(service_dir("notifier"), url=url)
    with closing(sqlite3.connect(database)) as connection:
        [row] = connection.execute("SELECT * FROM notification").fetchall()
        columns = [c[1] for c in connection.execute("PRAGMA table_info(notification)").fetchall()]
    assert "carol" not in str(row)
    assert "974760" not in str(row)
    sealed = dict(zip(columns, row, strict=True))
    protection = DataProtection.from_settings(Settings(var_dir=tmp_path))
    assert protection.open_recipient(sealed["recipient_sealed"]) == "carol@example.com"
    assert protection.open_variables(sealed["variables_sealed"]) == {"code": "974760", "minutes": 10}
    assert sealed["recipient_index"] == protection.recipient_index("email", "carol@example.com")

    command.downgrade(alembic_config(service_dir("notifier"), url=url), "0003")
    with closing(sqlite3.connect(database)) as connection:
        assert connection.execute("SELECT recipient, variables FROM notification").fetchall() == [
            ("carol@example.com", '{"code": "974760", "minutes": 10}')
        ]

"""The embedded default: SQLite under var/ and the mail drop writing .eml files to var/mail/."""

from __future__ import annotations

import asyncio
import email
import email.policy
from pathlib import Path

from notifier.main import create_app
from notifier.messages import SAMPLE_VARIABLES
from notifier.notifications.service import queue_email
from notifier.testing import KEYS, TEST_PROTECTION, make_settings
from servicekit.db import resolve_database_url
from servicekit.migrations import upgrade
from servicekit.state import service_state
from servicekit.testing import eventually, running_app, service_dir


def _eml_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.eml")) if directory.exists() else []


async def test_queued_email_lands_in_the_mail_drop_on_sqlite(tmp_path: Path) -> None:
    url = resolve_database_url(None, var_dir=tmp_path, service_name="notifier")
    await asyncio.to_thread(upgrade, service_dir("notifier"), url=url)
    app = create_app(make_settings(None, tmp_path))
    runtime = service_state(app).runtime
    assert runtime.database.engine.dialect.name == "sqlite"

    async with running_app(app) as client:
        async with runtime.database.sessionmaker.begin() as session:
            notification_id = await queue_email(
                session=session,
                protection=TEST_PROTECTION,
                template="address_ready",
                locale="ru",
                recipient="anna@example.com",
                variables=SAMPLE_VARIABLES["address_ready"],
                order_id="ORD-1042",
                event_id="e-1",
            )
        [path] = await eventually(lambda: asyncio.to_thread(_eml_files, tmp_path / "mail"))
        page = await eventually(
            lambda: client.get("/v1/notifications", headers={"Authorization": f"Bearer {KEYS.reader}"}),
            until=lambda r: r.json()["items"][0]["status"] == "sent",
        )

    parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert parsed["Subject"] == "Заявка ORD-1042: адрес для оплаты готов"
    assert parsed["Message-ID"] == f"<{notification_id}@desk.test>"  # the From address's domain
    assert page.json()["items"][0]["id"] == notification_id

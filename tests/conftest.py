"""Fixtures shared by the cross-service tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from notifier.testing import SmtpServer, running_smtp_server
from telegram_gateway.testing import FakeBotApi


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A real SMTP server on loopback that records the mail it accepts."""
    with running_smtp_server() as server:
        yield server


@pytest.fixture
async def bot_api() -> AsyncIterator[FakeBotApi]:
    """A fake Telegram Bot API on a loopback port, for a bot the test starts."""
    async with FakeBotApi() as fake:
        yield fake

"""Fixtures shared by the cross-service tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from notifier.testing import SmtpServer, running_smtp_server


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A real SMTP server on loopback that records the mail it accepts."""
    with running_smtp_server() as server:
        yield server

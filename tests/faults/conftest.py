"""The desk shared by the fault tests of a module, and the results table printed at the end of the run."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from desk_testing.faults import FaultStack, Outcome, fault_stack, table

OUTCOMES = pytest.StashKey[list[Outcome]]()


@pytest.fixture(scope="module")
async def desk(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[FaultStack]:
    async with fault_stack(tmp_path_factory.mktemp("faults")) as started:
        yield started


@pytest.fixture
def fault_report(request: pytest.FixtureRequest) -> list[Outcome]:
    """Where a test puts its row of the results table."""
    return request.config.stash.setdefault(OUTCOMES, [])


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    outcomes = config.stash.get(OUTCOMES, [])
    if not outcomes:
        return
    terminalreporter.section("fault suite")
    terminalreporter.write_line(table(outcomes))
    for row in outcomes:
        for finding in row.findings:
            terminalreporter.write_line(f"{row.fault}: {finding}")

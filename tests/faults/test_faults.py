"""The desk under real faults, one at a time, while customers and operators keep working: kill -9 of each
service (restarted a few seconds later on the same port), SIGSTOP/SIGCONT of wallet-pool and of order-api,
Redis killed and restarted, the services' PostgreSQL connections terminated; and a burst of customers at
once against a small pool. After each, once the desk has drained, nothing accepted is lost or doubled, no
address is held twice, every customer and operator was told each fact once, and clients saw only documented
answers."""

from __future__ import annotations

import pytest

from desk_testing.faults import FAULTS, Fault, FaultStack, Outcome, run_burst, run_fault

pytestmark = pytest.mark.timeout(300)


def _failed(outcome: Outcome) -> str:
    return f"{outcome.fault}:\n" + "\n".join(f"  - {finding}" for finding in outcome.findings)


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
async def test_nothing_is_lost_or_doubled_under_the_fault(
    desk: FaultStack, fault: Fault, fault_report: list[Outcome]
) -> None:
    outcome = await run_fault(desk, fault)
    fault_report.append(outcome)
    assert not outcome.findings, _failed(outcome)


async def test_a_burst_of_customers_is_served_or_told_to_come_back(
    desk: FaultStack, fault_report: list[Outcome]
) -> None:
    """200 customers at the same instant against a pool of 30 addresses: each is accepted (201), refused by a
    limit (409) or asked to slow down (429), never a 500; the pool's invariants hold after it."""
    outcome = await run_burst(desk, count=200)
    fault_report.append(outcome)
    unexpected = {status: n for status, n in outcome.answers.items() if status not in {"201", "409", "429"}}
    assert not unexpected, f"burst answers {dict(outcome.answers)}"
    assert not outcome.findings, _failed(outcome)

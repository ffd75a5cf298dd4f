"""An operator's workload next to the team's, anonymised (seed 13.2)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from order_api.operators import repository
from order_api.operators.schemas import OperatorStatsRead, TeamWorkloadRead, WorkloadRead
from order_api.operators.service import OperatorPrincipal
from order_api.orders.models import OrderStatus
from servicekit.db import utcnow


@dataclass
class _Tally:
    completed: int = 0
    cancelled: int = 0
    open_orders: int = 0
    handling_seconds: list[float] = field(default_factory=list)

    @property
    def processed(self) -> int:
        return self.completed + self.cancelled

    def add(self, other: _Tally) -> None:
        self.completed += other.completed
        self.cancelled += other.cancelled
        self.open_orders += other.open_orders
        self.handling_seconds.extend(other.handling_seconds)

    def workload(self) -> WorkloadRead:
        seconds = self.handling_seconds
        return WorkloadRead(
            processed=self.processed,
            completed=self.completed,
            cancelled=self.cancelled,
            average_handling_seconds=round(sum(seconds) / len(seconds), 1) if seconds else None,
            open_orders=self.open_orders,
        )


async def _tallies(session: AsyncSession, *, since: datetime) -> dict[str, _Tally]:
    """Per operator: orders they closed since ``since`` (with the time from taking to closing) and the
    orders they hold now."""
    tallies: dict[str, _Tally] = defaultdict(_Tally)
    for operator_id, status, closed_at, taken in await repository.orders_closed_since(session, since=since):
        tally = tallies[operator_id]
        if status == OrderStatus.COMPLETED:
            tally.completed += 1
        else:
            tally.cancelled += 1
        if taken is not None and closed_at is not None:
            tally.handling_seconds.append((closed_at - taken).total_seconds())
    for operator_id, count in (await repository.orders_held(session)).items():
        tallies[operator_id].open_orders = count
    return tallies


async def operator_stats(
    *, session: AsyncSession, principal: OperatorPrincipal, days: int
) -> OperatorStatsRead:
    """My processed orders, average handling time and open load over the last ``days``, and the same for
    the team with each operator reduced to a number (no names, no ids) and my place among them."""
    since = utcnow() - timedelta(days=days)
    tallies = await _tallies(session, since=since)
    mine = tallies.get(principal.operator_id or "", _Tally())
    team = _Tally()
    for tally in tallies.values():
        team.add(tally)
    ranked = sorted(tallies.items(), key=lambda item: item[1].processed, reverse=True)
    processed = [tally.processed for _, tally in ranked]
    my_rank = (
        processed.index(mine.processed) + 1 if principal.operator_id in tallies else None
    )  # ties share the better place
    return OperatorStatsRead(
        since=since,
        mine=mine.workload(),
        team=TeamWorkloadRead(
            **team.workload().model_dump(),
            operators=len(tallies),
            processed_per_operator=processed,
            my_rank=my_rank,
        ),
    )

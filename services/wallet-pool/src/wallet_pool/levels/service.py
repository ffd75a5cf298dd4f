"""Watching pool levels: one announcement per crossing, with hysteresis.

A pool is **low** when its free wallets are fewer than ``threshold`` percent of its usable (not disabled)
wallets, and **empty** when none is free. Entering ``low`` (or ``empty`` straight away) is announced as
``pool.low``; worsening from ``low`` to ``empty`` is announced once more (level ``empty``): the notifier
escalates the alert it already holds rather than raising a new one. The pool is **ok** again, announced as
``pool.recovered``, only when the free share is back at ``threshold + margin``; in between nothing is said, so
a pool hovering around its threshold (or between one and no free wallet) does not flap.

The level last announced lives in ``pool_level``, updated in the transaction that writes the announcement
to the outbox under the row's lock, so replicas watching side by side announce each crossing once.

The same watch judges each pool's wait queue (``queue_alert_*`` settings): the queue reaching its length
threshold, or its oldest order waiting past the wait threshold, is announced as ``queue.backlogged`` (once,
and once more only when a further threshold is crossed); ``queue.cleared`` follows only when both figures are
back at ``queue_alert_clear_percent`` of their thresholds. The last announcement is read back from the outbox
(``servicekit.outbox.last_report``), which also makes replicas take turns.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

from desk_contracts.events import PoolLow, PoolRecovered, QueueBacklogged, QueueCleared, QueueLevel
from servicekit.db import Database, utcnow
from servicekit.outbox import last_report, publish
from wallet_pool.db import outbox
from wallet_pool.levels import repository
from wallet_pool.levels.models import Level
from wallet_pool.pools import Pool
from wallet_pool.settings import Settings

POOL_LOW = PoolLow.event_type
POOL_RECOVERED = PoolRecovered.event_type
QUEUE_BACKLOGGED = QueueBacklogged.event_type
QueueReason = Literal["length", "wait"]
QUEUE_REASONS: tuple[QueueReason, ...] = ("length", "wait")
_CENTS = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class PoolFigures:
    total: int
    free: int
    reserved: int
    disabled: int
    queued: int

    @property
    def usable(self) -> int:
        return self.total - self.disabled

    @property
    def free_percent(self) -> Decimal:
        if self.usable <= 0:
            return Decimal("0.00")
        return (Decimal(self.free) * 100 / self.usable).quantize(_CENTS, rounding=ROUND_HALF_UP)


def next_level(*, current: Level, figures: PoolFigures, threshold: Decimal, margin: Decimal) -> Level:
    """The level a pool at ``current`` moves to with ``figures`` (see the module's docstring)."""
    if figures.free == 0:
        return Level.EMPTY
    if current is Level.OK:
        return Level.LOW if figures.free_percent < threshold else Level.OK
    if figures.free_percent >= threshold + margin:
        return Level.OK
    return current  # still short: neither a recovery nor (while any wallet is free) a worsening


async def pool_figures(session: AsyncSession, *, pool: Pool) -> PoolFigures:
    """The pool's wallets by status and its queue length, read now."""
    total, free, reserved, disabled = await repository.wallets_by_status(session, pool=pool)
    return PoolFigures(total, free, reserved, disabled, await repository.queue_length(session, pool=pool))


async def update_pool_level(session: AsyncSession, *, pool: Pool, settings: Settings) -> str | None:
    """Compare ``pool`` with the level last announced and announce a crossing (in the caller's
    transaction). Returns the event type written, if any."""
    now = utcnow()
    state = await repository.locked_pool_level(session, pool=pool, now=now)
    figures = await pool_figures(session, pool=pool)
    if figures.total == 0:
        return None  # nothing imported yet: not a pool anyone relies on
    current = Level(state.level)
    threshold = settings.pool_low_threshold(pool.currency)
    level = next_level(
        current=current, figures=figures, threshold=threshold, margin=settings.pool_recovered_margin_percent
    )
    state.free, state.usable = figures.free, figures.usable
    if level is current:
        return None
    state.level, state.changed_at = level.value, now
    announcement = (PoolRecovered if level is Level.OK else PoolLow)(
        currency=pool.currency,
        network=pool.network,
        **asdict(figures),
        free_percent=figures.free_percent,
        threshold_percent=threshold,
        level=level.value,
        observed_at=now,
    )
    await publish(
        session,
        outbox,
        destination="notifier",
        event=announcement,
        aggregate_id=f"{pool.currency}:{pool.network}",
    )
    return announcement.event_type


def queue_reasons(
    *, queued: int, oldest_wait_seconds: float, settings: Settings, share: float = 1.0
) -> set[QueueReason]:
    """The queue thresholds (``length``, ``wait``) the figures reach (``share`` 1), or stay above ``share`` of
    (the clearing test). A threshold of 0 is off."""

    def beyond(value: float, threshold: float) -> bool:
        return bool(threshold) and (value >= threshold if share == 1 else value > threshold * share)

    reasons: set[QueueReason] = set()
    if beyond(queued, settings.queue_alert_length):
        reasons.add("length")
    if beyond(oldest_wait_seconds, settings.queue_alert_wait_minutes * 60):
        reasons.add("wait")
    return reasons


async def update_queue_level(session: AsyncSession, *, pool: Pool, settings: Settings) -> str | None:
    """Compare ``pool``'s wait queue with the last announcement and announce a crossing (in the caller's
    transaction). Returns the event type written, if any."""
    aggregate_id = f"queue:{pool.currency}:{pool.network}"
    last = await last_report(session, table=outbox, destination="notifier", aggregate_id=aggregate_id)
    announced = (
        set(last.payload.get("reasons", ())) if last and last.event_type == QUEUE_BACKLOGGED else set()
    )
    now = utcnow()
    queued, oldest = await repository.queue_figures(session, pool=pool)
    wait = max((now - oldest).total_seconds(), 0.0) if oldest else 0.0
    reasons = queue_reasons(queued=queued, oldest_wait_seconds=wait, settings=settings)
    figures = QueueLevel(
        currency=pool.currency,
        network=pool.network,
        queued=queued,
        oldest_wait_seconds=round(wait, 1),
        length_threshold=settings.queue_alert_length,
        wait_threshold_seconds=settings.queue_alert_wait_minutes * 60,
        observed_at=now,
    ).model_dump()
    announcement: QueueLevel
    if reasons - announced:
        announcement = QueueBacklogged(**figures, reasons=sorted(reasons | announced))
    elif announced and not queue_reasons(
        queued=queued,
        oldest_wait_seconds=wait,
        settings=settings,
        share=settings.queue_alert_clear_percent / 100,
    ):
        announcement = QueueCleared(**figures)
    else:
        return None
    await publish(session, outbox, destination="notifier", event=announcement, aggregate_id=aggregate_id)
    return announcement.event_type


async def watch_pool_levels(*, database: Database, settings: Settings) -> int:
    """One pass over every pool (with wallets, a queue, or looked at before), each in a transaction of its
    own: its level, then its queue. Returns how many crossings were announced."""
    async with database.sessionmaker() as session:
        pools = {
            *await repository.pools_with_wallets(session),
            *await repository.pools_with_queue(session),
            *await repository.pools_watched_before(session),
        }
    announced = 0
    for pool in sorted(pools, key=lambda p: (p.currency, p.network)):
        async with database.sessionmaker.begin() as session:
            if await update_pool_level(session, pool=pool, settings=settings) is not None:
                announced += 1
            if await update_queue_level(session, pool=pool, settings=settings) is not None:
                announced += 1
    return announced

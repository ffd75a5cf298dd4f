"""Forgetting finished rows after a while: one declarative rule per kind of row, one sweep per service.

A :class:`RetentionRule` says which rows of a table are finished (``finished``: delivered outbox events, sent
notifications …), which timestamp ages them and how long they are kept. :func:`forget_expired` deletes the
rows of each rule older than its keep, oldest first, in batches of ``batch_size`` rows, each batch a short
transaction of its own, so a sweep never holds many locks or a long transaction, however large the backlog.
Rules run in the order given and each is drained before the next starts, so a rule that ages rows by another
table's rows (a card by its order's snapshot) runs before the rule that deletes those rows.

Every replica runs the sweep (``Runtime.add_retention``): on PostgreSQL a batch locks the rows it is about
to delete with ``FOR UPDATE SKIP LOCKED``, so replicas sweeping at once share the work and never wait on each
other; a row another transaction holds is left for the next pass. SQLite has one writer at a time anyway.

A batch picks the oldest expired rows by the rule's timestamp: an index on it (notifications, delivery
attempts) makes that a short walk. The outbox and the inbox have none, so that their writes on the hot path
stay as cheap as they are; their batch reads the table (a retention period of events), once an hour.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, FromClause, TableClause, delete, select, tuple_

from servicekit.db import Database, utcnow


@dataclass(frozen=True, slots=True)
class RetentionRule:
    """Rows of ``table`` that are ``finished`` and whose ``timestamp`` is older than ``keep`` are deleted.

    ``timestamp`` is usually a column of ``table``; it may be any expression over it (a correlated subquery
    reading another table's timestamp). A row whose timestamp is ``NULL`` is never deleted.
    """

    name: str
    table: FromClause
    """A table (a model's ``__table__`` will do)."""
    timestamp: ColumnElement[datetime]
    keep: timedelta
    finished: ColumnElement[bool] | None = None

    def expired(self, now: datetime) -> list[ColumnElement[bool]]:
        conditions = [self.timestamp < now - self.keep]
        if self.finished is not None:
            conditions.append(self.finished)
        return conditions


async def forget_expired(
    *, database: Database, rules: Sequence[RetentionRule], batch_size: int = 1000, now: datetime | None = None
) -> int:
    """Delete every rule's expired rows, in batches of ``batch_size``; returns how many rows were deleted.
    Idempotent and safe on any number of replicas at once."""
    moment = now or utcnow()
    removed = 0
    for rule in rules:
        while True:
            picked, deleted = await _forget_batch(database, rule, now=moment, batch_size=batch_size)
            removed += deleted
            if picked < batch_size:
                break
    return removed


async def _forget_batch(
    database: Database, rule: RetentionRule, *, now: datetime, batch_size: int
) -> tuple[int, int]:
    """One transaction: lock up to ``batch_size`` expired rows (oldest first, skipping rows other transactions
    hold), then delete them; returns how many were picked and how many deleted (fewer when, on SQLite,
    another replica deleted some in between). Two statements rather than ``DELETE … WHERE key IN (SELECT …
    SKIP LOCKED)``, whose subquery PostgreSQL may run again per row of the outer scan."""
    keys = list(rule.table.primary_key)
    key = keys[0] if len(keys) == 1 else tuple_(*keys)
    pick = (
        select(*keys)
        .where(*rule.expired(now))
        .order_by(rule.timestamp, *keys)
        .limit(batch_size)
        .with_for_update(of=rule.table, skip_locked=True)
    )
    async with database.sessionmaker.begin() as session:
        rows = (await session.execute(pick)).all()
        if not rows:
            return 0, 0
        values: list[Any] = [row[0] for row in rows] if len(keys) == 1 else [tuple(row) for row in rows]
        table = rule.table
        if not isinstance(table, TableClause):  # pragma: no cover - a rule is made for a table
            raise TypeError(f"retention rule {rule.name!r} is not on a table")
        result = await session.execute(delete(table).where(key.in_(values)))
    return len(rows), int(result.rowcount)  # type: ignore[attr-defined]

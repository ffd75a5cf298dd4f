"""Keyset pages for every list the services answer: one page shape, one cursor, one way to cut a page.

A list declares its order once, as a :class:`Keyset` (a name and the columns that order it, newest or oldest
first; the last column breaks ties, so rows sharing a moment neither repeat nor go missing across pages):

    ORDERS = Keyset("orders", Order.created_at, Order.id, newest_first=True)

    statement = ORDERS.select(select(Order).where(...), cursor=cursor, limit=limit)
    orders, next_cursor = ORDERS.cut((await session.scalars(statement)).all(), limit=limit)
    return OrderPage(items=[read_order(o) for o in orders], next_cursor=next_cursor)

and answers a :class:`Page` (``{"items": [...], "next_cursor": "..." | null}``). Routes take ``cursor`` and
``limit`` as :data:`CursorParam` / :data:`LimitParam` (or a filter model based on :class:`PageQuery`), so
every list has the same parameters and bounds.

A cursor is the position of the page's last row, opaque to clients: base64 of a digest and the keyset's
values. The digest is keyed by the list's name, so a cursor that was edited, or that another list issued,
is refused with a ``422 invalid_cursor`` naming ``cursor``. It is a check, not a secret: a cursor only
positions a page within the rows the caller may see anyway.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel, Field
from sqlalchemy import ColumnElement, Select, and_, or_
from sqlalchemy.orm import QueryableAttribute
from sqlalchemy.types import TypeDecorator

from servicekit.errors import ValidationFailedError

MAX_PAGE_SIZE = 200
DEFAULT_PAGE_SIZE = 50
MAX_CURSOR_LENGTH = 300

_CURSOR_HELP = "`next_cursor` of the page before; omit for the first page."
_LIMIT_HELP = f"Items per page, 1 to {MAX_PAGE_SIZE}."

CursorParam = Annotated[str | None, Query(max_length=MAX_CURSOR_LENGTH, description=_CURSOR_HELP)]
"""The ``cursor`` query parameter of a list route (default ``None``)."""
LimitParam = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description=_LIMIT_HELP)]
"""The ``limit`` query parameter of a list route (default :data:`DEFAULT_PAGE_SIZE`)."""

KeyValue = datetime | str | int
"""What a keyset column holds: a (timezone-aware) moment, an id."""
Row = TypeVar("Row")
Item = TypeVar("Item")

_DIGEST_SIZE = 8
_NOT_A_CURSOR = "not a cursor of this list"


class PageQuery(BaseModel):
    """``cursor`` and ``limit`` of a list whose query parameters are a model: its filter model extends this."""

    cursor: str | None = Field(default=None, max_length=MAX_CURSOR_LENGTH, description=_CURSOR_HELP)
    limit: int = Field(default=DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE, description=_LIMIT_HELP)


class Page(BaseModel, Generic[Item]):
    """One page of a list. A list's page model names it: ``class OrderPage(Page[OrderRead])``."""

    items: list[Item] = Field(description="This page's items, in the list's order.")
    next_cursor: str | None = Field(
        description="Pass back as `cursor` for the next page; null on the last page."
    )


class Keyset:
    """The order of one list (``columns``, newest or oldest first, the last one unique) and its cursors."""

    __slots__ = ("_types", "columns", "name", "newest_first")

    def __init__(
        self, name: str, *columns: ColumnElement[Any] | QueryableAttribute[Any], newest_first: bool
    ) -> None:
        if not columns:
            raise ValueError("a keyset needs at least one column")
        self.name = name
        self.columns: tuple[ColumnElement[Any], ...] = tuple(column.expression for column in columns)
        self.newest_first = newest_first
        self._types = tuple(_python_type(column) for column in self.columns)

    def select(self, statement: Select[Any], *, cursor: str | None, limit: int) -> Select[Any]:
        """``statement`` ordered by the keyset, past ``cursor`` (the first page without one), and one row
        beyond ``limit`` so :meth:`cut` knows whether there is more."""
        if cursor:
            statement = statement.where(self.after(self.decode(cursor)))
        order = [column.desc() if self.newest_first else column.asc() for column in self.columns]
        return statement.order_by(*order).limit(limit + 1)

    def cut(
        self,
        rows: Sequence[Row],
        *,
        limit: int,
        position: Callable[[Row], Sequence[KeyValue]] | None = None,
    ) -> tuple[list[Row], str | None]:
        """The page (``rows`` from :meth:`select`, at most ``limit``) and the cursor of the next one (``None``
        on the last). ``position`` reads a row's keyset values; by default its attributes named as the
        columns (an ORM object, a ``Row``)."""
        page = list(rows[:limit])
        if len(rows) <= limit or not page:
            return page, None
        last = page[-1]
        values = position(last) if position else [getattr(last, str(column.key)) for column in self.columns]
        return page, self.encode(values)

    def after(self, values: Sequence[KeyValue]) -> ColumnElement[bool]:
        """SQL: the row comes after the one at ``values`` in this order (row comparison, spelled out so it
        uses the list's index on both databases)."""
        beyond: list[ColumnElement[bool]] = []
        for index, (column, value) in enumerate(zip(self.columns, values, strict=True)):
            ties = [
                earlier == tied for earlier, tied in zip(self.columns[:index], values[:index], strict=True)
            ]
            beyond.append(and_(*ties, column < value if self.newest_first else column > value))
        return or_(*beyond)

    def encode(self, values: Sequence[KeyValue]) -> str:
        """The cursor of the row at ``values``."""
        if len(values) != len(self.columns):
            raise ValueError(f"{self.name}: {len(self.columns)} keyset values expected, got {len(values)}")
        payload = json.dumps([_jsonable(value) for value in values], separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(self._digest(payload) + payload).decode().rstrip("=")

    def decode(self, cursor: str) -> tuple[KeyValue, ...]:
        """The keyset values of a cursor :meth:`encode` made; anything else is a ``422`` naming ``cursor``."""
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
            digest, payload = raw[:_DIGEST_SIZE], raw[_DIGEST_SIZE:]
            if hmac.compare_digest(digest, self._digest(payload)):
                values = json.loads(payload)
                if isinstance(values, list) and len(values) == len(self._types):
                    return tuple(
                        _parsed(value, kind) for value, kind in zip(values, self._types, strict=True)
                    )
        except (binascii.Error, ValueError, TypeError, OverflowError):
            pass
        raise ValidationFailedError.for_field("cursor", _NOT_A_CURSOR, kind="invalid_cursor")

    def _digest(self, payload: bytes) -> bytes:
        return hashlib.blake2b(payload, key=self.name.encode(), digest_size=_DIGEST_SIZE).digest()


def _python_type(column: ColumnElement[Any]) -> type:
    """What ``column`` holds in Python (a ``TypeDecorator`` such as ``UtcDateTime`` holds its base type's)."""
    column_type = column.type
    if isinstance(column_type, TypeDecorator):
        column_type = column_type.impl_instance
    python_type: type = column_type.python_type
    if python_type not in (datetime, str, int):
        raise TypeError(f"a keyset column holds moments, strings or integers, not {python_type.__name__}")
    return python_type


def _jsonable(value: KeyValue) -> str | int:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("keyset moments are timezone-aware")
        return value.isoformat()
    return value


def _parsed(value: object, kind: type) -> KeyValue:
    """``value`` as the column's type, one the database takes; ``TypeError`` when it is not one. (Only this
    module makes cursors, but the digest is no secret: a forged one must still never reach the database.)"""
    if kind is datetime and isinstance(value, str):
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is not None:
            return moment.astimezone(UTC)  # OverflowError (refused) at the ends of the calendar
    elif kind is int and isinstance(value, int) and not isinstance(value, bool):
        if -(2**63) <= value < 2**63:
            return value
    elif kind is str and isinstance(value, str) and "\x00" not in value:
        return value
    raise TypeError(f"{value!r} is not a {kind.__name__}")

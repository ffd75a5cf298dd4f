"""Statistics routes' shared parts: CSV on request, and the window and time zone checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import BaseModel

from servicekit.errors import ValidationFailedError
from servicekit.export import figure_lines, figures_csv, wants_csv
from servicekit.windows import time_zone, window

NOW = datetime(2026, 12, 6, 14, 30, tzinfo=UTC)
DAY = timedelta(days=1)


@pytest.mark.parametrize(
    ("accept", "csv"),
    [
        ("text/csv", True),
        ("text/csv; charset=utf-8", True),
        ("Text/CSV, application/json", True),
        ("application/json, text/csv", False),
        ("*/*", False),
        (None, False),
        ("application/problem+json", False),
    ],
)
def test_csv_only_when_asked_for_before_json(accept: str | None, csv: bool) -> None:
    assert wants_csv(accept) is csv


class Bucket(BaseModel):
    le: float | None
    count: int


class Pool(BaseModel):
    flags: dict[str, bool]
    name: str
    buckets: list[Bucket]
    per_hour: list[int]


def test_every_leaf_is_one_line_named_by_its_path() -> None:
    pool = Pool(
        flags={"low": True},
        name="BTC, bitcoin",
        buckets=[Bucket(le=10, count=2), Bucket(le=None, count=0)],
        per_hour=[3, 4],
    )
    assert figure_lines({"pools": [pool.model_dump(mode="json")]}) == [
        ("pools[BTC, bitcoin].flags.low", "true"),
        ("pools[BTC, bitcoin].buckets[10.0].count", "2"),
        ("pools[BTC, bitcoin].buckets[null].count", "0"),
        ("pools[BTC, bitcoin].per_hour[0]", "3"),
        ("pools[BTC, bitcoin].per_hour[1]", "4"),
    ]
    # A comma in a value is quoted by the CSV writer, not split.
    assert figures_csv(pool).splitlines()[:3] == ["figure,value", "flags.low,true", 'name,"BTC, bitcoin"']


def test_windows_default_last_days_and_bounds() -> None:
    def check(**given: object) -> tuple[datetime, datetime]:
        values: dict[str, object] = {"since": None, "until": None, "days": None, **given}
        return window(**values, now=NOW, default=DAY, longest=31 * DAY)  # type: ignore[arg-type]

    assert check() == (NOW - DAY, NOW)
    assert check(days=7) == (NOW - 7 * DAY, NOW)
    berlin = timezone(timedelta(hours=1))
    start, end = check(since=datetime(2026, 12, 1, 1, 0, tzinfo=berlin))
    assert (start, end, start.tzinfo) == (datetime(2026, 12, 1, 0, 0, tzinfo=UTC), NOW, UTC)
    for given, field in (
        ({"days": 2, "since": NOW - DAY}, "days"),
        ({"since": NOW}, "since"),
        ({"since": NOW - 32 * DAY}, "since"),
        ({"until": datetime(1, 1, 1, 12, tzinfo=UTC)}, "until"),
    ):
        with pytest.raises(ValidationFailedError) as refused:
            check(**given)
        assert refused.value.extra["errors"][0]["field"] == field


def test_time_zones_are_iana_names() -> None:
    assert time_zone("Asia/Kolkata").key == "Asia/Kolkata"
    for bad in ("Mars/Olympus", "../etc/passwd", ""):
        with pytest.raises(ValidationFailedError) as refused:
            time_zone(bad)
        assert refused.value.extra["errors"][0]["field"] == "tz"

"""The time window and time zone of a statistics request, checked the same way wherever one is asked for.

Bad input is a ``422`` naming the field (``ValidationFailedError``), so a service that forwards the request to
a peer refuses it itself, before asking.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from servicekit.errors import ValidationFailedError


def time_zone(name: str, *, field: str = "tz") -> ZoneInfo:
    """The IANA time zone ``name`` (``UTC``, ``Europe/Berlin`` ...)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationFailedError.for_field(
            field, f"{name!r} is not a known time zone", kind="unknown"
        ) from None


def window(
    *,
    since: datetime | None,
    until: datetime | None,
    days: int | None,
    now: datetime,
    default: timedelta,
    longest: timedelta,
) -> tuple[datetime, datetime]:
    """``[since, until)`` in UTC: as given, or the last ``days`` days before ``until``, or the last ``default``;
    ``until`` defaults to ``now``. Giving both ``days`` and ``since``, an empty window, or one longer than
    ``longest`` is refused."""
    if days is not None and since is not None:
        raise ValidationFailedError.for_field("days", "give either days or since, not both", kind="conflict")
    try:
        end = (until or now).astimezone(UTC)
        start = (end - timedelta(days=days) if days is not None else since or end - default).astimezone(UTC)
    except OverflowError:  # a window reaching before year 1
        raise ValidationFailedError.for_field("until", "is too early", kind="out_of_range") from None
    if start >= end:
        raise ValidationFailedError.for_field("since", "must be earlier than until", kind="window_empty")
    if end - start > longest:
        raise ValidationFailedError.for_field(
            "since", f"the window may span at most {longest.days} days", kind="too_long"
        )
    return start, end

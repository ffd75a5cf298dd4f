"""Hand-written SQL for the driver (``servicekit.db.Driver``) with named parameters.

asyncpg numbers its parameters (``$1``, ``$2``...): in a statement of twenty values a reader has to count to
match each to its column. Written with ``:name`` instead, and translated once (at import), the statement says
which value goes where, and the values are passed by name::

    CLAIM = NamedStatement("UPDATE job SET owner = :owner WHERE id = :job_id RETURNING id")
    row = await sql.fetchrow("claim job", CLAIM.sql, *CLAIM.arguments(owner=me, job_id=job))

A name used twice is one parameter. ``::type`` casts are left alone, as are ``:`` inside quoted text.
"""

from __future__ import annotations

import re
from typing import Any

_NAME = re.compile(r"'(?:[^']|'')*'|(?<![:\w]):([A-Za-z_]\w*)")
"""A quoted literal (kept as it is), or a ``:name`` not preceded by a colon (``::cast``) or a word character."""


class NamedStatement:
    """A statement written with ``:name`` parameters, in the driver's numbered form (``sql``), and the
    arguments in that order for a set of named values (``arguments``)."""

    __slots__ = ("names", "sql")

    def __init__(self, statement: str) -> None:
        names: list[str] = []

        def number(match: re.Match[str]) -> str:
            name = match.group(1)
            if name is None:
                return match.group(0)
            if name not in names:
                names.append(name)
            return f"${names.index(name) + 1}"

        self.sql = _NAME.sub(number, statement)
        self.names = tuple(names)

    def arguments(self, **values: Any) -> tuple[Any, ...]:
        """The values in the order of the numbered parameters; every name must be given, and nothing else."""
        try:
            if len(values) == len(self.names):
                return tuple(values[name] for name in self.names)
        except KeyError:
            pass
        missing = sorted(set(self.names) - set(values))
        unknown = sorted(set(values) - set(self.names))
        raise TypeError(f"statement parameters: missing {missing}, unknown {unknown}")

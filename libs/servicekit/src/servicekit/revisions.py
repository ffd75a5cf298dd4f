"""Is the database at the code's schema revision? ``/health/ready`` answers it on every probe.

The code's head is read once, at startup, from the service's Alembic scripts: their ``revision`` and
``down_revision`` assignments are parsed (``ast``), not imported, since importing a history costs a second
of startup. The database's revision is the ``alembic_version`` table (in the service's schema on
PostgreSQL, which is the connection's ``search_path``): one small query per readiness probe.

- ``ok``: the database is at the code's head.
- ``behind``: not migrated, or at an older revision of the code's history: the service is not ready (a
  query may touch a column that does not exist yet), so traffic waits for the migration job.
- ``ahead``: a revision this code does not know, i.e. a newer release has migrated the database while this
  one still runs (a rolling update). Migrations keep the previous release working, so it stays ready.
- ``unknown``: the revision could not be read (the database check says why); not ready.
"""

from __future__ import annotations

import ast
import asyncio
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

SchemaStatus = Literal["ok", "behind", "ahead", "unknown"]


class SchemaRevision(BaseModel):
    """The database's schema revision against the code's (``/health/ready``)."""

    revision: str | None = Field(description="The database's Alembic revision; null when not migrated.")
    head: str = Field(description="The head revision of this code's migrations.")
    status: SchemaStatus = Field(
        description="ok, behind (not ready), ahead (a newer release migrated it) or unknown."
    )


@dataclass(frozen=True, slots=True)
class MigrationHistory:
    """The revisions of one service's Alembic history, and its head(s)."""

    revisions: frozenset[str]
    heads: frozenset[str]

    @classmethod
    def read(cls, migrations: Path) -> MigrationHistory:
        """Parse ``migrations/versions/*.py`` without importing them."""
        revisions: set[str] = set()
        parents: set[str] = set()
        for script in sorted((migrations / "versions").glob("*.py")):
            values = _assignments(script, ("revision", "down_revision"))
            if "revision" not in values:
                continue
            revisions.add(str(values["revision"]))
            down = values.get("down_revision")
            if isinstance(down, str):
                parents.add(down)
            elif isinstance(down, tuple | list):
                parents.update(str(parent) for parent in down)  # a merge revision
        if not revisions:
            raise FileNotFoundError(f"no Alembic revisions in {migrations / 'versions'}")
        return cls(revisions=frozenset(revisions), heads=frozenset(revisions - parents))

    @property
    def head(self) -> str:
        return ",".join(sorted(self.heads))

    def compare(self, database: list[str]) -> SchemaRevision:
        """Where a database at revision(s) ``database`` stands against this history."""
        status: SchemaStatus
        if set(database) == self.heads:
            status = "ok"
        elif database and not set(database) <= self.revisions:
            status = "ahead"
        else:
            status = "behind"
        return SchemaRevision(revision=",".join(sorted(database)) or None, head=self.head, status=status)

    async def check(self, engine: AsyncEngine, *, timeout_seconds: float = 2.0) -> SchemaRevision:
        """The database's revision (one query) compared with this history; ``unknown`` when it cannot be read
        (the database check of ``/health/ready`` reports why)."""
        try:
            async with asyncio.timeout(timeout_seconds):
                database = await read_revisions(engine)
        except Exception:
            return SchemaRevision(revision=None, head=self.head, status="unknown")
        return self.compare(database)


def _assignments(script: Path, names: tuple[str, ...]) -> dict[str, object]:
    values: dict[str, object] = {}
    for node in ast.parse(script.read_text(encoding="utf-8"), filename=str(script)).body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            target, value = node.target.id, node.value
        elif (
            isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
        ):
            target, value = node.targets[0].id, node.value
        else:
            continue
        if target in names:
            values[target] = ast.literal_eval(value)
    return values


async def read_revisions(engine: AsyncEngine) -> list[str]:
    """The revision(s) recorded in the database; empty when it was never migrated."""
    async with engine.connect() as connection:
        try:
            rows = await connection.execute(text("SELECT version_num FROM alembic_version"))
        except DBAPIError as exc:
            if "alembic_version" in str(exc.orig):  # no such table: never migrated
                return []
            raise
        return [str(row[0]) for row in rows]


def migrations_dir(package: str) -> Path:
    """Where the Alembic scripts of the service ``package`` are: beside its source in a checkout
    (``services/<svc>/migrations``), else ``./migrations`` (its image keeps them in its working directory)."""
    spec = importlib.util.find_spec(package)
    candidates = [Path.cwd() / "migrations"]
    if spec is not None and spec.origin is not None:
        candidates.insert(0, Path(spec.origin).resolve().parents[2] / "migrations")
    for candidate in candidates:
        if (candidate / "versions").is_dir():
            return candidate
    raise FileNotFoundError(f"the migrations of {package} are in none of {[str(c) for c in candidates]}")

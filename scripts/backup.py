"""Back up and restore the desk's data: each service's PostgreSQL schema, and the embedded SQLite files.

``make backup`` and ``make restore`` call it; see deploy/README.md ("Backup and restore")::

    backup.py backup  [--to backups] [--var-dir var] [--database-url URL | --compose]
    backup.py restore --from backups/<stamp> [--var-dir var] [--database-url URL | --compose]

A backup is one directory, ``<to>/<UTC stamp>/``, holding

- ``postgres/<schema>.dump``: ``pg_dump --format=custom --schema=<schema>`` of every service's schema
  (order_api, wallet_pool, notifier, telegram_gateway), with the local ``pg_dump`` against ``--database-url``
  (a superuser's, or one that may read every schema), or ``--compose``: inside the compose stack's postgres
  container, as its superuser;
- ``sqlite/<service>.db``: an online copy (SQLite's backup API: consistent while the service runs) of each
  service's embedded database found in ``--var-dir``.

Restore expects the services stopped. PostgreSQL: ``pg_restore --clean --if-exists --single-transaction``
of each dump (into an empty database, or over the same schemas: the objects in the dump are replaced, each
schema in one transaction); the roles must exist (deploy/postgres/init.sql, or your own). SQLite: each file
is copied back over the service's database with the backup API. Then migrate, then start the services.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Sequence
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit, urlunsplit

ROOT: Final = Path(__file__).resolve().parents[1]
SERVICES: Final = ("order-api", "wallet-pool", "notifier", "telegram-gateway")
"""Each service's schema is its import package's name (``order_api``); its embedded file is ``<service>.db``."""
COMPOSE_DATABASE: Final = "exchange_desk"
COMPOSE_EXEC: Final = ("docker", "compose", "exec", "-T", "postgres")


def say(text: str) -> None:
    print(f"backup: {text}", file=sys.stderr)


def schema_of(service: str) -> str:
    return service.replace("-", "_")


def libpq_url(url: str) -> str:
    """``url`` as pg_dump takes it: SQLAlchemy's ``postgresql+asyncpg://`` becomes ``postgresql://``."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(scheme=parts.scheme.split("+", 1)[0]))


def postgres_command(tool: str, database_url: str | None) -> list[str]:
    """``tool`` (pg_dump, pg_restore) against the given database, or inside the compose stack's postgres."""
    if database_url is None:
        return [*COMPOSE_EXEC, tool, "--username=postgres", f"--dbname={COMPOSE_DATABASE}"]
    if shutil.which(tool) is None:
        raise SystemExit(f"backup: {tool} is not on PATH (install PostgreSQL's client tools)")
    return [tool, f"--dbname={libpq_url(database_url)}"]


def backup_postgres(directory: Path, database_url: str | None) -> list[Path]:
    directory.mkdir(parents=True)
    written = []
    for service in SERVICES:
        target = directory / f"{schema_of(service)}.dump"
        command = [
            *postgres_command("pg_dump", database_url),
            "--format=custom",
            f"--schema={schema_of(service)}",
        ]
        with target.open("wb") as output:
            subprocess.run(command, stdout=output, check=True)
        written.append(target)
        say(f"PostgreSQL schema {schema_of(service)} → {target}")
    return written


def restore_postgres(directory: Path, database_url: str | None) -> None:
    dumps = sorted(directory.glob("*.dump"))
    if not dumps:
        raise SystemExit(f"backup: no PostgreSQL dumps in {directory}")
    for dump in dumps:
        command = [
            *postgres_command("pg_restore", database_url),
            "--clean",
            "--if-exists",
            "--single-transaction",
            "--exit-on-error",
        ]
        with dump.open("rb") as source:  # on stdin: the same for a local pg_restore and one in a container
            subprocess.run(command, stdin=source, check=True)
        say(f"{dump} → PostgreSQL schema {dump.stem}")


def copy_sqlite(source: Path, target: Path) -> None:
    """A consistent copy of ``source`` into ``target`` with SQLite's online backup API (safe while a service
    writes to ``source``)."""
    with (
        closing(sqlite3.connect(f"file:{source}?mode=ro", uri=True)) as reader,
        closing(sqlite3.connect(target)) as writer,
    ):
        reader.backup(writer)


def backup_sqlite(directory: Path, var_dir: Path) -> list[Path]:
    written = []
    for service in SERVICES:
        source = var_dir / f"{service}.db"
        if not source.exists():
            continue
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        target = directory / source.name
        copy_sqlite(source, target)
        target.chmod(0o600)
        written.append(target)
        say(f"{source} → {target}")
    return written


def restore_sqlite(directory: Path, var_dir: Path) -> None:
    backups = sorted(directory.glob("*.db"))
    if not backups:
        raise SystemExit(f"backup: no SQLite backups in {directory}")
    var_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    for backup in backups:
        target = var_dir / backup.name
        copy_sqlite(backup, target)
        target.chmod(0o600)
        say(f"{backup} → {target}")


def backup(*, to: Path, var_dir: Path, database_url: str | None, postgres: bool) -> Path:
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H%M%SZ")
    directory = to / stamp
    directory.mkdir(parents=True, mode=0o700)
    written = backup_sqlite(directory / "sqlite", var_dir)
    if postgres:
        written += backup_postgres(directory / "postgres", database_url)
    if not written:
        directory.rmdir()
        raise SystemExit(
            f"backup: nothing to back up: no embedded database in {var_dir} and no PostgreSQL asked for"
        )
    say(f"backup complete: {directory}")
    return directory


def restore(*, source: Path, var_dir: Path, database_url: str | None, postgres: bool) -> None:
    if not source.is_dir():
        raise SystemExit(f"backup: {source} is not a backup directory")
    if postgres:
        restore_postgres(source / "postgres", database_url)
    if (source / "sqlite").is_dir():
        restore_sqlite(source / "sqlite", var_dir)
    say(
        "restore complete: now migrate (make migrate, or the compose migration jobs), then start the services"
    )


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--var-dir", type=Path, default=ROOT / "var", help="the embedded databases (default: var/)"
    )
    where = common.add_mutually_exclusive_group()
    where.add_argument(
        "--database-url", help="PostgreSQL, with the local pg_dump/pg_restore (a superuser's URL)"
    )
    where.add_argument("--compose", action="store_true", help="PostgreSQL of the docker compose stack")
    root = argparse.ArgumentParser(prog="backup.py", description=__doc__.split("\n\n")[0])
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    make = commands.add_parser("backup", parents=[common], help="write <to>/<UTC stamp>/")
    make.add_argument("--to", type=Path, default=ROOT / "backups", help="default: backups/")
    back = commands.add_parser(
        "restore", parents=[common], help="restore a backup directory (services stopped)"
    )
    back.add_argument("--from", dest="source", type=Path, required=True, help="backups/<stamp>")
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    postgres = bool(args.database_url) or args.compose
    database_url = args.database_url or None
    if args.command == "backup":
        backup(to=args.to, var_dir=args.var_dir, database_url=database_url, postgres=postgres)
    else:
        restore(source=args.source, var_dir=args.var_dir, database_url=database_url, postgres=postgres)
    return 0


if __name__ == "__main__":
    sys.exit(main())

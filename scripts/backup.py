"""Back up and restore the desk's data: each service's PostgreSQL schema, and the embedded SQLite files.

``make backup`` and ``make restore`` call it; see deploy/README.md ("Backup and restore")::

    backup.py backup  [--to backups] [--var-dir var] [--database-url URL | --compose]
    backup.py restore --from backups/<stamp> [--var-dir var] [--database-url URL | --compose]

A backup is one directory, ``<to>/<UTC stamp>/``, holding

- ``postgres/exchange_desk.dump``: one ``pg_dump --format=custom`` with a ``--schema`` for every service's
  schema (order_api, wallet_pool, notifier, telegram_gateway), so one snapshot of all four, with the local
  ``pg_dump`` against ``--database-url`` (a superuser's, or one that may read every schema; its password is
  passed in PGPASSWORD, never on the command line), or ``--compose``: inside the compose stack's postgres
  container, as its superuser;
- ``sqlite/<service>.db``: an online copy (SQLite's backup API: consistent while the service runs) of each
  service's embedded database found in ``--var-dir``.

Restore expects the services stopped. PostgreSQL: one ``pg_restore --clean --if-exists --single-transaction``
of the dump, into an empty database (or one holding only init.sql's empty schemas; drop the schemas of a
populated one first: a schema holding objects the dump lacks fails at DROP SCHEMA): all four schemas or, on
any error, nothing. The roles must exist
(deploy/postgres/init.sql, or your own). SQLite: each file is copied back over the service's database with
the backup API. Then migrate, then start the services.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Sequence
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Final
from urllib.parse import unquote, urlsplit, urlunsplit

ROOT: Final = Path(__file__).resolve().parents[1]
SERVICES: Final = ("order-api", "wallet-pool", "notifier", "telegram-gateway")
"""Each service's schema is its import package's name (``order_api``); its embedded file is ``<service>.db``."""
COMPOSE_DATABASE: Final = "exchange_desk"
COMPOSE_EXEC: Final = ("docker", "compose", "exec", "-T", "postgres")
DUMP_NAME: Final = "exchange_desk.dump"


def say(text: str) -> None:
    print(f"backup: {text}", file=sys.stderr)


def schema_of(service: str) -> str:
    return service.replace("-", "_")


def libpq_url(url: str) -> tuple[str, str | None]:
    """``url`` as pg_dump takes it, without its password, and the password: SQLAlchemy's
    ``postgresql+asyncpg://`` becomes ``postgresql://``; the password goes to PGPASSWORD, since a command
    line is visible to every user of the machine (ps) and printed with a failed command."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if ":" in netloc:  # an IPv6 address
        netloc = f"[{netloc}]"
    if parts.port is not None:
        netloc = f"{netloc}:{parts.port}"
    if parts.username is not None:
        netloc = f"{parts.username}@{netloc}"
    password = unquote(parts.password) if parts.password is not None else None
    return urlunsplit(parts._replace(scheme=parts.scheme.split("+", 1)[0], netloc=netloc)), password


def run_postgres(
    tool: str,
    arguments: Sequence[str],
    database_url: str | None,
    *,
    stdin: IO[bytes] | None = None,
    stdout: IO[bytes] | None = None,
) -> None:
    """``tool`` (pg_dump, pg_restore) against the given database, or inside the compose stack's postgres."""
    env = None
    if database_url is None:
        command = [*COMPOSE_EXEC, tool, "--username=postgres", f"--dbname={COMPOSE_DATABASE}"]
    else:
        if shutil.which(tool) is None:
            raise SystemExit(f"backup: {tool} is not on PATH (install PostgreSQL's client tools)")
        url, password = libpq_url(database_url)
        command = [tool, f"--dbname={url}"]
        if password is not None:
            env = os.environ | {"PGPASSWORD": password}
    try:
        subprocess.run([*command, *arguments], check=True, env=env, stdin=stdin, stdout=stdout)
    except subprocess.CalledProcessError as error:  # its message would print the command line
        raise SystemExit(
            f"backup: {tool} failed (exit status {error.returncode}); see its message above"
        ) from None


def backup_postgres(directory: Path, database_url: str | None) -> list[Path]:
    directory.mkdir(parents=True)
    target = directory / DUMP_NAME
    schemas = [schema_of(service) for service in SERVICES]
    with target.open("wb") as output:  # one pg_dump: one snapshot of every schema
        run_postgres(
            "pg_dump", ["--format=custom", *(f"--schema={s}" for s in schemas)], database_url, stdout=output
        )
    say(f"PostgreSQL schemas {', '.join(schemas)} → {target}")
    return [target]


def restore_postgres(directory: Path, database_url: str | None) -> None:
    dump = directory / DUMP_NAME
    if not dump.is_file():
        raise SystemExit(f"backup: no PostgreSQL dump {DUMP_NAME} in {directory}")
    arguments = ["--clean", "--if-exists", "--single-transaction", "--exit-on-error"]
    with dump.open("rb") as source:  # on stdin: the same for a local pg_restore and one in a container
        run_postgres("pg_restore", arguments, database_url, stdin=source)
    say(f"{dump} → PostgreSQL schemas {', '.join(schema_of(service) for service in SERVICES)}")


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
    try:
        written = backup_sqlite(directory / "sqlite", var_dir)
        if postgres:
            written += backup_postgres(directory / "postgres", database_url)
    except BaseException:
        shutil.rmtree(directory)  # a partial backup is no backup
        raise
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

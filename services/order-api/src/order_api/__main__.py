"""order-api's command line, for ops. It reads the service's own settings (``ORDER_API_*``), so it works on
the database the service uses; run the migrations first.

    python -m order_api audit-verify
        Walk the audit trail's hash chain. Prints ``OK`` with the row count (exit 0), or the first broken
        row and why (exit 1).
    python -m order_api create-operator --name NAME [--role admin] [--telegram-user-id ID]
        Create a member of staff (e.g. the first admin, without curl) and print their personal token once.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from collections.abc import Sequence
from typing import get_args

from sqlalchemy.exc import OperationalError, ProgrammingError

from order_api.audit.service import count_audit_rows, verify_audit_chain
from order_api.db import SCHEMA
from order_api.operators.schemas import OperatorCreate, RoleName
from order_api.operators.service import create_operator
from order_api.orders.lifecycle import Actor
from order_api.settings import Settings
from servicekit.db import Database
from servicekit.errors import DomainError
from servicekit.settings import load_settings, refuse_production_guesses


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m order_api", description="order-api administration.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("audit-verify", help="check the audit trail's hash chain; exit 1 when it is broken")
    create = commands.add_parser("create-operator", help="create an operator and print their token once")
    create.add_argument("--name", required=True)
    create.add_argument("--role", choices=get_args(RoleName), default="operator")
    create.add_argument("--telegram-user-id", type=int, default=None, metavar="ID")
    return parser


def _database(settings: Settings) -> Database:
    return Database(
        url=settings.database_url,
        schema=settings.database_schema or SCHEMA,
        var_dir=settings.var_dir,
        service_name=settings.service_name,
        pool_size=1,
    )


async def audit_verify(settings: Settings) -> int:
    database = _database(settings)
    try:
        async with database.sessionmaker() as session:
            broken = await verify_audit_chain(session)
            rows = await count_audit_rows(session)
    finally:
        await database.dispose()
    if broken is not None:
        print(f"BROKEN at audit_log row {broken.row_id}: {broken.reason}")
        return 1
    print(f"OK: the audit chain of {rows} rows is intact")
    return 0


async def create_operator_command(settings: Settings, args: argparse.Namespace) -> int:
    request = OperatorCreate(name=args.name, role=args.role, telegram_user_id=args.telegram_user_id)
    actor = Actor(kind="cli", id=getpass.getuser(), channel="cli", role="admin")
    database = _database(settings)
    try:
        async with database.sessionmaker.begin() as session:
            created = await create_operator(session=session, settings=settings, actor=actor, request=request)
    finally:
        await database.dispose()
    print(json.dumps(created.model_dump(mode="json"), indent=2))
    print("The token is shown only now; store it safely.", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = load_settings(Settings)
    refuse_production_guesses(settings, database_only=True)  # never a SQLite file of its own
    try:
        if args.command == "audit-verify":
            return asyncio.run(audit_verify(settings))
        return asyncio.run(create_operator_command(settings, args))
    except (OperationalError, ProgrammingError) as exc:
        print(
            f"cannot reach order-api's tables (is the database up and migrated?): {exc.orig}", file=sys.stderr
        )
        return 2
    except DomainError as exc:
        print(f"{exc.code}: {exc.detail}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

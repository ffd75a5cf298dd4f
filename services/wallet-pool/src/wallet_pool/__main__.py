"""wallet-pool's command line.

    python -m wallet_pool seed-demo [--per-currency 5]
    python -m wallet_pool outbox list [--status pending|dead|delivered] [--event-type T] [--aggregate-id ID]
    python -m wallet_pool outbox replay ID

``seed-demo`` gives an empty pool demo wallets (see :mod:`wallet_pool.wallets.demo`); it adds nothing when
the pool already has wallets. ``outbox`` lists the outbox's events (one JSON object a line) or puts a
dead-lettered one back in the queue, like ``/v1/admin/outbox``. It reads the service's own settings (``WALLET_POOL_*``), so it seeds the same
database the service uses; run the migrations first.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from sqlalchemy.exc import OperationalError, ProgrammingError

from coin_addresses import SUPPORTED
from servicekit.db import Database
from servicekit.errors import DomainError
from servicekit.outbox_admin import add_outbox_commands, run_outbox_command
from servicekit.settings import load_settings, refuse_production_guesses
from servicekit.telemetry import configure_logging
from wallet_pool.db import SCHEMA, outbox
from wallet_pool.settings import Settings
from wallet_pool.wallets.demo import seed_demo_wallets

log = logging.getLogger("wallet_pool.cli")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m wallet_pool", description="wallet-pool administration.")
    commands = parser.add_subparsers(dest="command", required=True)
    seed = commands.add_parser(
        "seed-demo", help="give an empty pool demo wallets (does nothing when the pool has wallets)"
    )
    seed.add_argument(
        "--per-currency",
        type=_positive_int,
        default=5,
        metavar="N",
        help="wallets per currency and network, e.g. 5 BTC, 5 ETH, 5 USDT/TRC20, 5 USDT/ERC20 (default: 5)",
    )
    add_outbox_commands(commands)
    return parser


def _database(settings: Settings) -> Database:
    return Database.for_command(settings, schema=SCHEMA)


async def outbox_command(settings: Settings, args: argparse.Namespace) -> int:
    database = _database(settings)
    try:
        return await run_outbox_command(args, database=database, table=outbox)
    finally:
        await database.dispose()


async def seed_demo(settings: Settings, *, per_currency: int) -> int:
    """Seed the service's database in one transaction; returns how many wallets were added."""
    database = _database(settings)
    try:
        async with database.sessionmaker.begin() as session:
            return await seed_demo_wallets(session=session, per_currency=per_currency)
    finally:
        await database.dispose()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = load_settings(Settings)
    refuse_production_guesses(settings, database_only=True)  # never a SQLite file of its own
    configure_logging(service=settings.service_name, level=settings.log_level, json_format=settings.log_json)
    if args.command == "outbox":
        try:
            return asyncio.run(outbox_command(settings, args))
        except (OperationalError, ProgrammingError) as exc:
            log.error("cannot read the outbox (is the database reachable and migrated?): %s", exc.orig)
            return 2
        except DomainError as exc:
            print(f"{exc.code}: {exc.detail}", file=sys.stderr)
            return 2
    try:
        added = asyncio.run(seed_demo(settings, per_currency=args.per_currency))
    except (OperationalError, ProgrammingError) as exc:
        log.error("cannot seed the wallet table (is the database reachable and migrated?): %s", exc.orig)
        return 1
    if added:
        networks = ", ".join(f"{c}/{n}" for c, ns in SUPPORTED.items() for n in ns)
        log.info("added %d demo wallets: %d each for %s", added, args.per_currency, networks)
    else:
        log.info("the pool already has wallets; no demo wallets added")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""order-api's command line, for ops. It reads the service's own settings (``ORDER_API_*``), so it works on
the database the service uses; run the migrations first.

    python -m order_api audit-verify [--max-checkpoint-age MINUTES] [--known-checkpoints FILE]
        Walk the audit trail's hash chain and hold it against its signed checkpoints (signatures checked with
        ``ORDER_API_AUDIT_CHECKPOINT_KEY``). Prints ``OK`` with the row and checkpoint counts (exit 0), or the
        first broken row or checkpoint and why (exit 1); exit 2 when it cannot tell (no database, or
        checkpoints but no key). With ``--max-checkpoint-age``, no checkpoint that recent is a failure too (the
        checkpoint job stopped, or checkpoints were deleted). ``--known-checkpoints`` names a file of the lines
        ``audit-checkpoint`` printed (its log, kept outside the database): each must still be in the database
        and match the log, which finds rows cut off together with the checkpoints that covered them.
    python -m order_api audit-checkpoint
        Verify the audit trail, then sign and store a checkpoint of its chain (row count and newest hash) with
        ``ORDER_API_AUDIT_CHECKPOINT_KEY``, and print it as JSON (exit 0); a broken trail is not checkpointed
        (exit 1). Run it periodically with the credentials of the role that owns the schema (the service's
        runtime role cannot write checkpoints), never from the service itself, and keep its output.
    python -m order_api create-operator --name NAME [--role admin] [--telegram-user-id ID]
        Create a member of staff (e.g. the first admin, without curl) and print their personal token once.
    python -m order_api telegram-links
        The operators linked to a Telegram account (the one record the Telegram gateway asks about): operator
        id, name, role, whether active, and the Telegram user id, one per line.
    python -m order_api telegram-unlink OPERATOR_ID | --telegram-user-id ID
        End an operator's Telegram link (audited, as an admin clearing ``telegram_user_id``): their order
        actions from the bot stop at once, its menu within ``TELEGRAM_GATEWAY_OPERATOR_CACHE_SECONDS``.
    python -m order_api outbox list [--status pending|dead|delivered] [--event-type T] [--aggregate-id ID]
    python -m order_api outbox replay ID
        List the outbox's events (one JSON object a line, newest first), or put a dead-lettered one back in
        the queue (audited as ``outbox.event_replayed``), like ``/v1/admin/outbox``.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import get_args

from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from order_api.audit.outbox import audit_cli_replay
from order_api.audit.schemas import CheckpointRecord
from order_api.audit.service import AuditVerification, Broken, checkpoint_audit_log, verify_audit_log
from order_api.db import SCHEMA, outbox
from order_api.operators.errors import OperatorNotFoundError, TelegramLinkNotFoundError
from order_api.operators.schemas import OperatorCreate, OperatorRead, OperatorUpdate, RoleName
from order_api.operators.service import create_operator, list_operators, update_operator
from order_api.orders.lifecycle import Actor
from order_api.protection import DataProtectionConfigError, decode_key
from order_api.settings import Settings
from servicekit.db import Database, utcnow
from servicekit.errors import DomainError
from servicekit.outbox_admin import add_outbox_commands, run_outbox_command
from servicekit.settings import load_settings, refuse_production_guesses

CHECKPOINT_KEY_SETTING = "ORDER_API_AUDIT_CHECKPOINT_KEY"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m order_api", description="order-api administration.")
    commands = parser.add_subparsers(dest="command", required=True)
    verify = commands.add_parser(
        "audit-verify", help="check the audit trail's hash chain and checkpoints; exit 1 when broken"
    )
    verify.add_argument(
        "--max-checkpoint-age",
        type=float,
        default=None,
        metavar="MINUTES",
        help="fail unless the newest checkpoint is at most this old",
    )
    verify.add_argument(
        "--known-checkpoints",
        type=Path,
        default=None,
        metavar="FILE",
        help="lines audit-checkpoint printed, kept outside the database: each must still hold",
    )
    commands.add_parser(
        "audit-checkpoint", help="verify the audit trail, then sign and store a checkpoint of its chain"
    )
    create = commands.add_parser("create-operator", help="create an operator and print their token once")
    create.add_argument("--name", required=True)
    create.add_argument("--role", choices=get_args(RoleName), default="operator")
    create.add_argument("--telegram-user-id", type=int, default=None, metavar="ID")
    commands.add_parser("telegram-links", help="the operators linked to a Telegram account")
    unlink = commands.add_parser("telegram-unlink", help="end an operator's Telegram link (audited)")
    whom = unlink.add_mutually_exclusive_group(required=True)
    whom.add_argument("operator_id", nargs="?", metavar="OPERATOR_ID")
    whom.add_argument("--telegram-user-id", type=int, metavar="ID", help="the operator linked to this user")
    add_outbox_commands(commands)
    return parser


def _database(settings: Settings) -> Database:
    return Database.for_command(settings, schema=SCHEMA)


class CheckpointKeyMissingError(RuntimeError):
    """The checkpoint key is needed and not configured."""


def _checkpoint_key(settings: Settings) -> bytes | None:
    if settings.audit_checkpoint_key is None:
        return None
    return decode_key(
        settings.audit_checkpoint_key.get_secret_value(), name=CHECKPOINT_KEY_SETTING, max_bytes=None
    )


class KnownCheckpointsError(ValueError):
    """The file of known checkpoints cannot be read."""


def _known_checkpoints(path: Path | None) -> list[CheckpointRecord]:
    """The checkpoints in ``path``: one per line, the JSON object ``audit-checkpoint`` printed (anything
    before its ``{`` on the line, such as a log prefix, is ignored)."""
    if path is None:
        return []
    records = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise KnownCheckpointsError(f"cannot read {path}: {exc.strerror}") from exc
    for number, line in enumerate(lines, start=1):
        if "{" not in line:
            continue
        try:
            records.append(CheckpointRecord.model_validate_json(line[line.index("{") :]))
        except ValidationError as exc:
            raise KnownCheckpointsError(
                f"{path}:{number} is not a checkpoint audit-checkpoint printed"
            ) from exc
    return records


def _verdict(verification: AuditVerification, *, max_age_minutes: float | None) -> tuple[int, str]:
    if verification.broken is not None:
        return 1, str(verification.broken)
    newest = verification.newest_checkpoint
    if max_age_minutes is not None and (
        newest is None or utcnow() - newest.checkpointed_at > timedelta(minutes=max_age_minutes)
    ):
        when = (
            "none was ever taken"
            if newest is None
            else f"the newest is from {newest.checkpointed_at:%Y-%m-%dT%H:%M:%SZ}"
        )
        return 1, (
            f"BROKEN: no checkpoint in the last {max_age_minutes:g} minutes ({when}): "
            "is audit-checkpoint running?"
        )
    summary = f"OK: the audit chain of {verification.tip.row_count} rows is intact"
    if newest is None:
        return 0, f"{summary}; no checkpoint yet"
    count = verification.checkpoints
    agree = "1 signed checkpoint agrees" if count == 1 else f"{count} signed checkpoints agree"
    return 0, f"{summary}; {agree} with it (the newest covers {newest.row_count} rows)"


async def audit_verify(settings: Settings, args: argparse.Namespace) -> int:
    key = _checkpoint_key(settings)
    known = _known_checkpoints(args.known_checkpoints)
    if key is None and known:
        raise CheckpointKeyMissingError(f"{CHECKPOINT_KEY_SETTING} is not set: known checkpoints need it")
    database = _database(settings)
    try:
        async with database.sessionmaker() as session:
            verification = await verify_audit_log(session, checkpoint_key=key, known=known)
    finally:
        await database.dispose()
    if key is None and verification.checkpoints and verification.broken is None:
        # Without the key a forged checkpoint cannot be told from a real one: no verdict rather than a false OK.
        raise CheckpointKeyMissingError(
            f"{CHECKPOINT_KEY_SETTING} is not set: the {verification.checkpoints} checkpoints cannot be checked"
        )
    code, message = _verdict(verification, max_age_minutes=args.max_checkpoint_age)
    print(message)
    return code


async def audit_checkpoint(settings: Settings) -> int:
    key = _checkpoint_key(settings)
    if key is None:
        raise CheckpointKeyMissingError(f"{CHECKPOINT_KEY_SETTING} is not set")
    database = _database(settings)
    try:
        async with database.sessionmaker.begin() as session:
            checkpoint = await checkpoint_audit_log(session, checkpoint_key=key)
    finally:
        await database.dispose()
    if isinstance(checkpoint, Broken):
        print(f"{checkpoint}; no checkpoint taken")
        return 1
    record = CheckpointRecord.of(checkpoint).model_dump_json()
    print(f"OK: checkpoint {checkpoint.id} covers {checkpoint.row_count} rows {record}")
    return 0


def _cli_actor() -> Actor:
    """Whoever runs the command, as an admin: the audit log names the system user and channel ``cli``."""
    return Actor(kind="cli", id=getpass.getuser(), channel="cli", role="admin")


async def create_operator_command(settings: Settings, args: argparse.Namespace) -> int:
    request = OperatorCreate(name=args.name, role=args.role, telegram_user_id=args.telegram_user_id)
    actor = _cli_actor()
    database = _database(settings)
    try:
        async with database.sessionmaker.begin() as session:
            created = await create_operator(session=session, settings=settings, actor=actor, request=request)
    finally:
        await database.dispose()
    print(json.dumps(created.model_dump(mode="json"), indent=2))
    print("The token is shown only now; store it safely.", file=sys.stderr)
    return 0


def _link_line(operator: OperatorRead) -> str:
    state = "active" if operator.active else "inactive"
    return f"{operator.telegram_user_id}\t{operator.id}\t{operator.role}\t{state}\t{operator.name}"


async def telegram_links(settings: Settings) -> int:
    database = _database(settings)
    try:
        async with database.sessionmaker() as session:
            operators = await list_operators(session=session)
    finally:
        await database.dispose()
    linked = [operator for operator in operators if operator.telegram_user_id is not None]
    if not linked:
        print("no operator is linked to Telegram", file=sys.stderr)
        return 0
    print("telegram_user_id\toperator_id\trole\tstate\tname")
    for operator in linked:
        print(_link_line(operator))
    return 0


def _linked_operator(operators: Sequence[OperatorRead], args: argparse.Namespace) -> OperatorRead:
    """The operator ``telegram-unlink`` names (by id, or by the Telegram user linked to them)."""
    if args.operator_id is not None:
        found = next((o for o in operators if o.id == args.operator_id), None)
        if found is None:
            raise OperatorNotFoundError(f"No operator {args.operator_id}.")
    else:
        found = next((o for o in operators if o.telegram_user_id == args.telegram_user_id), None)
        if found is None:
            raise TelegramLinkNotFoundError(
                f"No operator is linked to Telegram user {args.telegram_user_id}."
            )
    if found.telegram_user_id is None:
        raise TelegramLinkNotFoundError(f"Operator {found.id} ({found.name}) is not linked to Telegram.")
    return found


async def telegram_unlink(settings: Settings, args: argparse.Namespace) -> int:
    database = _database(settings)
    try:
        async with database.sessionmaker.begin() as session:
            linked = _linked_operator(await list_operators(session=session), args)
            await update_operator(
                session=session,
                actor=_cli_actor(),
                operator_id=linked.id,
                request=OperatorUpdate(telegram_user_id=None),
            )
    finally:
        await database.dispose()
    print(f"unlinked: {_link_line(linked)}")
    return 0


async def outbox_command(settings: Settings, args: argparse.Namespace) -> int:
    database = _database(settings)
    try:
        return await run_outbox_command(args, database=database, table=outbox, on_replay=audit_cli_replay)
    finally:
        await database.dispose()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = load_settings(Settings)
    refuse_production_guesses(settings, database_only=True)  # never a SQLite file of its own
    try:
        if args.command == "audit-verify":
            return asyncio.run(audit_verify(settings, args))
        if args.command == "audit-checkpoint":
            return asyncio.run(audit_checkpoint(settings))
        if args.command == "telegram-links":
            return asyncio.run(telegram_links(settings))
        if args.command == "telegram-unlink":
            return asyncio.run(telegram_unlink(settings, args))
        if args.command == "outbox":
            return asyncio.run(outbox_command(settings, args))
        return asyncio.run(create_operator_command(settings, args))
    except (CheckpointKeyMissingError, DataProtectionConfigError, KnownCheckpointsError) as exc:
        print(f"cannot {args.command}: {exc}", file=sys.stderr)
        return 2
    except IntegrityError:
        print("another audit-checkpoint stored its checkpoint first; run it again", file=sys.stderr)
        return 2
    except (OperationalError, ProgrammingError) as exc:
        print(
            f"cannot use order-api's tables (is the database up and migrated, and may this role do it?): "
            f"{exc.orig}",
            file=sys.stderr,
        )
        return 2
    except DomainError as exc:
        print(f"{exc.code}: {exc.detail}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

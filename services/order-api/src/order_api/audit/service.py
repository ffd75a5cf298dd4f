"""Appending to the audit trail, reading it, and proving it was not edited.

A row's ``row_hash`` is the SHA-256 of the canonical JSON (sorted keys, no spaces, UTF-8) of its fields,
``prev_hash`` included, so each row seals the whole chain before it. Appends are serialised by the
``UPDATE`` of the one-row chain head, which takes its row lock (PostgreSQL) or the write lock (SQLite)
until the appending transaction ends: the chain stays one line under concurrency, and ids stay gapless
because a rolled-back append rolls the head back too.

The chain alone proves nothing to someone who can rewrite the whole table: they recompute every hash. So the
chain's length and newest hash are checkpointed (``audit_checkpoint``) by ``python -m order_api
audit-checkpoint``, which runs with credentials of its own and signs each checkpoint (HMAC-SHA256) with a key
the service does not hold; :func:`verify_audit_log` holds the chain against every checkpoint. Appending is
untouched by this: no extra statement on any request.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from order_api.audit import repository
from order_api.audit.models import GENESIS_HASH, AuditCheckpoint
from order_api.audit.schemas import AuditEntryRead, AuditFilter, AuditPage, CheckpointRecord
from servicekit.db import utcnow
from servicekit.telemetry import current_trace_id

CHECKPOINT_CONTEXT = b"order-api audit checkpoint\n"
"""Prefixed to what a checkpoint key signs, so its signatures mean nothing anywhere else."""
HASHED_FIELDS = (
    "id",
    "occurred_at",
    "actor",
    "actor_role",
    "action",
    "target_type",
    "target_id",
    "parameters",
    "channel",
    "correlation_id",
    "prev_hash",
)


class AuditedActor(Protocol):
    """Who acted, as the audit trail names them (``order_api.orders.lifecycle.Actor`` is one)."""

    @property
    def label(self) -> str: ...

    @property
    def actor_role(self) -> str: ...

    @property
    def channel(self) -> str: ...


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def _moment(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def row_hash(row: Mapping[str, Any]) -> str:
    """The hash a row with these fields must carry."""
    fields = {name: row[name] for name in HASHED_FIELDS}
    fields["occurred_at"] = _moment(row["occurred_at"])
    return hashlib.sha256(canonical_json(fields).encode()).hexdigest()


async def append_audit(
    session: AsyncSession,
    *,
    actor: AuditedActor,
    action: str,
    target_type: str,
    target_id: str,
    parameters: Mapping[str, Any] | None = None,
) -> int:
    """Append one row in the caller's transaction; returns its id. The chain head stays locked until the
    transaction ends, so keep appending transactions short."""
    head = await repository.advance_chain_head(session)
    row: dict[str, Any] = {
        "id": head.last_id,
        "occurred_at": utcnow(),
        "actor": actor.label,
        "actor_role": actor.actor_role,
        "action": action,
        "target_type": target_type,
        "target_id": target_id,
        # Stored exactly as hashed: whatever JSON makes of a value is what the hash covers.
        "parameters": json.loads(canonical_json(dict(parameters or {}))),
        "channel": actor.channel,
        "correlation_id": current_trace_id(),
        "prev_hash": head.last_hash,
    }
    row["row_hash"] = row_hash(row)
    await repository.insert_audit_row(session, row=row)
    await repository.record_chain_hash(session, last_hash=row["row_hash"], updated_at=row["occurred_at"])
    return int(row["id"])


@dataclass(frozen=True, slots=True)
class Broken:
    """The first place the chain (or, with ``checkpoint``, a checkpoint of it) does not hold, and why."""

    row_id: int
    reason: str
    checkpoint: int | None = None

    def __str__(self) -> str:
        if self.checkpoint is not None:
            return f"BROKEN at audit_checkpoint {self.checkpoint}: {self.reason}"
        return f"BROKEN at audit_log row {self.row_id}: {self.reason}"


@dataclass(frozen=True, slots=True)
class ChainTip:
    """How far the chain held: its last row's id (the row count) and hash."""

    row_count: int
    head_hash: str


def _row_break(fields: Mapping[str, Any], *, expected_id: int, previous_hash: str) -> Broken | None:
    """Why the row read where row ``expected_id`` should be does not continue the chain, if it does not."""
    if fields["id"] != expected_id:
        return Broken(expected_id, f"row {expected_id} is missing (the next row is {fields['id']})")
    if fields["prev_hash"] != previous_hash:
        return Broken(expected_id, "prev_hash is not the hash of the row before it")
    if row_hash(fields) != fields["row_hash"]:
        return Broken(expected_id, "the row's content does not match its row_hash")
    return None


async def _head_break(session: AsyncSession, tip: ChainTip) -> Broken | None:
    """Why the chain head does not name the chain's last row, if it does not."""
    head = await repository.chain_head(session)
    last_id = tip.row_count
    if head is None:
        return Broken(last_id, "the chain head is missing")
    if head.last_id > last_id:
        return Broken(last_id + 1, f"rows {last_id + 1} to {head.last_id} are missing from the end")
    if head.last_id < last_id:
        return Broken(head.last_id + 1, "the row was not appended through the chain head")
    if head.last_hash != tip.head_hash:
        return Broken(last_id, "the last row's hash is not the one the chain head recorded")
    return None


async def _walk_chain(
    session: AsyncSession, *, batch_size: int, positions: set[int]
) -> tuple[Broken | None, ChainTip, dict[int, str]]:
    """Walk the chain from its first row; returns the first break (if any), how far it held, and the
    ``row_hash`` of each row listed in ``positions`` that it reached (position 0 is the genesis hash)."""
    expected_id, previous_hash = 1, GENESIS_HASH
    hashes = {0: GENESIS_HASH} if 0 in positions else {}
    broken: Broken | None = None
    while broken is None:
        rows = await repository.chain_rows(
            session, fields=(*HASHED_FIELDS, "row_hash"), from_id=expected_id, limit=batch_size
        )
        for row in rows:
            fields = row._asdict()
            broken = _row_break(fields, expected_id=expected_id, previous_hash=previous_hash)
            if broken is not None:
                break
            expected_id, previous_hash = expected_id + 1, fields["row_hash"]
            if fields["id"] in positions:
                hashes[fields["id"]] = previous_hash
        if len(rows) < batch_size:
            break
    tip = ChainTip(expected_id - 1, previous_hash)
    return broken or await _head_break(session, tip), tip, hashes


async def verify_audit_chain(session: AsyncSession, *, batch_size: int = 1000) -> Broken | None:
    """Walk the chain from its first row: ids must follow each other, each ``prev_hash`` must be the row
    before's ``row_hash``, each ``row_hash`` must match the row's content, and the last row must be the
    one the chain head names (rows cut off the end are found too). ``None`` when all of it holds.

    Someone who can write ``audit_log`` and ``audit_chain_head`` (not the service's runtime role: the table's
    owner or a superuser) can still rewrite rows and recompute every hash after them, or cut the tail and set
    the head back: :func:`verify_audit_log` also holds the chain against its signed checkpoints."""
    broken, _tip, _hashes = await _walk_chain(session, batch_size=batch_size, positions=set())
    return broken


# -- checkpoints ------------------------------------------------------------------------------------------


def checkpoint_signature(
    key: bytes,
    *,
    checkpoint_id: int,
    row_count: int,
    head_hash: str,
    checkpointed_at: datetime,
    previous_signature: str,
) -> str:
    """HMAC-SHA256 (hex) of a checkpoint's fields, in canonical JSON."""
    message = canonical_json(
        {
            "id": checkpoint_id,
            "row_count": row_count,
            "head_hash": head_hash,
            "checkpointed_at": _moment(checkpointed_at),
            "previous_signature": previous_signature,
        }
    )
    return hmac.new(key, CHECKPOINT_CONTEXT + message.encode(), hashlib.sha256).hexdigest()


def _signature_of(checkpoint: AuditCheckpoint | CheckpointRecord, key: bytes) -> str:
    return checkpoint_signature(
        key,
        checkpoint_id=checkpoint.id,
        row_count=checkpoint.row_count,
        head_hash=checkpoint.head_hash,
        checkpointed_at=checkpoint.checkpointed_at,
        previous_signature=checkpoint.previous_signature,
    )


@dataclass(frozen=True, slots=True)
class AuditVerification:
    """What ``audit-verify`` found: the chain's length and hash, the checkpoints held against it, and the
    first break (``None`` when everything holds)."""

    tip: ChainTip
    checkpoints: int
    newest_checkpoint: AuditCheckpoint | None
    broken: Broken | None


async def verify_audit_log(
    session: AsyncSession,
    *,
    checkpoint_key: bytes | None,
    known: Sequence[CheckpointRecord] = (),
    batch_size: int = 1000,
) -> AuditVerification:
    """The chain (as :func:`verify_audit_chain`) and every checkpoint of it: checkpoints numbered from 1
    without gaps, each signing the one before, each signature made with ``checkpoint_key`` (not checked
    without it), and each ``(row_count, head_hash)`` still the chain's at that position. A row edited and the
    chain recomputed, rows cut off the end, or a checkpoint forged or removed from the middle all break it;
    rows appended after the newest checkpoint are covered only by the chain until the next one.

    ``known`` are checkpoints kept outside the database (checked only with ``checkpoint_key``): each must be
    signed with the key, still match the chain, and still be in ``audit_checkpoint`` as it was."""
    checkpoints = await repository.all_checkpoints(session)
    positions = {checkpoint.row_count for checkpoint in checkpoints} | {record.row_count for record in known}
    broken, tip, hashes = await _walk_chain(session, batch_size=batch_size, positions=positions)
    if broken is None and checkpoint_key is not None:
        broken = _check_known(known, stored=checkpoints, tip=tip, hashes=hashes, key=checkpoint_key)
    if broken is None:
        broken = _check_checkpoints(checkpoints, tip=tip, hashes=hashes, key=checkpoint_key)
    return AuditVerification(
        tip=tip,
        checkpoints=len(checkpoints),
        newest_checkpoint=checkpoints[-1] if checkpoints else None,
        broken=broken,
    )


def _held_against_chain(
    checkpoint: AuditCheckpoint | CheckpointRecord, *, tip: ChainTip, hashes: Mapping[int, str]
) -> Broken | None:
    """Whether the chain still has, at the checkpoint's position, the hash it checkpointed."""
    row = checkpoint.row_count
    if row > tip.row_count:
        return Broken(
            tip.row_count + 1,
            f"it covered {row} rows but the log has {tip.row_count}: rows {tip.row_count + 1} to {row} were removed",
            checkpoint.id,
        )
    if hashes.get(row) != checkpoint.head_hash:
        return Broken(
            row,
            f"the chain's hash at row {row} is not the one checkpointed at {_moment(checkpoint.checkpointed_at)}: "
            f"rows 1 to {row} were rewritten",
            checkpoint.id,
        )
    return None


def _check_checkpoints(
    checkpoints: list[AuditCheckpoint], *, tip: ChainTip, hashes: Mapping[int, str], key: bytes | None
) -> Broken | None:
    previous_signature = GENESIS_HASH
    for number, checkpoint in enumerate(checkpoints, start=1):
        row = checkpoint.row_count
        if checkpoint.id != number:
            return Broken(row, f"checkpoint {number} is missing (the next one is {checkpoint.id})", number)
        if key is not None and not hmac.compare_digest(_signature_of(checkpoint, key), checkpoint.signature):
            return Broken(
                row, "its signature was not made with the checkpoint key (a forged checkpoint)", number
            )
        if checkpoint.previous_signature != previous_signature:
            return Broken(
                row, f"it does not follow checkpoint {number - 1} (a checkpoint was replaced)", number
            )
        broken = _held_against_chain(checkpoint, tip=tip, hashes=hashes)
        if broken is not None:
            return broken
        previous_signature = checkpoint.signature
    return None


def _check_known(
    known: Sequence[CheckpointRecord],
    *,
    stored: list[AuditCheckpoint],
    tip: ChainTip,
    hashes: Mapping[int, str],
    key: bytes,
) -> Broken | None:
    by_id = {checkpoint.id: CheckpointRecord.of(checkpoint) for checkpoint in stored}
    for record in known:
        if not hmac.compare_digest(_signature_of(record, key), record.signature):
            return Broken(record.row_count, "the copy given is not signed with the checkpoint key", record.id)
        broken = _held_against_chain(record, tip=tip, hashes=hashes)
        if broken is not None:
            return broken
        if by_id.get(record.id) != record:
            return Broken(
                record.row_count,
                "it is gone from audit_checkpoint or was replaced there (a copy kept it)",
                record.id,
            )
    return None


async def checkpoint_audit_log(
    session: AsyncSession, *, checkpoint_key: bytes, batch_size: int = 1000
) -> AuditCheckpoint | Broken:
    """Verify the log (chain and checkpoints) and, when it holds, sign a new checkpoint of the chain as far
    as it was verified; the caller commits. A broken log is never checkpointed: it returns the break."""
    verification = await verify_audit_log(session, checkpoint_key=checkpoint_key, batch_size=batch_size)
    if verification.broken is not None:
        return verification.broken
    newest = verification.newest_checkpoint
    checkpoint = AuditCheckpoint(
        id=newest.id + 1 if newest else 1,
        row_count=verification.tip.row_count,
        head_hash=verification.tip.head_hash,
        checkpointed_at=utcnow(),
        previous_signature=newest.signature if newest else GENESIS_HASH,
    )
    checkpoint.signature = _signature_of(checkpoint, checkpoint_key)
    session.add(checkpoint)
    await session.flush()
    return checkpoint


async def list_audit(*, session: AsyncSession, query: AuditFilter) -> AuditPage:
    """Audit rows matching ``query``, newest first."""
    rows = await repository.audit_page(session, query=query)
    page, next_cursor = repository.NEWEST_FIRST.cut(rows, limit=query.limit)
    return AuditPage(
        items=[AuditEntryRead.model_validate(row, from_attributes=True) for row in page],
        next_cursor=next_cursor,
    )

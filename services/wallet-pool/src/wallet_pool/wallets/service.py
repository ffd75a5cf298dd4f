"""Importing, listing, disabling and enabling the pool's deposit addresses."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from coin_addresses import InvalidAddressError, validate_address
from servicekit.db import utcnow
from servicekit.errors import ValidationFailedError
from wallet_pool.allocations.service import serve_waiting_orders
from wallet_pool.metrics import PoolMetrics
from wallet_pool.pools import Pool, canonical_network, lock_pool, resolve_pool
from wallet_pool.settings import Settings
from wallet_pool.wallets import repository
from wallet_pool.wallets.errors import WalletImportInvalidError, WalletNotFoundError
from wallet_pool.wallets.models import WalletStatus
from wallet_pool.wallets.schemas import WalletImportRead, WalletPageRead, WalletRead

log = logging.getLogger("wallet_pool.wallets")


async def import_wallets(
    *,
    session: AsyncSession,
    settings: Settings,
    currency: str,
    network: str | None,
    addresses: Sequence[str],
    metrics: PoolMetrics | None = None,
) -> WalletImportRead:
    """Add a batch of addresses to a pool as free wallets, all or none.

    Every line is checked (checksum, network, duplicates in the batch and in the pool) before anything is
    written; any bad line refuses the whole batch with one error per bad line, naming it. Orders waiting in
    the pool get the new wallets at once."""
    pool = resolve_pool(currency=currency, network=network)
    limit = settings.wallet_import_max_addresses
    if len(addresses) > limit:
        raise ValidationFailedError.for_field(
            "addresses",
            f"{len(addresses)} addresses in one import; at most {limit} are accepted, split the list",
            kind="too_long",
        )
    errors: list[dict[str, Any]] = []
    line_of: dict[str, int] = {}  # normalised address → its index in the request
    for index, raw in enumerate(addresses):
        try:
            address = validate_address(currency=pool.currency, network=pool.network, address=raw)
        except InvalidAddressError as exc:
            errors.append(_line_error(index, raw, exc.reason, "invalid_address"))
            continue
        if address in line_of:
            errors.append(
                _line_error(index, raw, f"duplicate of line {line_of[address] + 1}", "duplicate_in_request")
            )
            continue
        line_of[address] = index
    for address, other_pool in (await repository.pools_of_addresses(session, line_of)).items():
        errors.append(_already_in_pool(line_of[address], addresses[line_of[address]], other_pool))
    _refuse_if_any(errors, total=len(addresses))

    await lock_pool(session, pool)  # new free wallets are owed to the orders waiting in this pool
    now = utcnow()
    rows = await repository.insert_free_wallets(session, pool=pool, addresses=list(line_of), now=now)
    if len(rows) != len(line_of):  # another import stored some of them since the check above
        stored = {row["address"] for row in rows}
        found = await repository.pools_of_addresses(session, (a for a in line_of if a not in stored))
        _refuse_if_any(
            [_already_in_pool(line_of[a], addresses[line_of[a]], p) for a, p in found.items()],
            total=len(addresses),
        )
    served = await serve_waiting_orders(
        session=session, settings=settings, pool=pool, now=now, metrics=metrics
    )
    if served:
        given = {wallet.id for wallet in served.values()}
        rows = [await _wallet(session, int(row["id"])) if row["id"] in given else row for row in rows]
    log.info(
        "wallets imported",
        extra={"pool": str(pool), "imported": len(rows), "handed_to_waiting_orders": len(served)},
    )
    return WalletImportRead(
        imported=len(rows),
        currency=pool.currency,
        network=pool.network,
        wallets=[WalletRead.model_validate(dict(row)) for row in rows],
    )


async def list_wallets(
    *,
    session: AsyncSession,
    currency: str | None,
    network: str | None,
    status: WalletStatus | None,
    cursor: str | None,
    limit: int,
) -> WalletPageRead:
    """The pool's wallets by id (oldest first), filtered, a page at a time."""
    page, next_cursor = await repository.wallet_page(
        session,
        currency=currency.strip().upper() if currency else None,
        network=canonical_network(network) if network else None,
        status=status.value if status else None,
        cursor=cursor,
        limit=limit,
    )
    return WalletPageRead(
        items=[WalletRead.model_validate(dict(row)) for row in page], next_cursor=next_cursor
    )


async def disable_wallet(*, session: AsyncSession, wallet_id: int) -> WalletRead:
    """Take a wallet out of service: a free one at once; a reserved one keeps serving its order and is
    disabled when that order releases it (it is not handed to the next order)."""
    row = await repository.request_disable(session, wallet_id)
    if row is None:
        raise WalletNotFoundError(f"No wallet has id {wallet_id}.")
    log.info("wallet disabled", extra={"wallet_id": wallet_id, "status": row["status"]})
    return WalletRead.model_validate(dict(row))


async def enable_wallet(
    *, session: AsyncSession, settings: Settings, wallet_id: int, metrics: PoolMetrics | None = None
) -> WalletRead:
    """Put a disabled wallet back in service (or cancel a pending disable). If orders wait in its pool, the
    head of the queue gets it at once."""
    current = await _wallet(session, wallet_id)
    pool = Pool(current["currency"], current["network"])
    await lock_pool(session, pool)
    row = await repository.enable(session, wallet_id)
    if row is None:
        raise WalletNotFoundError(f"No wallet has id {wallet_id}.")
    if row["status"] == WalletStatus.FREE.value:
        served = await serve_waiting_orders(
            session=session, settings=settings, pool=pool, now=utcnow(), metrics=metrics
        )
        if any(wallet.id == wallet_id for wallet in served.values()):
            row = await _wallet(session, wallet_id)
    log.info("wallet enabled", extra={"wallet_id": wallet_id, "status": row["status"]})
    return WalletRead.model_validate(dict(row))


async def _wallet(session: AsyncSession, wallet_id: int) -> RowMapping:
    row = await repository.wallet_by_id(session, wallet_id)
    if row is None:
        raise WalletNotFoundError(f"No wallet has id {wallet_id}.")
    return row


def _line_error(index: int, address: str, message: str, kind: str) -> dict[str, Any]:
    return {
        "field": f"addresses.{index}",
        "line": index + 1,
        "address": address,
        "message": message,
        "type": kind,
    }


def _already_in_pool(index: int, address: str, pool: Pool) -> dict[str, Any]:
    return _line_error(index, address, f"already in the pool ({pool})", "already_in_pool")


def _refuse_if_any(errors: list[dict[str, Any]], *, total: int) -> None:
    if not errors:
        return
    errors.sort(key=lambda error: int(error["line"]))
    lines = ", ".join(str(error["line"]) for error in errors[:20]) + (", …" if len(errors) > 20 else "")
    raise WalletImportInvalidError(
        f"{len(errors)} of {total} lines cannot be imported (lines {lines}); nothing was imported.",
        errors=errors,
    )

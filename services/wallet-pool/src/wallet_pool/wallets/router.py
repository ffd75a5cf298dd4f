"""``/v1/wallets``: import, list, disable and enable deposit addresses."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, status

from servicekit.apikeys import Caller, require_scope
from servicekit.app import DbSession
from servicekit.bounds import row_id_path
from servicekit.errors import problem_responses
from servicekit.pagination import DEFAULT_PAGE_SIZE, CursorParam, LimitParam
from wallet_pool.context import Ctx
from wallet_pool.wallets import service
from wallet_pool.wallets.models import WalletStatus
from wallet_pool.wallets.schemas import WalletImportCreate, WalletImportRead, WalletPageRead, WalletRead

router = APIRouter(prefix="/v1/wallets", tags=["wallets"])

CanRead = Annotated[Caller, Depends(require_scope("wallets:read"))]
CanWrite = Annotated[Caller, Depends(require_scope("wallets:write"))]
WalletId = Annotated[int, row_id_path("The wallet's id.")]


@router.post(
    "",
    operation_id="importWallets",
    status_code=status.HTTP_201_CREATED,
    response_model=WalletImportRead,
    summary="Import deposit addresses into a pool",
    description=(
        "Every address is validated with its checksum for the currency and network (`network` defaults to "
        "the currency's first) and stored normalised. **All or nothing**: one bad line (invalid, a duplicate "
        "within the request, or already in the pool) refuses the whole import with `422` "
        "`validation_failed`, whose `errors[]` has one entry per bad line: `field` (`addresses.<index>`), "
        "`line` (1-based), `address`, `message` and `type` (`invalid_address`, `duplicate_in_request`, "
        "`already_in_pool`). At most `wallet_import_max_addresses` (default 1000) per request. Orders "
        "waiting in the pool receive the new wallets at once (announced as `wallet.assigned`). "
        "Scope `wallets:write`."
    ),
    responses=problem_responses(401, 403, 422),
)
async def import_wallets(
    body: WalletImportCreate, session: DbSession, ctx: Ctx, _caller: CanWrite
) -> WalletImportRead:
    return await service.import_wallets(
        session=session,
        settings=ctx.settings,
        currency=body.currency,
        network=body.network,
        addresses=body.addresses,
        metrics=ctx.metrics,
    )


@router.get(
    "",
    operation_id="listWallets",
    response_model=WalletPageRead,
    summary="List wallets",
    description=(
        "Oldest first (by id), filtered by currency, network and status; cursor pagination that stays "
        "stable while wallets are added: pass `next_cursor` back as `cursor`. Scope `wallets:read`."
    ),
    responses=problem_responses(401, 403, 422),
)
async def list_wallets(
    session: DbSession,
    _caller: CanRead,
    currency: Annotated[str | None, Query(max_length=10, examples=["USDT"])] = None,
    network: Annotated[str | None, Query(max_length=16, examples=["TRC20"])] = None,
    wallet_status: Annotated[WalletStatus | None, Query(alias="status")] = None,
    cursor: CursorParam = None,
    limit: LimitParam = DEFAULT_PAGE_SIZE,
) -> WalletPageRead:
    return await service.list_wallets(
        session=session, currency=currency, network=network, status=wallet_status, cursor=cursor, limit=limit
    )


@router.post(
    "/{wallet_id}/disable",
    operation_id="disableWallet",
    response_model=WalletRead,
    summary="Take a wallet out of service",
    description=(
        "A free wallet is disabled at once. A reserved one keeps serving its order, is flagged "
        "(`disable_on_release`) and becomes disabled when that order releases it, instead of going to the "
        "next order. Disabling again changes nothing. Scope `wallets:write`."
    ),
    responses=problem_responses(401, 403, 404),
)
async def disable_wallet(wallet_id: WalletId, session: DbSession, _caller: CanWrite) -> WalletRead:
    return await service.disable_wallet(session=session, wallet_id=wallet_id)


@router.post(
    "/{wallet_id}/enable",
    operation_id="enableWallet",
    response_model=WalletRead,
    summary="Put a wallet back in service",
    description=(
        "A disabled wallet becomes free (and goes at once to the head of its pool's queue if orders wait); "
        "a reserved one flagged for disabling loses the flag. Scope `wallets:write`."
    ),
    responses=problem_responses(401, 403, 404),
)
async def enable_wallet(wallet_id: WalletId, session: DbSession, ctx: Ctx, _caller: CanWrite) -> WalletRead:
    return await service.enable_wallet(
        session=session, settings=ctx.settings, wallet_id=wallet_id, metrics=ctx.metrics
    )

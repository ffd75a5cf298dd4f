"""The order-api app: ``uvicorn order_api.main:create_app --factory``."""

from __future__ import annotations

from fastapi import FastAPI

from order_api.clients.wallet_pool import WalletPoolClient
from order_api.db import SCHEMA, inbox, outbox
from order_api.settings import Settings
from order_api.stats.router import router as stats_router
from servicekit.app import Runtime, create_service_app
from servicekit.client import ServiceClient
from servicekit.events import events_router

DESCRIPTION = """
The public API of the Exchange Desk: customers create orders and follow them; operators take and drive
them; admins manage operators and read the audit trail.

Authenticate with `Authorization: Bearer <token>`. Every error is `application/problem+json` with a stable
`code`; validation errors list each failing field in `errors[]`. Every response carries `X-Correlation-ID`:
quote it to support.
"""


async def _probe_wallet_pool(client: ServiceClient) -> str | None:
    stats = await WalletPoolClient(client).pool_stats()
    return f"{len(stats.currencies)} currencies"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    runtime = Runtime(settings, schema=SCHEMA)
    wallet_pool = runtime.add_peer("wallet-pool", settings.wallet_pool, probe=_probe_wallet_pool)
    runtime.add_peer("notifier", settings.notifier)
    runtime.add_outbox_relay(outbox)
    app = create_service_app(
        settings=settings,
        runtime=runtime,
        title="Exchange Desk — order-api",
        description=DESCRIPTION,
        openapi_tags=[
            {"name": "stats", "description": "Statistics for admins and operators."},
            {"name": "events", "description": "Internal: events from peer services."},
        ],
    )
    app.state.wallet_pool = WalletPoolClient(wallet_pool)
    app.include_router(stats_router)
    app.include_router(events_router(inbox=inbox, handlers={}))
    return app

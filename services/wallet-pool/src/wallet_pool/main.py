"""The wallet-pool app: ``uvicorn wallet_pool.main:create_app --factory``."""

from __future__ import annotations

from fastapi import FastAPI

from servicekit.app import Runtime, create_service_app
from wallet_pool.db import SCHEMA, outbox
from wallet_pool.settings import Settings
from wallet_pool.stats.router import router as stats_router

DESCRIPTION = """
The pool of deposit addresses the desk controls, per currency.

Every call needs an API key (`Authorization: Bearer <key>`) with the scope named on the route.
Errors are `application/problem+json` with a stable `code`.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    runtime = Runtime(settings, schema=SCHEMA)
    runtime.add_peer("order-api", settings.order_api)
    runtime.add_outbox_relay(outbox)
    app = create_service_app(
        settings=settings,
        runtime=runtime,
        title="Exchange Desk — wallet-pool",
        description=DESCRIPTION,
        openapi_tags=[{"name": "stats", "description": "Pool health per currency."}],
    )
    app.include_router(stats_router)
    return app

"""The order-api app: ``uvicorn order_api.main:create_app --factory``."""

from __future__ import annotations

from fastapi import FastAPI

from order_api.audit.outbox import router as outbox_admin_router
from order_api.audit.router import router as audit_router
from order_api.auth.router import router as auth_router
from order_api.auth.service import SESSION_TOKEN_PREFIX
from order_api.clients.wallet_pool import WalletPoolClient
from order_api.context import OrderApiContext
from order_api.currencies.router import router as currencies_router
from order_api.customers.admin_router import router as customers_admin_router
from order_api.db import SCHEMA, inbox, outbox
from order_api.operators.admin_router import router as operators_admin_router
from order_api.operators.router import router as operators_router
from order_api.operators.service import OPERATOR_TOKEN_PREFIX
from order_api.operators.telegram_router import router as telegram_router
from order_api.operators.workload_router import router as workload_router
from order_api.orders.events import wallet_event_handlers
from order_api.orders.metrics import OpenOrderGauges
from order_api.orders.router import router as orders_router
from order_api.settings import Settings
from order_api.stats.router import router as stats_router
from order_api.workers.sweeper import order_sweeps
from servicekit.app import Runtime, create_service_app
from servicekit.client import ServiceClient
from servicekit.events import events_router
from servicekit.settings import load_settings

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
    settings = settings or load_settings(Settings)
    runtime = Runtime(settings, schema=SCHEMA, package="order_api")
    wallet_pool = runtime.add_peer("wallet-pool", settings.wallet_pool, probe=_probe_wallet_pool)
    runtime.add_peer("notifier", settings.notifier)
    runtime.add_outbox_relay(outbox, dead_letters_to="notifier")
    runtime.long_held_routes.add("/v1/orders/{order_id}/events")  # an event stream: held open on purpose
    runtime.add_inbox_retention(inbox)
    context = OrderApiContext.build(
        settings=settings, runtime=runtime, wallet_pool=WalletPoolClient(wallet_pool)
    )
    runtime.add_scraped_gauges(OpenOrderGauges(database=runtime.database))
    for sweep in order_sweeps(context):
        runtime.add_worker(sweep)
    runtime.add_worker(context.order_streams.listener(runtime.database))
    app = create_service_app(
        settings=settings,
        runtime=runtime,
        context=context,
        title="Exchange Desk — order-api",
        personal_token_prefixes=(OPERATOR_TOKEN_PREFIX, SESSION_TOKEN_PREFIX),
        description=DESCRIPTION,
        openapi_tags=[
            {"name": "orders", "description": "Customers create, follow and cancel their orders."},
            {
                "name": "currencies",
                "description": "The currencies, networks, limits and address formats orders may use.",
            },
            {"name": "auth", "description": "Customer sessions: emailed one-time codes, who am I, log out."},
            {
                "name": "operators",
                "description": "Operators take orders and drive them to completed or cancelled, give them "
                "back or escalate them; support answers escalations.",
            },
            {
                "name": "admin",
                "description": "Admins manage operators and their personal tokens, erase customers, and list "
                "and replay the outbox's events.",
            },
            {"name": "audit", "description": "The append-only, hash-chained audit trail (admins)."},
            {"name": "stats", "description": "Statistics for admins and operators."},
            {"name": "events", "description": "Internal: events from peer services."},
        ],
    )
    app.include_router(orders_router)
    app.include_router(currencies_router)
    app.include_router(auth_router)
    app.include_router(stats_router)
    app.include_router(operators_router)
    app.include_router(operators_admin_router)
    app.include_router(workload_router)
    app.include_router(customers_admin_router)
    app.include_router(telegram_router)
    app.include_router(audit_router)
    app.include_router(outbox_admin_router)
    app.include_router(
        events_router(
            inbox=inbox, handlers=wallet_event_handlers(settings=settings, protection=context.protection)
        )
    )
    return app

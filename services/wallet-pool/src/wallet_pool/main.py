"""The wallet-pool app: ``uvicorn wallet_pool.main:create_app --factory``."""

from __future__ import annotations

from fastapi import FastAPI

from servicekit.apikeys import require_scope
from servicekit.app import Runtime, create_service_app
from servicekit.events import events_router
from servicekit.outbox_admin import OUTBOX_ADMIN_SCOPE, outbox_admin_router
from servicekit.settings import load_settings
from wallet_pool.allocations.events import order_event_handlers
from wallet_pool.allocations.router import router as allocations_router
from wallet_pool.context import WalletPoolContext
from wallet_pool.db import SCHEMA, inbox, outbox
from wallet_pool.metrics import QueueWaitGauges
from wallet_pool.settings import Settings
from wallet_pool.stats.router import router as stats_router
from wallet_pool.wallets.router import router as wallets_router
from wallet_pool.workers.pool_levels import pool_level_watch
from wallet_pool.workers.queue_sweeper import QueueSweeper

DESCRIPTION = """
The pool of deposit addresses the desk controls, per currency and network.

- **Wallets**: operators import addresses (validated, all or nothing), list, disable and enable them.
- **Allocations**: order-api asks for an address per order (idempotent per order id). The wallet free the
  longest goes first; when none is free the order waits in a fair queue (vip, priority, normal; then
  arrival) and gets the next released address, announced to order-api as a `wallet.assigned` event.
- **Stats**: pool health per currency.
- **Pool levels**: when the free wallets of a pool drop below its threshold (10 % by default), a `pool.low`
  event goes to the notifier, once; `pool.recovered` follows when they are back.
- **Events**: order-api's `order.closed` command (from its outbox) releases the order's address, like
  `POST /v1/allocations/{order_id}/release`.
- **Outbox**: admins list this service's outbox events and replay dead-lettered ones.

Every call needs an API key (`Authorization: Bearer <key>`) with the scope named on the route.
Errors are `application/problem+json` with a stable `code`.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings(Settings)
    runtime = Runtime(settings, schema=SCHEMA, package="wallet_pool")
    runtime.add_peer("order-api", settings.order_api)
    runtime.add_peer("notifier", settings.notifier)
    runtime.add_outbox_relay(outbox, dead_letters_to="notifier")
    runtime.add_inbox_retention(inbox)
    context = WalletPoolContext.build(settings=settings, runtime=runtime)
    metrics = context.metrics
    runtime.add_scraped_gauges(QueueWaitGauges(database=runtime.database))
    app = create_service_app(
        settings=settings,
        runtime=runtime,
        context=context,
        title="Exchange Desk — wallet-pool",
        description=DESCRIPTION,
        openapi_tags=[
            {"name": "wallets", "description": "The deposit addresses of the pool."},
            {"name": "allocations", "description": "An address per order, the wait queue, release."},
            {"name": "stats", "description": "Pool health per currency."},
            {"name": "events", "description": "Commands and events from order-api."},
            {"name": "admin", "description": "The outbox: list and replay its events."},
        ],
    )
    runtime.add_worker(QueueSweeper(database=runtime.database, settings=settings, metrics=metrics).worker())
    runtime.add_worker(pool_level_watch(database=runtime.database, settings=settings))
    runtime.add_busy_tables("wallet", "allocation", "wait_queue_entry")
    app.include_router(wallets_router)
    app.include_router(allocations_router)
    app.include_router(stats_router)
    app.include_router(
        outbox_admin_router(
            table=outbox, guard=require_scope(OUTBOX_ADMIN_SCOPE), who=f"Scope `{OUTBOX_ADMIN_SCOPE}`"
        )
    )
    # order-api's release command (order.closed, from its outbox), accepted with the key it allocates with.
    app.include_router(
        events_router(
            inbox=inbox,
            handlers=order_event_handlers(settings=settings, metrics=metrics),
            scope="allocations:write",
        )
    )
    return app

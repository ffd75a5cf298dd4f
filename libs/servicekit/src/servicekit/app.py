"""Assembling a service: the FastAPI app with errors, telemetry, metrics and health wired in, and the
:class:`Runtime` that owns what the service holds while it runs (database, Redis, peer clients, workers)."""

from __future__ import annotations

import gc
import logging
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import timedelta
from typing import Annotated, Any, Protocol

from fastapi import Depends, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncSession

from servicekit.api_health import ApiHealthWatch
from servicekit.apikeys import ApiKeyVerifier
from servicekit.backing import redis_client
from servicekit.bounds import InputGuardMiddleware
from servicekit.client import ServiceClient
from servicekit.db import TRACE_STATEMENTS, Database, session_scope
from servicekit.docs import install_docs
from servicekit.errors import BodySizeLimitMiddleware, ValidationFailedError, install_error_handlers
from servicekit.health import ReadinessCheck, health_router
from servicekit.maintenance import BusyTableVacuum
from servicekit.metrics import ScrapedGauges, install_metrics
from servicekit.openapi import QUIET_PATHS, install_openapi
from servicekit.outbox import (
    BatchedEvent,
    EventBatch,
    EventBatchReceipt,
    OutboxEvent,
    OutboxMetrics,
    OutboxRelay,
    PermanentDeliveryError,
    delivered_events,
    outbox_gauges,
    processed_events,
    report_dead_letters,
)
from servicekit.ratelimit import RateLimiter
from servicekit.retention import RetentionRule, forget_expired
from servicekit.revisions import MigrationHistory, SchemaRevision, migrations_dir
from servicekit.sealing import DataProtectionConfigError
from servicekit.security_headers import SecurityHeadersMiddleware
from servicekit.settings import PeerSettings, ServiceSettings, StartupRefusedError, refuse_production_guesses
from servicekit.state import ServiceState, attach_state, service_state
from servicekit.telemetry import (
    InstrumentedFastAPI,
    configure_logging,
    configure_tracing,
    instrument_app,
    instrument_engine,
    instrument_redis,
)
from servicekit.workers import PeriodicWorker

log = logging.getLogger("servicekit.app")

GC_YOUNG_THRESHOLD = 10_000
"""Allocations between collections of the youngest generation (CPython's default: 700)."""


CORS_METHODS = ["GET", "POST", "PATCH", "OPTIONS"]
"""What a browser on an allowed origin may send: the methods the services' routes have (a test compares them),
the headers they read, and the response headers a page may read."""
CORS_REQUEST_HEADERS = [
    "Authorization",
    "Content-Type",
    "Idempotency-Key",
    "If-Match",
    "If-None-Match",
    "Last-Event-ID",
    "traceparent",
    "tracestate",
]
CORS_EXPOSED_HEADERS = ["X-Correlation-ID", "Retry-After", "ETag"]


class Worker(Protocol):
    """A background task started with the service and stopped before it exits."""

    def start(self) -> None: ...

    async def stop(self) -> None: ...


class Runtime:
    """What one service instance holds while it runs. Built by ``create_app``, opened by the lifespan."""

    def __init__(self, settings: ServiceSettings, *, schema: str, package: str | None = None) -> None:
        """``package``: the service's import package, whose Alembic head ``/health/ready`` compares the
        database's schema revision with (none: not compared)."""
        refuse_production_guesses(settings)  # before anything is opened or written
        self.settings = settings
        self.migration_history: MigrationHistory | None = None
        if package is not None:
            try:
                self.migration_history = MigrationHistory.read(migrations_dir(package))
            except FileNotFoundError as exc:
                raise StartupRefusedError(f"{settings.service_name} cannot start: {exc}") from None
        self.database = Database(
            url=settings.database_url,
            schema=settings.database_schema or schema,
            var_dir=settings.var_dir,
            service_name=settings.service_name,
            pool_size=settings.database_pool_size,
            pool_timeout_seconds=settings.database_pool_timeout_seconds,
            statement_cache_size=settings.database_statement_cache_size,
            session_url=settings.database_session_url,
        )
        if settings.trace_database:
            instrument_engine(self.database.engine)
            self.database.session_info[TRACE_STATEMENTS] = True
        self.redis: Redis | None = None
        if settings.redis_url:
            instrument_redis()
            self.redis = redis_client(settings.redis_url, settings)
        self.peers: dict[str, ServiceClient] = {}
        self.workers: list[Worker] = []
        self.busy_tables: list[str] = []
        self.retention_rules: list[RetentionRule] = []
        self.readiness_checks: list[ReadinessCheck] = [ReadinessCheck("database", self._check_database)]
        if self.redis is not None:
            self.readiness_checks.append(ReadinessCheck("redis", self._check_redis))
        self.on_start: list[Callable[[], Awaitable[None]]] = []
        self.metrics_registry = CollectorRegistry()
        """The service's ``/metrics`` (``create_service_app`` serves it), for what the runtime builds to count."""
        self.scraped_gauges: list[ScrapedGauges] = []
        self.long_held_routes: set[str] = set(QUIET_PATHS)
        """Routes whose duration is no latency (probes, an event stream): left out of the API health watch."""

    def rate_limiter(self) -> RateLimiter:
        """A rate limiter for the service's limits: its windows in the runtime's Redis (in memory without one),
        under the service's name, its refusals counted in the service's ``/metrics``."""
        return RateLimiter(
            redis=self.redis, namespace=self.settings.service_name, registry=self.metrics_registry
        )

    async def schema_revision(self) -> SchemaRevision | None:
        """The database's schema revision against the code's head (``None`` when not compared)."""
        if self.migration_history is None:
            return None
        return await self.migration_history.check(self.database.engine)

    async def _check_database(self) -> str | None:
        await self.database.ping()
        return self.database.engine.dialect.name

    async def _check_redis(self) -> str | None:
        if self.redis is not None:
            await self.redis.ping()
        return None

    def add_peer(
        self,
        name: str,
        peer: PeerSettings,
        *,
        probe: Callable[[ServiceClient], Awaitable[str | None]] | None = None,
    ) -> ServiceClient:
        """A client for peer ``name``; ``probe`` (an authenticated call) is reported by ``/health/ready``."""
        client = ServiceClient(
            peer=name,
            base_url=peer.url,
            api_key=peer.api_key,
            timeout_seconds=peer.timeout_seconds,
            max_response_bytes=peer.max_response_bytes,
        )
        self.peers[name] = client
        if probe is not None:

            async def check() -> str | None:
                return await probe(client)

            self.readiness_checks.append(ReadinessCheck(f"peer:{name}", check, critical=False))
        return client

    def add_scraped_gauges(self, gauges: ScrapedGauges) -> None:
        """Gauges read from the database when ``/metrics`` is scraped (a queue's table, open orders …)."""
        self.metrics_registry.register(gauges)
        self.scraped_gauges.append(gauges)

    def add_outbox_relay(self, table: Table, *, dead_letters_to: str | None = None) -> OutboxRelay:
        """Deliver this service's outbox to its peers' ``POST /v1/events`` (peers added with ``add_peer``),
        several events for one peer at once through ``POST /v1/events/batch``; delivered events are deleted
        after ``outbox_retention_days``. Its figures are on ``/metrics`` (``outbox_*``); with
        ``dead_letters_to`` (the notifier), a change in the number of dead-lettered events is reported to that
        peer every ``outbox_dead_letter_check_seconds`` (``servicekit.outbox.report_dead_letters``)."""
        source = self.settings.service_name

        def peer(destination: str) -> ServiceClient:
            client = self.peers.get(destination)
            if client is None:
                raise PermanentDeliveryError(f"no peer named {destination!r} is configured")
            return client

        async def deliver(event: OutboxEvent) -> None:
            client = peer(event.destination)
            try:
                await client.post_json(
                    "/v1/events", event.envelope(source).model_dump(mode="json"), idempotent=True
                )
            except ValidationFailedError as exc:
                raise PermanentDeliveryError(str(exc)) from exc

        async def deliver_batch(destination: str, batch: list[BatchedEvent]) -> set[str]:
            client = peer(destination)
            events = [b.event.envelope(source, traceparent=b.traceparent) for b in batch]
            # Not retried here: a batch that fails is delivered again one event at a time, with retries.
            answer = await client.post_json(
                "/v1/events/batch", EventBatch(events=events).model_dump(mode="json"), idempotent=False
            )
            return {receipt.event_id for receipt in client.answer_as(EventBatchReceipt, answer).receipts}

        gauges = outbox_gauges(database=self.database, table=table, destinations=list(self.peers))
        self.add_scraped_gauges(gauges)
        relay = OutboxRelay(
            database=self.database,
            table=table,
            deliver=deliver,
            deliver_batch=deliver_batch,
            linger_seconds=self.settings.outbox_linger_seconds,
            max_attempts=self.settings.outbox_max_attempts,
            backoff_base_seconds=self.settings.outbox_backoff_base_seconds,
            backoff_max_seconds=self.settings.outbox_backoff_max_seconds,
            poll_seconds=self.settings.outbox_poll_seconds,
            metrics=OutboxMetrics(self.metrics_registry),
            gauges=gauges,
        )
        if dead_letters_to is not None:
            if dead_letters_to not in self.peers:
                raise ValueError(f"dead letters are reported to a peer: add {dead_letters_to!r} first")
            notifier = dead_letters_to

            async def report() -> int:
                return await report_dead_letters(
                    database=self.database, table=table, service=source, destination=notifier
                )

            self._add_sweep(
                "outbox-dead-letters", report, interval_seconds=self.settings.outbox_dead_letter_check_seconds
            )
            settings = self.settings
            api_health = ApiHealthWatch(
                registry=self.metrics_registry,
                database=self.database,
                table=table,
                service=source,
                destination=notifier,
                window_seconds=settings.api_alert_window_seconds,
                error_percent=settings.api_error_alert_percent,
                p95_seconds=settings.api_latency_alert_p95_seconds,
                min_requests=settings.api_alert_min_requests,
                exclude_routes=self.long_held_routes,
            )
            self._add_sweep("api-health", api_health.check, interval_seconds=settings.api_alert_check_seconds)
        self.add_worker(relay)
        self.add_busy_tables(table.name)
        self.add_retention(delivered_events(table, keep=timedelta(days=self.settings.outbox_retention_days)))
        return relay

    def add_inbox_retention(self, table: Table) -> None:
        """Forget the ids of processed events after ``inbox_retention_days`` (the inbox of ``events_router``)."""
        self.add_retention(processed_events(table, keep=timedelta(days=self.settings.inbox_retention_days)))

    def add_busy_tables(self, *tables: str) -> None:
        """Tables rewritten all the time, vacuumed by this service past a dead-row threshold where the server
        does not (``busy_table_vacuum``, ``servicekit.maintenance``; the outbox is one once its relay is
        added)."""
        if not self.busy_tables and self.settings.busy_table_vacuum != "off":
            vacuum = BusyTableVacuum(
                database=self.database,
                tables=self.busy_tables,
                dead_rows_threshold=self.settings.vacuum_dead_rows_threshold,
                mode=self.settings.busy_table_vacuum,
            )
            self._add_sweep(
                "busy-table-vacuum", vacuum.run, interval_seconds=self.settings.vacuum_check_seconds
            )
        self.busy_tables.extend(table for table in tables if table not in self.busy_tables)

    def add_retention(self, *rules: RetentionRule) -> None:
        """Rows this service forgets after a while (``servicekit.retention``): one sweep runs every rule, in
        the order added, every ``retention_sweep_seconds`` on every replica."""
        if not self.retention_rules:
            self._add_sweep(
                "retention-sweep",
                lambda: forget_expired(
                    database=self.database,
                    rules=self.retention_rules,
                    batch_size=self.settings.retention_batch_size,
                ),
                interval_seconds=self.settings.retention_sweep_seconds,
            )
        self.retention_rules.extend(rules)

    def _add_sweep(self, name: str, job: Callable[[], Awaitable[int]], *, interval_seconds: float) -> None:
        """A periodic worker whose every pass covers all its work (its list grows as the service is built)."""
        self.add_worker(
            PeriodicWorker(name=name, job=job, interval_seconds=interval_seconds, batch_size=sys.maxsize)
        )

    def add_worker(self, worker: Worker) -> None:
        self.workers.append(worker)

    async def start(self) -> None:
        for hook in self.on_start:
            await hook()
        for worker in self.workers:
            worker.start()

    async def stop(self) -> None:
        for worker in reversed(self.workers):
            await worker.stop()
        for client in self.peers.values():
            await client.aclose()
        if self.redis is not None:
            await self.redis.aclose()
        await self.database.dispose()


def create_service_app(
    *,
    settings: ServiceSettings,
    runtime: Runtime,
    title: str,
    description: str,
    version: str = "1.0.0",
    openapi_tags: list[dict[str, Any]] | None = None,
    context: object = None,
    personal_token_prefixes: tuple[str, ...] = (),
) -> FastAPI:
    """The FastAPI app of a service, with everything every service has. ``context``: the service's
    collaborators, built once before the app (routes get it through ``servicekit.state.service_context``);
    ``personal_token_prefixes``: how the service's tokens for people start (``servicekit.apikeys``)."""
    configure_logging(service=settings.service_name, level=settings.log_level, json_format=settings.log_json)
    configure_tracing(
        service=settings.service_name,
        sample_ratio=settings.trace_sample_ratio,
        otlp_endpoint=settings.otlp_endpoint,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        _settle_garbage_collector()
        log.info(
            "service started",
            extra={"database": runtime.database.engine.dialect.name, "redis": runtime.redis is not None},
        )
        try:
            yield
        finally:
            await runtime.stop()
            log.info("service stopped")

    tags = [*(openapi_tags or []), {"name": "operations", "description": "Health and metrics."}]
    docs = settings.docs_public
    app = InstrumentedFastAPI(
        title=title,
        description=description,
        version=version,
        lifespan=lifespan,
        openapi_tags=tags,
        openapi_url="/openapi.json" if docs else None,
        docs_url=None,  # servicekit.docs serves the documentation pages with their assets
        redoc_url=None,
    )
    attach_state(
        app,
        ServiceState(
            runtime=runtime,
            settings=settings,
            api_key_verifier=ApiKeyVerifier(
                settings.api_keys, personal_token_prefixes=personal_token_prefixes
            ),
            context=context,
        ),
    )
    install_error_handlers(app)
    install_openapi(app)
    # Outermost last: the size limit bounds what the input guard reads whole.
    app.add_middleware(InputGuardMiddleware, max_json_depth=settings.max_json_depth)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=CORS_METHODS,
            allow_headers=CORS_REQUEST_HEADERS,
            expose_headers=CORS_EXPOSED_HEADERS,
        )
    docs_paths = install_docs(app, openapi_url=app.openapi_url) if app.openapi_url else []
    app.outermost.append(
        lambda inner: SecurityHeadersMiddleware(
            inner, docs_paths=docs_paths, hsts_max_age_seconds=settings.hsts_max_age_seconds
        )
    )
    request_metrics = install_metrics(
        app,
        registry=runtime.metrics_registry,
        refreshed=runtime.scraped_gauges,
        key_required=settings.metrics_need_key,
    )
    instrument_app(app, excluded_urls=settings.trace_excluded_urls, request_metrics=request_metrics)
    app.include_router(
        health_router(
            settings.service_name,
            checks=runtime.readiness_checks,
            schema_revision=runtime.schema_revision,
            details_need_key=settings.metrics_need_key,
        )
    )
    return app


def _settle_garbage_collector() -> None:
    """Keep the garbage collector off the hot path: what exists once the service has started (modules,
    models, compiled routes and statements: hundreds of thousands of objects) is frozen out of collections,
    which otherwise walked it over and over (about a tenth of a busy service's CPU, measured with ``perf``),
    and the youngest generation is collected less often (requests make short-lived cycles, not many)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


@contextmanager
def refusing_start(service: str) -> Iterator[None]:
    """Around the building of a service's context: a collaborator configured wrongly (keys that do not
    open, a network that is not one) stops the service at start-up with one line (:class:`StartupRefusedError`),
    never at the first request that needs it."""
    try:
        yield
    except (DataProtectionConfigError, ValueError) as exc:
        raise StartupRefusedError(f"{service} cannot start: {exc}") from None


def runtime_of(request: Request) -> Runtime:
    return service_state(request.app).runtime


async def request_session(request: Request) -> AsyncIterator[AsyncSession]:
    """The request's unit of work: committed before the response is sent, rolled back on error."""
    async for session in session_scope(runtime_of(request).database.sessionmaker):
        yield session


DbSession = Annotated[AsyncSession, Depends(request_session, scope="function")]

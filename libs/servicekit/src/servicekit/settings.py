"""The settings base every service extends.

Each service subclasses :class:`ServiceSettings` with its own ``env_prefix`` (``ORDER_API_``, ...).
Values come from the environment, a ``.env`` file, or secret files; secrets are ``SecretStr`` so they never
print in logs or reprs.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Self

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from servicekit.apikeys import ApiKeyEntry

OUTBOX_LEASE_SECONDS = 30.0
"""How long an outbox relay's claim holds an event (``OutboxRelay.lease_seconds``)."""


def _repo_var_dir() -> Path:
    """``var/`` at the root of the checkout (or of the working directory when installed elsewhere)."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "uv.lock").exists():
            return parent / "var"
    return Path.cwd() / "var"


class PeerSettings(BaseModel):
    """How to reach one peer service: its base URL and the API key this service presents to it."""

    url: str = Field(description="Base URL of the peer service.")
    api_key: SecretStr = Field(default=SecretStr(""), description="The API key this service presents to it.")
    timeout_seconds: float = Field(default=5.0, description="Per-request timeout.")


class ServiceSettings(BaseSettings):
    """Settings shared by all four services. Subclasses set ``model_config`` with their env prefix."""

    # ``nested_model_default_partial_update``: ``<PREFIX>_<PEER>__API_KEY`` alone keeps the peer's default URL
    # (without it the nested variable replaces the default model and the missing ``url`` fails startup).
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", nested_model_default_partial_update=True
    )

    service_name: str = Field(default="service", description="Name in logs, traces and metrics.")
    environment: str = Field(default="development", description="development, test or production.")
    host: str = Field(default="127.0.0.1", description="Interface to listen on (`make run`).")
    port: int = Field(default=8000, description="Port to listen on.")

    database_url: str | None = Field(
        default=None,
        description="postgresql+asyncpg://… in production; unset means an embedded SQLite file under var/.",
    )
    database_schema: str | None = Field(
        default=None, description="PostgreSQL schema this service owns (defaults to its import name)."
    )
    database_pool_size: int = Field(
        default=20,
        description="Connections kept per process (PostgreSQL); four services share max_connections.",
    )
    vacuum_check_seconds: float = Field(
        default=2.0,
        gt=0,
        description="How often the dead rows of the busiest tables are counted (PostgreSQL; "
        "servicekit.maintenance).",
    )
    vacuum_dead_rows_threshold: int = Field(
        default=1000,
        ge=1,
        description="A busy table with this many dead rows is vacuumed by the service itself, whether or not "
        "the server's autovacuum is on.",
    )
    redis_url: str | None = Field(default=None, description="Unset means in-process stores (single node).")
    var_dir: Path = Field(
        default_factory=_repo_var_dir, description="Embedded databases, mail drop and dev files (`var/`)."
    )

    api_keys: list[ApiKeyEntry] = Field(
        default_factory=list,
        description="Accepted callers: JSON list of {name, hash, scopes}. Only hashes, never keys.",
    )

    log_level: str = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR.")
    log_json: bool = Field(default=True, description="JSON lines on stdout; false for human-readable text.")
    otlp_endpoint: str | None = Field(default=None, description="OTLP/HTTP endpoint; unset exports nothing.")
    trace_sample_ratio: float = Field(
        default=1.0, ge=0.0, le=1.0, description="Share of new traces recorded (parent decision wins)."
    )
    trace_excluded_urls: str = Field(
        default="/health/live,/health/ready,/metrics", description="Comma-separated paths never traced."
    )
    trace_database: bool = Field(default=True, description="Emit a span per SQL statement.")

    cors_origins: list[str] = Field(default_factory=list, description="Frontend origins allowed (JSON list).")
    max_body_bytes: int = Field(default=1_048_576, description="Request bodies larger than this are refused.")

    outbox_poll_seconds: float = Field(default=0.5, description="Outbox relay poll interval when idle.")
    outbox_max_attempts: int = Field(
        default=12, description="Deliveries tried before an event is dead-lettered."
    )
    outbox_backoff_base_seconds: float = Field(
        default=0.5, description="First retry delay; doubles each time."
    )
    outbox_backoff_max_seconds: float = Field(default=300.0, description="Longest delay between retries.")
    outbox_linger_seconds: float = Field(
        default=0.02,
        ge=0.0,
        le=1.0,
        description="How long a woken outbox relay waits for more events, so that a busy service sends them "
        "in batches (one request for many).",
    )

    outbox_retention_days: int = Field(
        default=7,
        ge=1,
        description="Delivered outbox events are deleted this many days after delivery. Pending and "
        "dead-lettered events are never deleted (dead ones are an operator's to replay).",
    )
    inbox_retention_days: int = Field(
        default=7,
        ge=1,
        description="Ids of processed events (the inbox that drops duplicates) are forgotten after this many "
        "days. Must exceed the longest time a sender may still deliver an event again (its outbox retries: "
        "max attempts, backoff and leases; checked against this service's own outbox settings, which all "
        "services share by default), else a late duplicate would be processed twice.",
    )
    retention_sweep_seconds: float = Field(
        default=3600.0,
        gt=0,
        description="How often the retention sweep deletes rows past their retention (every replica runs it; "
        "replicas skip the rows another one is deleting).",
    )
    retention_batch_size: int = Field(
        default=1000,
        ge=1,
        description="Rows the retention sweep deletes per transaction: a large backlog goes in many short "
        "transactions.",
    )

    @property
    def outbox_redelivery_span(self) -> timedelta:
        """The longest an outbox event may go on being delivered again after its first attempt: every
        backoff before dead-lettering, plus a claim's lease per attempt (a relay that died mid-delivery)."""
        backoffs = sum(
            min(self.outbox_backoff_max_seconds, self.outbox_backoff_base_seconds * 2**attempt)
            for attempt in range(max(self.outbox_max_attempts - 1, 0))
        )
        return timedelta(seconds=backoffs + self.outbox_max_attempts * OUTBOX_LEASE_SECONDS)

    @model_validator(mode="after")
    def _inbox_outlives_redelivery(self) -> Self:
        if timedelta(days=self.inbox_retention_days) <= self.outbox_redelivery_span:
            raise ValueError(
                f"inbox_retention_days ({self.inbox_retention_days}) must exceed the outbox's redelivery span "
                f"({self.outbox_redelivery_span}): a duplicate arriving later would be processed again"
            )
        return self

    @property
    def embedded(self) -> bool:
        """True when running on the embedded default (SQLite, no Redis)."""
        return self.database_url is None

"""The settings base every service extends.

Each service subclasses :class:`ServiceSettings` with its own ``env_prefix`` (``ORDER_API_``, ...).
Values come from, in this order of precedence: the environment, a ``.env`` file, and secret files; secrets
are ``SecretStr`` so they never print in logs or reprs.

**Secret files.** Every setting can be a file in the secrets directory (``<PREFIX>SECRETS_DIR``, default
``/run/secrets`` when it exists, where Kubernetes and compose mount secrets), named exactly like its
environment variable, case-insensitively: ``ORDER_API_DATABASE_URL``, and for nested settings the same
``__`` path as the variable (``ORDER_API_WALLET_POOL__API_KEY``). The file holds the value alone (surrounding
whitespace and the final newline are dropped); JSON settings hold JSON. A secrets directory is read like an
environment whose variables are files, so the same rules apply to both.

**Production refuses to guess.** With ``<PREFIX>ENVIRONMENT=production`` a service does not start on the
embedded defaults that suit a laptop (a SQLite file of its own, in-process rate limits, generated keys):
:meth:`ServiceSettings.production_problems` lists what is missing, and :func:`refuse_production_guesses`
stops the process with one line naming it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import ClassVar, Literal, Self, TypeVar

from pydantic import BaseModel, BeforeValidator, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings.sources.utils import parse_env_vars

from servicekit.apikeys import ApiKeyEntry

OUTBOX_LEASE_SECONDS = 30.0
"""How long an outbox relay's claim holds an event (``OutboxRelay.lease_seconds``)."""

DEFAULT_SECRETS_DIR = Path("/run/secrets")
"""Where secrets are mounted as files by default (Kubernetes Secret volumes, compose ``secrets:``)."""

PRODUCTION = "production"


def per_currency_overrides(defaults: Mapping[str, object], given: object, *, field_by_field: bool) -> object:
    """A per-currency setting as an operator writes it, laid over its defaults: a currency listed replaces its
    default (``field_by_field``: only the fields given change), ``null`` removes it, and a currency not listed
    keeps its default. Currency codes are upper-cased, so ``ORDER_API_CURRENCIES__BTC__MIN_AMOUNT`` (which
    arrives lower-cased) changes BTC. Anything but a mapping is returned as given, for pydantic to refuse."""
    if not isinstance(given, Mapping):
        return given
    merged: dict[str, object] = {
        code: value.model_dump() if isinstance(value, BaseModel) else value
        for code, value in defaults.items()
    }
    for raw_code, value in given.items():
        code = str(raw_code).upper()
        base = merged.get(code)
        if value is None:
            merged.pop(code, None)
        elif field_by_field and isinstance(value, Mapping) and isinstance(base, Mapping):
            merged[code] = {**base, **value}
        else:
            merged[code] = value
    return merged


def laid_over(defaults: Mapping[str, object], *, field_by_field: bool = False) -> BeforeValidator:
    """The validator of a per-currency setting (``Annotated[dict[str, X], laid_over(DEFAULTS)]``): what an
    operator gives is laid over ``defaults`` by :func:`per_currency_overrides`."""
    return BeforeValidator(
        lambda given: per_currency_overrides(defaults, given, field_by_field=field_by_field)
    )


class SecretFilesSource(EnvSettingsSource):
    """Settings from the files of a directory, one per variable (the file's name is the variable's name).

    It is the environment source reading files instead of ``os.environ``: prefixes, case-insensitivity,
    ``__`` for nested settings and JSON values behave exactly as for variables. Hidden entries are skipped
    (Kubernetes keeps its ``..data`` bookkeeping there); links to files are followed, as Secret volumes
    link every key.
    """

    def __init__(self, settings_cls: type[BaseSettings], *, directory: Path | None) -> None:
        self.directory = directory
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        files = dict(self._files())
        return parse_env_vars(files, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str)

    def _files(self) -> Iterator[tuple[str, str]]:
        if self.directory is None:
            return
        prefix = self.env_prefix.lower()
        for entry in sorted(self.directory.iterdir()):
            if entry.name.startswith(".") or not entry.name.lower().startswith(prefix) or not entry.is_file():
                continue
            yield entry.name, entry.read_text(encoding="utf-8").strip()

    def __repr__(self) -> str:
        return f"SecretFilesSource(directory={self.directory!r})"


class StartupRefusedError(SystemExit):
    """The service cannot start as configured (production would have to guess, or a setting is invalid).
    A ``SystemExit``: the process ends with status 1 and its one-line message on stderr, not a traceback
    (uvicorn lets it through)."""


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
    timeout_seconds: float = Field(
        default=5.0,
        description="Timeout of one attempt of a call (idempotent calls make up to 3, with backoff between "
        "them); where the caller set a total budget for the call (order intake does), that ends it sooner.",
    )
    max_response_bytes: int = Field(
        default=64 * 1024,
        ge=1024,
        le=16 * 1024 * 1024,
        description="The largest answer body read from it; a larger one is not read and counts as no answer.",
    )


class DataKeySettings(BaseModel):
    """The keys a service seals personal data at rest with (``servicekit.sealing``); mixed into the settings
    of a service that keeps personal data."""

    data_keys: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="JSON {key_id: base64 32-byte key}. Old ids stay to read old data (rotation without downtime).",
    )
    data_key_current: str | None = Field(default=None, description="The key id new data is encrypted with.")
    blind_index_key: SecretStr | None = Field(
        default=None,
        description="Base64 key (32+ bytes) of the HMAC blind index: finds personal data by value (an email) "
        "without storing it in clear.",
    )


class ClientNetworkSettings(BaseModel):
    """How wide a client is, for per-client limits: mixed into the settings of a service
    that has them (``servicekit.ratelimit.client_network``)."""

    client_ipv4_prefix: int = Field(
        default=32,
        ge=8,
        le=32,
        description="Per-client limits count an IPv4 client by this prefix of its address: 32 is one "
        "address; 24 would count a /24 as one client.",
    )
    client_ipv6_prefix: int = Field(
        default=64,
        ge=16,
        le=128,
        description="Per-client limits count an IPv6 client by this prefix of its address: 64 counts a "
        "subscriber's whole /64 as one client (IPv4-mapped addresses count as IPv4).",
    )


class EventKeySettings(BaseModel):
    """The keys personal data travels sealed with in events between two services (``servicekit.sealing``):
    the same key ring on the publisher and the receiver."""

    event_keys: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="JSON {key_id: base64 32-byte key} sealing personal data inside events between order-api and "
        "notifier (the same ring on both). Old ids stay to open events still in flight.",
    )
    event_key_current: str | None = Field(
        default=None, description="The event key id new events are sealed with."
    )


class ServiceSettings(BaseSettings):
    """Settings shared by all four services. Subclasses set ``model_config`` with their env prefix."""

    redis_shared_state: ClassVar[str | None] = None
    """What the replicas of this service share through Redis (e.g. ``"rate limits"``); set by a service that
    needs ``REDIS_URL`` in production, where in-process stores would give each replica its own."""

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
    database_session_url: str | None = Field(
        default=None,
        description="PostgreSQL reached without a transaction-mode pooler, for the connections that keep "
        "session state: order-api's LISTEN connection (order streams) and a polling gateway's lease. Unset: "
        "DATABASE_URL, which is right unless that goes through PgBouncer in transaction mode.",
    )
    database_statement_cache_size: int = Field(
        default=100,
        ge=0,
        description="Prepared statements asyncpg keeps per connection. 0 behind PgBouncer in transaction "
        "mode, whose server connections change between transactions: statements are then prepared "
        "unnamed-per-use and never reused across transactions.",
    )
    busy_table_vacuum: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="Whether the service vacuums its busiest tables itself (PostgreSQL; "
        "servicekit.maintenance): `auto` only where the server answers `SHOW autovacuum` with `off` (asked "
        "once, at the first check), `on` always, `off` never (the server's autovacuum does it).",
    )
    vacuum_check_seconds: float = Field(
        default=2.0,
        gt=0,
        description="How often the dead rows of the busiest tables are counted, while the service vacuums "
        "them itself (`BUSY_TABLE_VACUUM`).",
    )
    vacuum_dead_rows_threshold: int = Field(
        default=1000,
        ge=1,
        description="A busy table with this many dead rows is vacuumed by the service itself, while it does "
        "(`BUSY_TABLE_VACUUM`).",
    )
    migration_lock_wait_seconds: float = Field(
        default=600.0,
        ge=0,
        description="How long a migration waits for another one of the same schema to finish (PostgreSQL: one "
        "advisory lock per schema, so replicas starting together migrate one after the other); 0: no limit.",
    )
    migration_lock_timeout_seconds: float = Field(
        default=10.0,
        ge=0,
        description="lock_timeout of a migration's statements: past it, a migration waiting for a table lock "
        "that running services hold fails (and is retried) rather than queue their queries behind it; 0: no "
        "limit.",
    )
    migration_statement_timeout_seconds: float = Field(
        default=600.0,
        ge=0,
        description="statement_timeout of a migration's statements (raise it for one that rewrites a large "
        "table); 0: no limit.",
    )
    database_pool_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        description="How long a request waits for a free pooled database connection (a burst queues); past "
        "it, the request answers 503 backing_store_unavailable.",
    )
    redis_url: str | None = Field(default=None, description="Unset means in-process stores (single node).")
    redis_max_connections: int = Field(
        default=50, ge=1, description="Redis connections per process at most; more callers queue for one."
    )
    redis_pool_timeout_seconds: float = Field(
        default=2.0,
        gt=0,
        description="How long a caller waits for a free Redis connection (a burst queues); past it, Redis "
        "counts as unavailable.",
    )
    redis_timeout_seconds: float = Field(
        default=1.0,
        gt=0,
        description="Connect and reply timeout of each Redis command: a frozen or unreachable Redis costs "
        "about this much (one quick retry included: twice) before it counts as unavailable.",
    )
    var_dir: Path = Field(
        default_factory=_repo_var_dir, description="Embedded databases, mail drop and dev files (`var/`)."
    )

    secrets_dir: Path | None = Field(
        default=None,
        description="Directory of secret files: one file per setting, named like its environment variable "
        "(`…_DATABASE_URL`, `…_<PEER>__API_KEY`) and holding its value; variables and `.env` win over files. "
        "Unset: /run/secrets when it exists.",
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
    api_docs: Literal["public", "off"] | None = Field(
        default=None,
        description="`/docs`, `/redoc`, `/openapi.json` and `/openapi.internal.json`: `public` or `off`. Unset: "
        "public, except off in production.",
    )
    metrics_access: Literal["public", "key"] | None = Field(
        default=None,
        description="`/metrics` and the details of `/health/ready`: `public`, or `key` (only for an API key with "
        "the scope `metrics:read`; others get the readiness status alone). Unset: public, except key in "
        "production.",
    )
    hsts_max_age_seconds: int = Field(
        default=0,
        ge=0,
        description="`Strict-Transport-Security: max-age=…` on every response when above 0: set it when the "
        "service is reached over HTTPS only. 0 sends none.",
    )
    max_body_bytes: int = Field(default=1_048_576, description="Request bodies larger than this are refused.")
    max_json_depth: int = Field(
        default=32, ge=1, description="JSON request bodies nested deeper than this are refused (422)."
    )

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
    outbox_dead_letter_check_seconds: float = Field(
        default=30.0,
        gt=0,
        description="How often the outbox's dead-lettered events are counted; a change is reported to the "
        "notifier (`outbox.dead_lettered`, `outbox.dead_cleared`), which raises or resolves the operators' "
        "alert. Services without a notifier peer only count them for `/metrics` (`outbox_dead`).",
    )
    api_alert_check_seconds: float = Field(
        default=60.0,
        gt=0,
        description="How often this replica judges its own API health (5xx share and p95 latency per route over "
        "the window); a crossing is reported to the notifier (`api.degraded`, `api.recovered`), which raises or "
        "resolves the alert `api.health:{service}:{replica}`. Only services with a notifier peer report.",
    )
    api_alert_window_seconds: float = Field(
        default=300.0, gt=0, description="The window the API health figures cover (a condition must last it)."
    )
    api_error_alert_percent: float = Field(
        default=5.0,
        ge=0,
        description="A 5xx share of this replica's requests in the window that raises the alert; 0: off.",
    )
    api_latency_alert_p95_seconds: float = Field(
        default=1.0,
        ge=0,
        description="A route's p95 latency in the window above this raises the alert; 0: off.",
    )
    api_alert_min_requests: int = Field(
        default=20, ge=1, description="Fewer requests in the window (in all, or on a route) are not judged."
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
    def docs_public(self) -> bool:
        """Whether the API documentation (``api_docs``) is served."""
        return (self.api_docs or ("off" if self.environment == PRODUCTION else "public")) == "public"

    @property
    def metrics_need_key(self) -> bool:
        """Whether ``/metrics`` and readiness details are only for a ``metrics:read`` key (``metrics_access``)."""
        return (self.metrics_access or ("key" if self.environment == PRODUCTION else "public")) == "key"

    @property
    def embedded(self) -> bool:
        """True when running on the embedded default (SQLite, no Redis)."""
        return self.database_url is None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """The environment, then ``.env``, then the secrets directory (pydantic's ``secrets_dir`` source
        cannot read nested ``__`` names, so :class:`SecretFilesSource` replaces it)."""
        directory = cls._secrets_directory(init_settings, env_settings, dotenv_settings)
        return (
            init_settings,
            env_settings,
            dotenv_settings,
            SecretFilesSource(settings_cls, directory=directory),
        )

    @classmethod
    def _secrets_directory(cls, *sources: PydanticBaseSettingsSource) -> Path | None:
        """``secrets_dir`` as given to the constructor, in the environment or in ``.env``; else the default
        when it exists. A configured directory that does not exist is an error, not an empty directory."""
        variable = cls.variable("secrets_dir")
        configured: object = None
        for source in sources:
            if isinstance(source, InitSettingsSource):
                configured = source.init_kwargs.get("secrets_dir")
            elif isinstance(source, EnvSettingsSource):
                configured = source.env_vars.get(variable.lower()) or source.env_vars.get(variable)
            if configured:
                break
        if not configured:
            readable = DEFAULT_SECRETS_DIR.is_dir() and os.access(DEFAULT_SECRETS_DIR, os.R_OK | os.X_OK)
            return DEFAULT_SECRETS_DIR if readable else None
        directory = Path(str(configured))
        if not directory.is_dir():
            raise StartupRefusedError(f"{variable}={directory} is not a directory")
        return directory

    @classmethod
    def variable(cls, field: str) -> str:
        """The environment variable (and secret file name) of ``field``: ``database_url`` →
        ``ORDER_API_DATABASE_URL``; a nested one with ``__``: ``wallet_pool__api_key``."""
        return f"{cls.model_config.get('env_prefix', '')}{field}".upper()

    def peers_in_use(self) -> list[str]:
        """The peer settings (fields of type :class:`PeerSettings`) this service calls; all by default."""
        return [name for name, field in type(self).model_fields.items() if field.annotation is PeerSettings]

    def database_problems(self) -> list[str]:
        """The part of :meth:`production_problems` about the database (all that migrations need)."""
        if self.database_url:
            return []
        return [
            f"{self.variable('database_url')} must be set in production "
            "(without it each replica would keep a SQLite file of its own)"
        ]

    def production_problems(self) -> list[str]:
        """What this service would have to guess in production, one sentence each naming the setting.

        Services extend it (``super().production_problems() + [...]``) with what only they know about.
        """
        problems = self.database_problems()
        if self.redis_shared_state and not self.redis_url:
            problems.append(
                f"{self.variable('redis_url')} must be set in production "
                f"(replicas share {self.redis_shared_state} through it)"
            )
        if not self.api_keys:
            problems.append(
                f"{self.variable('api_keys')} must be set in production (no caller would be accepted)"
            )
        for peer in self.peers_in_use():
            settings: PeerSettings = getattr(self, peer)
            if not settings.api_key.get_secret_value():
                problems.append(f"{self.variable(peer + '__api_key')} must be set in production")
        return problems + self.key_problems()

    def key_problems(self) -> list[str]:
        """The sealing keys (:class:`DataKeySettings`, :class:`EventKeySettings`) a service that has them
        leaves unset: in production they are never generated."""
        rings: list[dict[str, bool]] = []
        if isinstance(self, DataKeySettings):
            rings.append(
                {
                    "data_keys": bool(self.data_keys),
                    "data_key_current": self.data_key_current is not None,
                    "blind_index_key": self.blind_index_key is not None,
                }
            )
        if isinstance(self, EventKeySettings):
            rings.append(
                {"event_keys": bool(self.event_keys), "event_key_current": self.event_key_current is not None}
            )
        problems = []
        for ring in rings:
            missing = [self.variable(name) for name, present in ring.items() if not present]
            if missing:
                problems.append(
                    f"{', '.join(missing)} must be set in production "
                    "(otherwise development keys would be generated, on each replica its own)"
                )
        return problems


S = TypeVar("S", bound=ServiceSettings)


def refuse_production_guesses(settings: ServiceSettings, *, database_only: bool = False) -> None:
    """Stop the process (:class:`StartupRefusedError`) when ``settings`` are for production and
    :meth:`~ServiceSettings.production_problems` (with ``database_only``, as for migrations:
    :meth:`~ServiceSettings.database_problems`) finds anything; does nothing in other environments."""
    if settings.environment != PRODUCTION:
        return
    problems = settings.database_problems() if database_only else settings.production_problems()
    if problems:
        raise StartupRefusedError(f"{settings.service_name} refuses to start: {'; '.join(problems)}")


def _reason(message: str) -> str:
    """pydantic's message for a validator's ``ValueError`` without its ``Value error, `` prefix."""
    return message.removeprefix("Value error, ")


def load_settings(settings_class: type[S]) -> S:
    """``settings_class()``, with invalid settings reported in one line (the variables and why) instead of a
    validation traceback."""
    try:
        return settings_class()
    except ValidationError as exc:
        reasons = "; ".join(
            f"{settings_class.variable('__'.join(str(part) for part in error['loc']))}: {_reason(error['msg'])}"
            if error["loc"]
            else _reason(error["msg"])
            for error in exc.errors()
        )
        raise StartupRefusedError(f"invalid settings: {reasons}") from None

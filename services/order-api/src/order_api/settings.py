"""order-api settings (environment prefix ``ORDER_API_``)."""

from __future__ import annotations

from decimal import Decimal
from itertools import pairwise
from typing import Annotated, ClassVar

from pydantic import AfterValidator, BaseModel, Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from servicekit.settings import (
    ClientNetworkSettings,
    DataKeySettings,
    EventKeySettings,
    PeerSettings,
    ServiceSettings,
    laid_over,
)


class CurrencyRules(BaseModel):
    """What an order may ask for in one currency. The limits are what ``GET /v1/currencies`` publishes, so
    rules that intake would contradict (a minimum finer than the precision, a minimum above the maximum) stop
    the service at start-up rather than offer the website an amount it then refuses."""

    precision: int = Field(ge=0, le=18, description="Decimal places an amount may have.")
    min_amount: Decimal = Field(gt=0)
    max_amount: Decimal = Field(gt=0)
    awaiting_deposit_minutes: int = Field(
        default=60, gt=0, description="An unpaid order with an address expires after."
    )
    queued_minutes: int = Field(
        default=240, gt=0, description="An order without an address (queued, or awaiting it) gives up after."
    )

    @model_validator(mode="after")
    def _limits_agree(self) -> CurrencyRules:
        if self.min_amount > self.max_amount:
            raise ValueError(f"min_amount {self.min_amount} is above max_amount {self.max_amount}")
        for name in ("min_amount", "max_amount"):
            limit: Decimal = getattr(self, name)
            exponent = limit.normalize().as_tuple().exponent
            if isinstance(exponent, int) and -exponent > self.precision:
                raise ValueError(f"{name} {limit} has more decimal places than precision {self.precision}")
        return self


DEFAULT_CURRENCIES = {
    "BTC": CurrencyRules(precision=8, min_amount=Decimal("0.0001"), max_amount=Decimal("10")),
    "ETH": CurrencyRules(precision=8, min_amount=Decimal("0.001"), max_amount=Decimal("200")),
    "USDT": CurrencyRules(precision=6, min_amount=Decimal("10"), max_amount=Decimal("500000")),
}


DEFAULT_VIP_AMOUNT = {"BTC": Decimal("1"), "ETH": Decimal("20"), "USDT": Decimal("50000")}
DEFAULT_PRIORITY_AMOUNT = {"BTC": Decimal("0.2"), "ETH": Decimal("5"), "USDT": Decimal("10000")}
DEFAULT_STATS_AMOUNT_BANDS = {
    "BTC": [Decimal("0.01"), Decimal("0.1"), Decimal("1")],
    "ETH": [Decimal("0.1"), Decimal("1"), Decimal("10")],
    "USDT": [Decimal("100"), Decimal("1000"), Decimal("10000")],
}


def _ascending_bands(bands: dict[str, list[Decimal]]) -> dict[str, list[Decimal]]:
    for currency, boundaries in bands.items():
        if any(b < 0 for b in boundaries) or any(a >= b for a, b in pairwise(boundaries)):
            raise ValueError(f"the amount bands of {currency} must be non-negative and strictly ascending")
    return bands


class PriorityRules(BaseModel):
    """Which orders jump the wait queue: by amount per currency, or by the customer's history. The amounts
    given are laid over the defaults per currency (``null`` takes a currency out of amount-based priority)."""

    vip_amount: Annotated[dict[str, Decimal], laid_over(DEFAULT_VIP_AMOUNT)] = Field(
        default_factory=lambda: dict(DEFAULT_VIP_AMOUNT)
    )
    priority_amount: Annotated[dict[str, Decimal], laid_over(DEFAULT_PRIORITY_AMOUNT)] = Field(
        default_factory=lambda: dict(DEFAULT_PRIORITY_AMOUNT)
    )
    priority_completed_orders: int = Field(default=3, description="Completed orders that earn 'priority'.")
    vip_completed_orders: int = Field(default=20, description="Completed orders that earn 'vip'.")


class Settings(ClientNetworkSettings, DataKeySettings, EventKeySettings, ServiceSettings):
    """Customer data is sealed with the data keys (``servicekit.sealing``); what events tell the notifier about
    a customer travels sealed with the event keys, the same ring as the notifier's."""

    model_config = SettingsConfigDict(
        env_prefix="ORDER_API_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        env_nested_delimiter="__",
    )

    redis_shared_state: ClassVar[str | None] = "rate limits"

    service_name: str = "order-api"
    port: int = 8001
    wallet_pool: PeerSettings = Field(
        default=PeerSettings(url="http://127.0.0.1:8002"), description="wallet-pool"
    )
    notifier: PeerSettings = Field(default=PeerSettings(url="http://127.0.0.1:8003"), description="notifier")

    # Who may change what in the database, and the audit log's checkpoints.
    database_runtime_role: str | None = Field(
        default=None,
        description="PostgreSQL role the service runs as when it is not the role that runs the migrations: "
        "`alembic upgrade head` (run as the owner of the schema) grants it rows of every table but only "
        "INSERT and SELECT on audit_log. Unset: no grants (one role does both, or embedded SQLite).",
    )
    audit_checkpoint_key: SecretStr | None = Field(
        default=None,
        description="Base64 key (32 bytes or more) signing the audit log's checkpoints: for "
        "`audit-checkpoint` and `audit-verify` only, never given to the service itself.",
    )

    # Sessions and one-time email codes.
    order_session_days: int = Field(
        default=30, description="Lifetime of the session made by creating an order."
    )
    full_session_hours: int = Field(
        default=24, description="Lifetime of a session proven by an emailed code."
    )
    email_code_minutes: int = Field(default=10, description="How long an emailed one-time code is valid.")
    email_code_max_attempts: int = Field(default=5, description="Wrong guesses before a code is spent.")
    email_code_rate_limit: str = Field(default="5/hour", description="Code requests per email address.")
    auth_rate_limit: str = Field(
        default="20/minute", description="Auth requests per client network (an IPv4 address, an IPv6 /64)."
    )

    # Orders.
    currencies: Annotated[dict[str, CurrencyRules], laid_over(DEFAULT_CURRENCIES, field_by_field=True)] = (
        Field(
            default_factory=lambda: dict(DEFAULT_CURRENCIES),
            description="The currencies orders may be placed in, with their precision, limits and lifetimes "
            "(JSON object). What is given is laid over the default: a listed currency changes only the fields "
            'given, `null` removes a currency, a new one needs all its fields; e.g. `{"BTC": {"min_amount": '
            '"0.001"}, "USDT": null}` raises the BTC minimum, keeps ETH as it is and stops taking USDT. One '
            "field alone: `ORDER_API_CURRENCIES__BTC__MIN_AMOUNT=0.001`.",
        )
    )
    currencies_cache_seconds: int = Field(
        default=300,
        ge=0,
        description="How long a browser or proxy may keep `GET /v1/currencies` before asking again "
        "(`Cache-Control: public, max-age`); asking again with its `ETag` is a `304` while the settings are "
        "unchanged.",
    )
    priority: PriorityRules = Field(
        default_factory=PriorityRules,
        description="Which orders jump the wait queue (JSON object): from which amount, per currency, an order "
        "is VIP or priority, and after how many completed orders a customer is. Amounts are laid over the "
        'default per currency, `null` ends amount-based priority in a currency; e.g. `{"vip_amount": '
        '{"BTC": "2"}, "priority_completed_orders": 5}` changes the BTC VIP amount and keeps ETH\'s and '
        "USDT's. One field alone: `ORDER_API_PRIORITY__VIP_AMOUNT__BTC=2`.",
    )
    max_open_orders_per_customer: int = Field(
        default=3,
        description="Open orders one customer may hold: those placed with a session proven by the emailed "
        "code count together; those placed with just the email count per client network.",
    )
    max_open_orders_per_ip: int = Field(
        default=20, description="Open orders one client network (an IPv4 address, an IPv6 /64) may hold."
    )
    order_rate_limit: str = Field(
        default="30/minute", description="Order creations per client network (an IPv4 address, an IPv6 /64)."
    )
    trusted_proxies: list[str] = Field(
        default_factory=list, description="CIDRs whose X-Forwarded-For is believed (JSON list)."
    )
    max_body_bytes: int = Field(default=16_384, description="Request bodies larger than this are refused.")
    intake_budget_seconds: float = Field(
        default=2.0,
        gt=0,
        description="How long order intake waits for wallet-pool's answer in total: every attempt and the "
        "backoff between them fit inside it (each attempt also keeps wallet-pool's own `timeout_seconds`). "
        "Without an answer in time the order is still accepted, `awaiting_address`, and the reconciler gets "
        "its address later.",
    )
    sweep_seconds: float = Field(default=5.0, description="How often expiry and reconciliation run.")

    # Order statistics.
    stats_amount_bands: Annotated[
        dict[str, list[Decimal]], laid_over(DEFAULT_STATS_AMOUNT_BANDS), AfterValidator(_ascending_bands)
    ] = Field(
        default_factory=lambda: {
            currency: list(bands) for currency, bands in DEFAULT_STATS_AMOUNT_BANDS.items()
        },
        description="Where `GET /v1/stats/orders` splits amounts into bands, per currency: ascending "
        'boundaries (JSON, e.g. `{"BTC": ["0.01", "0.1", "1"]}`); n boundaries make n + 1 bands, each '
        "including its lower boundary. A currency not listed has one band.",
    )
    stats_max_window_days: int = Field(
        default=92, ge=1, le=366, description="The longest window `GET /v1/stats/orders` answers for."
    )

    # Live order streams (GET /v1/orders/{id}/events).
    stream_heartbeat_seconds: float = Field(
        default=15.0,
        gt=0,
        description="An order stream sends a comment line this often when nothing else was sent, so proxies "
        "keep it open and a client notices a dead one; a queued order's place is read again with it.",
    )
    stream_retry_ms: int = Field(
        default=3000, ge=0, description="The reconnection delay an order stream asks clients for (`retry:`)."
    )
    stream_max_seconds: float = Field(
        default=1800.0,
        gt=0,
        description="An order stream is closed after this long; the client reconnects with `Last-Event-ID` and "
        "misses nothing.",
    )
    stream_max_per_session: int = Field(
        default=3, ge=1, description="Order streams one customer session may hold open at once, per replica."
    )
    stream_max_per_client: int = Field(
        default=20,
        ge=1,
        description="Order streams one client address (an IPv4 address, an IPv6 /64) may hold open at once, per "
        "replica.",
    )

    # Operators.
    operator_token_days: int | None = Field(
        default=None, ge=1, description="Lifetime of an operator's personal token in days; unset: no expiry."
    )
    telegram_link_code_ttl_seconds: int = Field(
        default=900, ge=60, description="How long a one-time Telegram link code stays valid."
    )
    telegram_link_rate_limit: str = Field(
        default="10/hour", description="Telegram link attempts (right or wrong code) per Telegram user."
    )
    operator_max_held_orders: int = Field(
        default=5,
        ge=1,
        le=1000,
        description="How many orders an operator may hold in progress at once; a take beyond it is "
        "`409 operator_at_capacity`. An admin may set another cap per operator (`max_held_orders`).",
    )
    completion_transaction_required: bool = Field(
        default=True,
        description="Completing an order needs its transaction record (the deposit received and the payout "
        "sent, with their hashes): a completion without `transaction` is `422 transaction_required`. Off: "
        "operators may complete without one, and then nothing is recorded.",
    )
    assignment_timeout_minutes: int = Field(
        default=30, ge=1, description="A taken order untouched this long returns to the takeable pool."
    )
    auto_assign: bool = Field(
        default=False,
        description="Hand each takeable order nobody holds to the available operator under their cap with the "
        "fewest held orders (ties: idle the longest); `order.assigned` tells them. Off: operators take orders.",
    )
    auto_assign_timeout_seconds: int = Field(
        default=300,
        ge=1,
        le=86_400,
        description="An auto-assigned order its operator neither accepts nor acts on this long returns to the "
        "pool (`order.assignment_lapsed`) and is not auto-assigned to them again.",
    )
    untouched_order_alert_minutes: int = Field(
        default=30,
        ge=0,
        description="An order waiting for its deposit that no operator holds this long after it got its address "
        "raises the notifier's alert `orders.untouched` (once, resolved when none is left); 0: never.",
    )
    assignment_timeout_by_currency: Annotated[dict[str, int], laid_over({})] = Field(
        default_factory=dict,
        description="Per-currency overrides of the assignment timeout in minutes (JSON object, e.g. "
        '`{"BTC": 15}`); a currency not listed uses `ORDER_API_ASSIGNMENT_TIMEOUT_MINUTES`.',
    )

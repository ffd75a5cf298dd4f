"""wallet-pool settings (environment prefix ``WALLET_POOL_``)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Annotated

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from servicekit.settings import PeerSettings, ServiceSettings, laid_over


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="WALLET_POOL_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        env_nested_delimiter="__",
    )

    service_name: str = Field(default="wallet-pool", description="Name in logs, traces and metrics.")
    port: int = Field(default=8002, description="Port to listen on.")
    order_api: PeerSettings = Field(
        default=PeerSettings(url="http://127.0.0.1:8001"),
        description="order-api, where wallet.assigned events go",
    )
    notifier: PeerSettings = Field(
        default=PeerSettings(url="http://127.0.0.1:8003"),
        description="notifier, where pool.low and pool.recovered events go",
    )
    reuse_cooldown_seconds: Annotated[dict[str, int], laid_over({})] = Field(
        default_factory=dict,
        description=(
            'Per currency (JSON object, e.g. `{"BTC": 3600}`): how long a released address rests before it is '
            "handed out again, so a late deposit is not credited to the next customer. A currency not listed: 0."
        ),
    )
    wallet_import_max_addresses: int = Field(
        default=1000, ge=1, description="Most addresses one POST /v1/wallets may import (more is a 422)."
    )
    stats_window_seconds: int = Field(
        default=3600,
        ge=60,
        description="The recent window behind allocation/release rates, wait estimates and pool predictions.",
    )
    queue_target_p90_wait_seconds: int = Field(
        default=300,
        ge=1,
        le=86400,
        description=(
            "Capacity planning in GET /v1/stats/queue: the wallets per pool that keep 90 % of waits under this "
            "many seconds (Erlang C); a request may ask for another target."
        ),
    )
    queue_sweep_seconds: float = Field(
        default=1.0,
        gt=0,
        description=(
            "How often the queue sweeper hands wallets whose cool-down has passed to waiting orders "
            "(and repairs any pool where an order waits next to a free wallet)."
        ),
    )
    metrics_refresh_seconds: float = Field(
        default=15.0, gt=0, description="How often the free-wallet and queue-length gauges are recomputed."
    )

    pool_low_threshold_percent: Decimal = Field(
        default=Decimal(10),
        gt=0,
        lt=100,
        description="A pool is low (pool.low to the notifier) when its free wallets drop below this share "
        "of its wallets that are not disabled.",
    )
    pool_low_threshold_percent_by_currency: Annotated[dict[str, Decimal], laid_over({})] = Field(
        default_factory=dict,
        description="Per-currency overrides of `WALLET_POOL_POOL_LOW_THRESHOLD_PERCENT` (JSON object, e.g. "
        '`{"BTC": 20}`); a currency not listed uses it.',
    )
    pool_recovered_margin_percent: Decimal = Field(
        default=Decimal(5),
        ge=0,
        description="A low pool is announced recovered only when its free share is back at threshold + this "
        "margin, so a pool hovering at its threshold does not flap.",
    )
    queue_alert_length: int = Field(
        default=10,
        ge=0,
        description="A pool's wait queue this long raises the notifier's alert `queue.backlog` (once per "
        "crossing); 0: never on length.",
    )
    queue_alert_wait_minutes: float = Field(
        default=15,
        ge=0,
        description="The oldest queued order waiting this long raises the same alert; 0: never on wait.",
    )
    queue_alert_clear_percent: int = Field(
        default=50,
        ge=0,
        le=100,
        description="The alert clears only when the queue's length and oldest wait are both back at this share "
        "of their thresholds, so a queue hovering at a threshold does not flap.",
    )
    pool_watch_seconds: float = Field(
        default=5.0, gt=0, description="How often pool levels are compared with their thresholds."
    )

    def pool_low_threshold(self, currency: str) -> Decimal:
        """The low-pool threshold of ``currency``, in percent."""
        return self.pool_low_threshold_percent_by_currency.get(currency, self.pool_low_threshold_percent)

    def reuse_cooldown(self, currency: str) -> timedelta:
        """The cool-down of ``currency``'s released addresses (zero when not configured)."""
        return timedelta(seconds=max(self.reuse_cooldown_seconds.get(currency, 0), 0))

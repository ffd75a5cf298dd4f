"""order-api settings (environment prefix ``ORDER_API_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from servicekit.settings import PeerSettings, ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="ORDER_API_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        env_nested_delimiter="__",
    )

    service_name: str = "order-api"
    port: int = 8001
    wallet_pool: PeerSettings = Field(
        default=PeerSettings(url="http://127.0.0.1:8002"),
        description="wallet-pool",
    )
    notifier: PeerSettings = Field(
        default=PeerSettings(url="http://127.0.0.1:8003"),
        description="notifier",
    )

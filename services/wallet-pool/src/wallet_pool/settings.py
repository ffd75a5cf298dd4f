"""wallet-pool settings (environment prefix ``WALLET_POOL_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from servicekit.settings import PeerSettings, ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="WALLET_POOL_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        env_nested_delimiter="__",
    )

    service_name: str = "wallet-pool"
    port: int = 8002
    order_api: PeerSettings = Field(
        default=PeerSettings(url="http://127.0.0.1:8001"),
        description="order-api, where wallet.assigned events go",
    )

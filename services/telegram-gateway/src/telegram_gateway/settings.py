"""telegram-gateway settings (environment prefix ``TELEGRAM_GATEWAY_``)."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from servicekit.settings import PeerSettings, ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="TELEGRAM_GATEWAY_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        env_nested_delimiter="__",
    )

    service_name: str = "telegram-gateway"
    port: int = 8004
    order_api: PeerSettings = Field(
        default=PeerSettings(url="http://127.0.0.1:8001"),
        description="order-api",
    )
    bot_token: SecretStr | None = Field(
        default=None, description="Unset: the bot is off, the API still runs."
    )
    bot_api_url: str = "https://api.telegram.org"
    webhook_secret: SecretStr | None = None
    webhook_url: str | None = None
    operators_chat_id: int | None = None

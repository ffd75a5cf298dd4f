"""notifier settings (environment prefix ``NOTIFIER_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from servicekit.settings import PeerSettings, ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="NOTIFIER_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        env_nested_delimiter="__",
    )

    service_name: str = "notifier"
    port: int = 8003
    telegram_gateway: PeerSettings = Field(
        default=PeerSettings(url="http://127.0.0.1:8004"),
        description="telegram-gateway",
    )

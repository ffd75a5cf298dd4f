"""notifier settings (environment prefix ``NOTIFIER_``)."""

from __future__ import annotations

from pydantic import Field, SecretStr
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

    email_providers: list[str] = Field(
        default=["maildrop"],
        description="Email providers tried in this order on transient failures: smtp, http_api, maildrop.",
    )
    email_from: str = Field(
        default="Exchange Desk <no-reply@exchange-desk.local>", description="The From address of every email."
    )
    smtp_host: str = Field(default="127.0.0.1", description="SMTP server host.")
    smtp_port: int = Field(default=25, description="SMTP server port (587 with STARTTLS, 465 with TLS).")
    smtp_username: str | None = Field(default=None, description="SMTP login; unset sends without AUTH.")
    smtp_password: SecretStr | None = Field(default=None, description="SMTP password.")
    smtp_starttls: bool = Field(default=False, description="Upgrade the connection with STARTTLS.")
    smtp_use_tls: bool = Field(default=False, description="Connect with implicit TLS (port 465).")
    smtp_timeout_seconds: float = Field(default=10.0, description="Timeout of each SMTP operation.")
    email_api_url: str | None = Field(
        default=None, description="HTTP email API endpoint (Resend-compatible: POST JSON, Bearer key)."
    )
    email_api_key: SecretStr | None = Field(default=None, description="Bearer key of the HTTP email API.")
    email_api_timeout_seconds: float = Field(default=10.0, description="Timeout of an HTTP email API call.")
    delivery_max_attempts: int = Field(
        default=8, ge=1, description="Attempts before a notification is dead-lettered."
    )
    delivery_backoff_base_seconds: float = Field(
        default=30.0, gt=0, description="Delay before the first retry; doubles each attempt (with jitter)."
    )
    delivery_backoff_max_seconds: float = Field(
        default=3600.0, gt=0, description="Longest delay between two attempts."
    )
    delivery_poll_seconds: float = Field(
        default=1.0, gt=0, description="How often the delivery worker looks for due notifications."
    )
    delivery_batch_size: int = Field(default=20, ge=1, description="Notifications claimed per pass.")
    delivery_lease_seconds: float = Field(
        default=120.0, gt=0, description="A claimed notification is not claimed again before this."
    )

"""notifier settings (environment prefix ``NOTIFIER_``)."""

from __future__ import annotations

import re
from typing import Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from servicekit.settings import DataKeySettings, EventKeySettings, PeerSettings, ServiceSettings

_ADDRESS = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


class Settings(DataKeySettings, EventKeySettings, ServiceSettings):
    """Recipients and template variables are sealed at rest with the data keys (``servicekit.sealing``); the
    event keys (the same ring as order-api's) open the personal data order-api's events carry sealed."""

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
    telegram_enabled: bool = Field(
        default=True,
        description=(
            "Queue Telegram messages for operators (order cards, alerts) to telegram-gateway; "
            "false for a desk without the bot."
        ),
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
    notification_retention_days: int = Field(
        default=30,
        ge=1,
        description="Sent and dead-lettered notifications (recipient, variables, subject) are deleted this "
        "many days after they were created, with their delivery attempts. Pending ones are kept until they "
        "finish.",
    )
    delivery_attempt_retention_days: int = Field(
        default=30,
        ge=1,
        description="Delivery attempts (provider, outcome, error text) are deleted this many days after they "
        "were made; delivery statistics reach back no further.",
    )

    webhook_timeout_seconds: float = Field(
        default=10.0, gt=0, le=60, description="How long a webhook delivery waits for the endpoint's answer."
    )
    webhook_secret_overlap_hours: float = Field(
        default=24.0,
        ge=0,
        description="After a webhook endpoint's secret is rotated, the old secret keeps signing (beside the new "
        "one) this long, so the receiver can switch without missing a delivery.",
    )
    webhook_allow_http: bool = Field(
        default=False,
        description="Development only (refused in production): accept `http://` webhook endpoints.",
    )
    webhook_allow_private_targets: bool = Field(
        default=False,
        description="Development only (refused in production): accept webhook endpoints that resolve to "
        "loopback, private, link-local or CGNAT addresses (cloud metadata addresses stay refused).",
    )

    admin_emails: list[str] = Field(
        default_factory=list,
        description="Who receives alert emails (JSON list of addresses); empty sends alerts to Telegram only.",
    )
    admin_locale: Literal["en", "ru"] = Field(default="en", description="Language of alert emails: en or ru.")
    alert_check_seconds: float = Field(
        default=15.0,
        gt=0,
        description="How often the alert worker escalates, tells settled resolutions and checks failure rates.",
    )
    alert_warning_to_critical_seconds: float = Field(
        default=900.0, gt=0, description="An open (unacknowledged) warning becomes critical after this long."
    )
    alert_critical_to_emergency_seconds: float = Field(
        default=1800.0,
        gt=0,
        description="An open (unacknowledged) critical alert becomes an emergency after this long.",
    )
    alert_quiet_seconds: float = Field(
        default=600.0,
        ge=0,
        description=(
            "Quiet period: a condition back within this long after its alert resolved reopens that alert; "
            "the resolution of an alert that has reopened is told only once it stays quiet this long."
        ),
    )
    alert_recurrences_to_critical: int = Field(
        default=3, ge=1, description="An alert that reopened this many times is at least critical."
    )
    delivery_failure_window_seconds: float = Field(
        default=900.0, gt=0, description="The window of delivery attempts the failure-rate alert looks at."
    )
    delivery_failure_min_attempts: int = Field(
        default=20,
        ge=1,
        description="Fewer attempts than this in the window change nothing (too little data).",
    )
    delivery_failure_threshold_percent: float = Field(
        default=20.0,
        gt=0,
        le=100,
        description="A channel whose failed attempts reach this share of the window raises `delivery.failure_rate:{channel}`.",
    )
    delivery_failure_critical_percent: float = Field(
        default=50.0, gt=0, le=100, description="At this failure share the alert is at least critical."
    )
    delivery_failure_resolve_percent: float = Field(
        default=10.0,
        ge=0,
        le=100,
        description="The alert resolves only once the failure share is below this (lower than the threshold).",
    )

    def peers_in_use(self) -> list[str]:
        """The gateway is called only when Telegram messages are queued."""
        return [
            peer for peer in super().peers_in_use() if peer != "telegram_gateway" or self.telegram_enabled
        ]

    def production_problems(self) -> list[str]:
        problems = super().production_problems()
        for name in ("webhook_allow_http", "webhook_allow_private_targets"):
            if getattr(self, name):
                problems.append(f"{self.variable(name)} must be off in production (a development setting)")
        if "maildrop" in self.email_providers:
            problems.append(
                f"{self.variable('email_providers')} must not name maildrop in production "
                "(it writes emails to local files instead of sending them): choose smtp or http_api"
            )
        return problems

    @field_validator("admin_emails")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        addresses = [address.strip() for address in value]
        for address in addresses:
            if not _ADDRESS.fullmatch(address):
                raise ValueError(f"not an email address: {address!r}")
        return addresses

    @model_validator(mode="after")
    def _failure_thresholds_in_order(self) -> Self:
        if not (
            self.delivery_failure_resolve_percent
            < self.delivery_failure_threshold_percent
            <= self.delivery_failure_critical_percent
        ):
            raise ValueError(
                "need delivery_failure_resolve_percent < delivery_failure_threshold_percent "
                "<= delivery_failure_critical_percent"
            )
        return self

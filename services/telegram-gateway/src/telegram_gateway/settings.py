"""telegram-gateway settings (environment prefix ``TELEGRAM_GATEWAY_``)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from servicekit.settings import ClientNetworkSettings, PeerSettings, ServiceSettings

BotMode = Literal["webhook", "polling"]
TELEGRAM_API_URL = "https://api.telegram.org"
SECRET_TOKEN_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


class Settings(ClientNetworkSettings, ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="TELEGRAM_GATEWAY_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        env_nested_delimiter="__",
    )

    redis_shared_state: ClassVar[str | None] = "webhook rate limits and the operator link cache"

    service_name: str = Field(default="telegram-gateway", description="Name in logs, traces and metrics.")
    port: int = Field(default=8004, description="Port to listen on.")
    order_api: PeerSettings = Field(
        default=PeerSettings(url="http://127.0.0.1:8001"),
        description="order-api, acted on for the linked operator (scope orders:act-as-operator)",
    )
    wallet_pool: PeerSettings = Field(
        default=PeerSettings(url="http://127.0.0.1:8002"),
        description="wallet-pool, read by /pool (scope pool:read)",
    )
    bot_token: SecretStr | None = Field(
        default=None,
        description="The bot's token from @BotFather. Unset: Telegram is off, the HTTP API still runs "
        "(`POST /v1/messages` answers 409 telegram_disabled).",
    )
    bot_api_url: str = Field(
        default=TELEGRAM_API_URL,
        description="Base URL of the Bot API (a local Bot API server, or the test suite's fake one).",
    )
    bot_api_timeout_seconds: float = Field(
        default=10.0, gt=0, description="Timeout of one Bot API call (long polls add their own wait)."
    )
    mode: BotMode | None = Field(
        default=None,
        description="`webhook` (Telegram posts updates to POST /telegram/webhook) or `polling` (the bot asks "
        "for updates; Telegram serves one long-polling client per bot, so on PostgreSQL the replicas hold a "
        "lease and one of them polls). Unset: webhook "
        "when WEBHOOK_URL is set, else polling, which production refuses unless chosen here.",
    )
    webhook_url: str | None = Field(
        default=None,
        description="Public HTTPS URL of POST /telegram/webhook; when set, setWebhook is called on start.",
    )
    webhook_secret: SecretStr | None = Field(
        default=None,
        description="Secret token Telegram sends in X-Telegram-Bot-Api-Secret-Token (1-256 of A-Z a-z 0-9 _ -); "
        "required in webhook mode.",
    )
    webhook_rate_limit: str = Field(
        default="600/minute",
        description="Webhook requests accepted per client network (an IPv4 address, an IPv6 /64; limits syntax).",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="CIDRs whose X-Forwarded-For is believed for the webhook rate limit (JSON list).",
    )
    operator_cache_seconds: float = Field(
        default=30.0,
        ge=0,
        description="How long the bot trusts order-api's answer to who a Telegram user is (the linked "
        "operator, or nobody) before asking again; shared by the replicas through Redis when REDIS_URL is "
        "set. order-api checks the link on every action anyway: this bounds only how long an operator an "
        "admin unlinked still sees the bot's menu and /pool. 0: ask every time.",
    )
    operators_chat_id: int | None = Field(
        default=None, description="Chat (usually a group) where order cards and alerts are posted."
    )
    operators_language: Literal["en", "ru"] = Field(
        default="en",
        description="The language of the bot's private messages to an operator that no press of theirs "
        "prompted (an order auto-assigned to them, or lapsed); answers to presses follow each operator's own "
        "Telegram language.",
    )
    support_chat_id: int | None = Field(
        default=None, description="Chat for escalations and support alerts; unset: the operators' chat."
    )
    order_api_budget_seconds: float = Field(
        default=3.0,
        gt=0,
        description="Total time one call to order-api may take for a button press or message, its retries "
        "included: past it the operator is told at once that order-api is slow (Telegram shows a spinner "
        "until a press is answered), and order-api's own transaction makes a repeated press safe.",
    )
    completion_draft_seconds: float = Field(
        default=900.0,
        gt=0,
        description="How long the bot waits for an operator's next answer while completing an order (the "
        "transaction record is asked one question at a time); past it the answers so far are dropped and "
        "a late reply completes nothing: the operator presses Complete again.",
    )
    polling_timeout_seconds: int = Field(
        default=25, ge=1, le=50, description="Long-poll wait of one getUpdates call (polling mode)."
    )
    poller_lease_retry_seconds: float = Field(
        default=5.0,
        gt=0,
        description="Polling mode on PostgreSQL: how often a replica that does not poll asks for the polling "
        "lease again, and the polling one checks it still holds it; another replica takes over within about "
        "this long of the poller stopping.",
    )
    retention_days: int = Field(
        default=30,
        ge=1,
        description="Deliveries, alerts and the cards of orders untouched this long are forgotten (the "
        "messages stay in Telegram; they are just no longer edited).",
    )
    setup_retry_max_seconds: float = Field(
        default=60.0,
        gt=0,
        description="Longest wait between attempts to register the webhook and commands while Telegram "
        "is unreachable at start.",
    )

    @field_validator(
        "bot_token",
        "mode",
        "webhook_url",
        "webhook_secret",
        "operators_chat_id",
        "support_chat_id",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """``TELEGRAM_GATEWAY_BOT_TOKEN=`` (an empty line in an env file) means not configured."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("bot_token")
    @classmethod
    def _bot_token_format(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        bot_id, colon, secret = value.get_secret_value().partition(":")
        if not colon or not bot_id.isdigit() or not secret or any(c.isspace() for c in secret):
            raise ValueError("must be the token @BotFather gave: <bot id>:<secret>")
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _secret_token_format(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        secret = value.get_secret_value()
        if not 1 <= len(secret) <= 256 or not set(secret) <= SECRET_TOKEN_ALPHABET:
            raise ValueError("must be 1-256 characters of A-Z, a-z, 0-9, _ and - (Telegram's rule)")
        return value

    @model_validator(mode="after")
    def _webhook_needs_a_secret(self) -> Settings:
        if self.bot_token is not None and self.bot_mode == "webhook" and self.webhook_secret is None:
            raise ValueError("webhook mode needs TELEGRAM_GATEWAY_WEBHOOK_SECRET")
        return self

    @property
    def bot_mode(self) -> BotMode:
        """The mode in effect: the configured one, else webhook exactly when a public URL is set."""
        if self.mode is not None:
            return self.mode
        return "webhook" if self.webhook_url else "polling"

    def production_problems(self) -> list[str]:
        problems = super().production_problems()
        if self.telegram_enabled and self.mode is None and self.bot_mode == "polling":
            problems.append(
                f"{self.variable('webhook_url')} must be set in production, or {self.variable('mode')}=polling "
                "chosen explicitly (polling: one replica at a time polls)"
            )
        if self.telegram_enabled and self.operators_chat_id is None:
            problems.append(
                f"{self.variable('operators_chat_id')} must be set in production when the bot is on "
                "(order cards and alerts would have nowhere to go)"
            )
        return problems

    @property
    def telegram_enabled(self) -> bool:
        return self.bot_token is not None

    def chat_id_for(self, chat: Literal["operators", "support"]) -> int | None:
        """Where a message for ``chat`` goes; the support chat falls back to the operators' chat."""
        if chat == "support" and self.support_chat_id is not None:
            return self.support_chat_id
        return self.operators_chat_id

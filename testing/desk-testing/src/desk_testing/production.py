"""Each service's settings as production demands them (a database, Redis, keys, its peers' keys), for the tests
that start a service the way its image does."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from notifier.settings import Settings as NotifierSettings
from order_api.settings import Settings as OrderApiSettings
from servicekit.apikeys import ApiKeyEntry, hash_key, mint_key
from servicekit.sealing import new_key
from servicekit.settings import ServiceSettings
from servicekit.testing import REDIS_TEST_URL, free_port
from telegram_gateway.settings import Settings as TelegramGatewaySettings
from wallet_pool.settings import Settings as WalletPoolSettings


@dataclass(frozen=True)
class Service:
    name: str
    package: str
    settings: type[ServiceSettings]
    peers: tuple[str, ...]

    @property
    def prefix(self) -> str:
        return self.package.upper() + "_"


SERVICES = {
    service.name: service
    for service in (
        Service("order-api", "order_api", OrderApiSettings, ("WALLET_POOL", "NOTIFIER")),
        Service("wallet-pool", "wallet_pool", WalletPoolSettings, ("ORDER_API", "NOTIFIER")),
        Service("notifier", "notifier", NotifierSettings, ("TELEGRAM_GATEWAY",)),
        Service(
            "telegram-gateway", "telegram_gateway", TelegramGatewaySettings, ("ORDER_API", "WALLET_POOL")
        ),
    )
}
UNREACHABLE_DATABASE = f"postgresql+asyncpg://nobody@127.0.0.1:{free_port()}/desk"


def hermetic_environ() -> dict[str, str]:
    """This environment without any setting of the four services (a stray URL or key would hide a refusal)."""
    prefixes = tuple(service.prefix for service in SERVICES.values())
    return {name: value for name, value in os.environ.items() if not name.startswith(prefixes)}


METRICS_KEY = mint_key("prom")
"""Reads ``/metrics`` and the readiness details of a service started with :func:`production_env`."""


METRICS_READER = {"Authorization": f"Bearer {METRICS_KEY}"}


def production_env(service: Service, *, database_url: str = UNREACHABLE_DATABASE) -> dict[str, str]:
    """Everything ``service`` needs in production: a database, Redis, accepted keys, its peers' keys, and
    what only it needs (order-api's and the notifier's data and event keys, the gateway's webhook)."""
    p = service.prefix
    accepted = [
        ApiKeyEntry(name="caller", hash=hash_key(mint_key("tst")), scopes=["events:publish"]),
        ApiKeyEntry(name="prometheus", hash=hash_key(METRICS_KEY), scopes=["metrics:read"]),
    ]
    env = {
        f"{p}ENVIRONMENT": "production",
        f"{p}DATABASE_URL": database_url,
        f"{p}REDIS_URL": REDIS_TEST_URL,
        f"{p}API_KEYS": json.dumps([entry.model_dump() for entry in accepted]),
        f"{p}LOG_JSON": "true",
    }
    for peer in service.peers:
        env[f"{p}{peer}__API_KEY"] = mint_key("tst")
    if service.name in ("order-api", "notifier"):
        env |= {
            f"{p}DATA_KEYS": json.dumps({"k1": new_key()}),
            f"{p}DATA_KEY_CURRENT": "k1",
            f"{p}BLIND_INDEX_KEY": new_key(),
            f"{p}EVENT_KEYS": json.dumps({"e1": new_key()}),
            f"{p}EVENT_KEY_CURRENT": "e1",
        }
    if service.name == "notifier":
        env[f"{p}EMAIL_PROVIDERS"] = '["smtp"]'
    if service.name == "telegram-gateway":
        env |= {
            f"{p}BOT_TOKEN": "123456:production-token",
            f"{p}BOT_API_URL": f"http://127.0.0.1:{free_port()}",
            f"{p}WEBHOOK_URL": "https://desk.example/telegram/webhook",
            f"{p}WEBHOOK_SECRET": "webhook-secret",
            f"{p}OPERATORS_CHAT_ID": "-1001234567890",
        }
    return env

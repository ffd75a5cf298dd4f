"""Start order-api, wallet-pool, notifier and telegram-gateway as real processes wired to each other with freshly
minted keys (used by the cross-service tests)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from coin_addresses import demo_address
from servicekit.apikeys import ApiKeyEntry, hash_key, mint_key
from servicekit.testing import TEST_EVENT_KEY_ID, TEST_EVENT_KEYS, ServiceProcess, free_port
from telegram_gateway.testing import OPERATORS_CHAT_ID, SUPPORT_CHAT_ID, WEBHOOK_SECRET, FakeBotApi

EVENT_KEYS = json.dumps(TEST_EVENT_KEYS)
"""The event key ring order-api seals customers' data in events with and the notifier opens it with."""


def entries(*items: ApiKeyEntry) -> str:
    return json.dumps([e.model_dump() for e in items])


@dataclass
class StackKeys:
    admin: str = field(default_factory=lambda: mint_key("adm"))
    wallet_pool_admin: str = field(default_factory=lambda: mint_key("adm"))
    order_api_to_wallet_pool: str = field(default_factory=lambda: mint_key("oa"))
    wallet_pool_to_order_api: str = field(default_factory=lambda: mint_key("wp"))
    order_api_to_notifier: str = field(default_factory=lambda: mint_key("oa"))
    wallet_pool_to_notifier: str = field(default_factory=lambda: mint_key("wp"))
    notifier_admin: str = field(default_factory=lambda: mint_key("adm"))
    notifier_to_telegram_gateway: str = field(default_factory=lambda: mint_key("nt"))
    telegram_gateway_to_order_api: str = field(default_factory=lambda: mint_key("tg"))
    telegram_gateway_to_wallet_pool: str = field(default_factory=lambda: mint_key("tg"))


@dataclass
class Stack:
    """order-api + wallet-pool (+ notifier, + telegram-gateway) on one PostgreSQL database (each in its own
    schema), or, with ``database_url=None``, on the embedded default: SQLite files in ``var_dir``, which all
    four then share as ``make run``'s do. order-api and the notifier share one event key ring, as devstack
    gives them."""

    database_url: str | None
    logs: Path
    var_dir: Path | None = None
    keys: StackKeys = field(default_factory=StackKeys)
    order_api_port: int = field(default_factory=free_port)
    wallet_pool_port: int = field(default_factory=free_port)
    notifier_port: int = field(default_factory=free_port)
    telegram_gateway_port: int = field(default_factory=free_port)
    """Where each service is reached: its process, or, with replicas, what spreads requests over them (peers,
    clients and the webhook use these ports either way)."""

    def _storage(self, prefix: str, name: str) -> dict[str, str]:
        env = {f"{prefix}VAR_DIR": str(self.var_dir or self.logs / f"{name}-var")}
        if self.database_url is not None:
            env[f"{prefix}DATABASE_URL"] = self.database_url
        return env

    def order_api(self, **extra_env: str) -> ServiceProcess:
        env = {
            **self._storage("ORDER_API_", "order-api"),
            "ORDER_API_EVENT_KEYS": EVENT_KEYS,
            "ORDER_API_EVENT_KEY_CURRENT": TEST_EVENT_KEY_ID,
            "ORDER_API_API_KEYS": entries(
                ApiKeyEntry(name="admin", hash=hash_key(self.keys.admin), scopes=["admin"]),
                ApiKeyEntry(
                    name="wallet-pool",
                    hash=hash_key(self.keys.wallet_pool_to_order_api),
                    scopes=["events:publish"],
                ),
                ApiKeyEntry(
                    name="telegram-gateway",
                    hash=hash_key(self.keys.telegram_gateway_to_order_api),
                    scopes=["orders:act-as-operator"],
                ),
            ),
            "ORDER_API_WALLET_POOL__URL": f"http://127.0.0.1:{self.wallet_pool_port}",
            "ORDER_API_WALLET_POOL__API_KEY": self.keys.order_api_to_wallet_pool,
            "ORDER_API_WALLET_POOL__TIMEOUT_SECONDS": "2",
            "ORDER_API_NOTIFIER__URL": f"http://127.0.0.1:{self.notifier_port}",
            "ORDER_API_NOTIFIER__API_KEY": self.keys.order_api_to_notifier,
            "ORDER_API_OUTBOX_POLL_SECONDS": "0.2",
            "ORDER_API_OUTBOX_BACKOFF_BASE_SECONDS": "0.2",
            "ORDER_API_OUTBOX_BACKOFF_MAX_SECONDS": "1",
            "ORDER_API_SWEEP_SECONDS": "0.5",
            **extra_env,
        }
        return ServiceProcess(
            app="order_api.main:create_app",
            env=env,
            log_path=self.logs / "order-api.log",
            port=self.order_api_port,
        )

    def wallet_pool(self, **extra_env: str) -> ServiceProcess:
        env: Mapping[str, str] = {
            **self._storage("WALLET_POOL_", "wallet-pool"),
            "WALLET_POOL_API_KEYS": entries(
                ApiKeyEntry(
                    name="order-api",
                    hash=hash_key(self.keys.order_api_to_wallet_pool),
                    scopes=["allocations:write", "allocations:read", "pool:read", "events:publish"],
                ),
                ApiKeyEntry(
                    name="admin",
                    hash=hash_key(self.keys.wallet_pool_admin),
                    scopes=["wallets:write", "wallets:read", "pool:read", "allocations:read", "outbox:admin"],
                ),
                ApiKeyEntry(
                    name="telegram-gateway",
                    hash=hash_key(self.keys.telegram_gateway_to_wallet_pool),
                    scopes=["pool:read"],
                ),
            ),
            "WALLET_POOL_ORDER_API__URL": f"http://127.0.0.1:{self.order_api_port}",
            "WALLET_POOL_ORDER_API__API_KEY": self.keys.wallet_pool_to_order_api,
            "WALLET_POOL_NOTIFIER__URL": f"http://127.0.0.1:{self.notifier_port}",
            "WALLET_POOL_NOTIFIER__API_KEY": self.keys.wallet_pool_to_notifier,
            "WALLET_POOL_OUTBOX_POLL_SECONDS": "0.2",
            "WALLET_POOL_OUTBOX_BACKOFF_BASE_SECONDS": "0.2",
            "WALLET_POOL_OUTBOX_BACKOFF_MAX_SECONDS": "1",
            **extra_env,
        }
        return ServiceProcess(
            app="wallet_pool.main:create_app",
            env=env,
            log_path=self.logs / "wallet-pool.log",
            port=self.wallet_pool_port,
        )

    def notifier(self, *, smtp_port: int, **extra_env: str) -> ServiceProcess:
        """The notifier, sending email through a plain SMTP server on loopback at ``smtp_port``."""
        env: Mapping[str, str] = {
            **self._storage("NOTIFIER_", "notifier"),
            "NOTIFIER_EVENT_KEYS": EVENT_KEYS,
            "NOTIFIER_EVENT_KEY_CURRENT": TEST_EVENT_KEY_ID,
            "NOTIFIER_API_KEYS": entries(
                ApiKeyEntry(
                    name="order-api",
                    hash=hash_key(self.keys.order_api_to_notifier),
                    scopes=["events:publish"],
                ),
                ApiKeyEntry(
                    name="wallet-pool",
                    hash=hash_key(self.keys.wallet_pool_to_notifier),
                    scopes=["events:publish"],
                ),
                ApiKeyEntry(
                    name="admin",
                    hash=hash_key(self.keys.notifier_admin),
                    scopes=["notifications:read", "notifications:write", "alerts:write", "webhooks:admin"],
                ),
            ),
            "NOTIFIER_TELEGRAM_GATEWAY__URL": f"http://127.0.0.1:{self.telegram_gateway_port}",
            "NOTIFIER_TELEGRAM_GATEWAY__API_KEY": self.keys.notifier_to_telegram_gateway,
            "NOTIFIER_TELEGRAM_GATEWAY__TIMEOUT_SECONDS": "5",
            "NOTIFIER_EMAIL_PROVIDERS": '["smtp"]',
            "NOTIFIER_SMTP_HOST": "127.0.0.1",
            "NOTIFIER_SMTP_PORT": str(smtp_port),
            "NOTIFIER_SMTP_STARTTLS": "false",
            "NOTIFIER_SMTP_TIMEOUT_SECONDS": "2",
            "NOTIFIER_DELIVERY_POLL_SECONDS": "0.1",
            "NOTIFIER_DELIVERY_BACKOFF_BASE_SECONDS": "0.1",
            "NOTIFIER_DELIVERY_BACKOFF_MAX_SECONDS": "0.5",
            **extra_env,
        }
        return ServiceProcess(
            app="notifier.main:create_app",
            env=env,
            log_path=self.logs / "notifier.log",
            port=self.notifier_port,
        )

    def telegram_gateway(self, *, bot_api: FakeBotApi | None = None, **extra_env: str) -> ServiceProcess:
        """telegram-gateway; with ``bot_api`` (a started fake Bot API) the bot is on, in webhook mode, posting
        to the fake's operators' and support chats; without it Telegram is off."""
        url = f"http://127.0.0.1:{self.telegram_gateway_port}"
        env: dict[str, str] = {
            **self._storage("TELEGRAM_GATEWAY_", "telegram-gateway"),
            "TELEGRAM_GATEWAY_API_KEYS": entries(
                ApiKeyEntry(
                    name="notifier",
                    hash=hash_key(self.keys.notifier_to_telegram_gateway),
                    scopes=["messages:send"],
                ),
            ),
            "TELEGRAM_GATEWAY_ORDER_API__URL": f"http://127.0.0.1:{self.order_api_port}",
            "TELEGRAM_GATEWAY_ORDER_API__API_KEY": self.keys.telegram_gateway_to_order_api,
            "TELEGRAM_GATEWAY_ORDER_API__TIMEOUT_SECONDS": "5",
            "TELEGRAM_GATEWAY_WALLET_POOL__URL": f"http://127.0.0.1:{self.wallet_pool_port}",
            "TELEGRAM_GATEWAY_WALLET_POOL__API_KEY": self.keys.telegram_gateway_to_wallet_pool,
        }
        if bot_api is not None:
            env |= {
                "TELEGRAM_GATEWAY_BOT_TOKEN": bot_api.token,
                "TELEGRAM_GATEWAY_BOT_API_URL": bot_api.url,
                "TELEGRAM_GATEWAY_MODE": "webhook",
                "TELEGRAM_GATEWAY_WEBHOOK_URL": f"{url}/telegram/webhook",
                "TELEGRAM_GATEWAY_WEBHOOK_SECRET": WEBHOOK_SECRET,
                "TELEGRAM_GATEWAY_OPERATORS_CHAT_ID": str(OPERATORS_CHAT_ID),
                "TELEGRAM_GATEWAY_SUPPORT_CHAT_ID": str(SUPPORT_CHAT_ID),
                "TELEGRAM_GATEWAY_SETUP_RETRY_MAX_SECONDS": "1",
            }
        return ServiceProcess(
            app="telegram_gateway.main:create_app",
            env={**env, **extra_env},
            log_path=self.logs / "telegram-gateway.log",
            port=self.telegram_gateway_port,
        )


def replica(process: ServiceProcess, n: int) -> ServiceProcess:
    """``process`` as replica ``n`` of its service: the same settings, on a port and with a log of its own. The
    replicas share the service's var directory: its development keys, which seal data and key the blind
    indexes, are one service's configuration, as a Secret mounted in every pod is."""
    log = process.log_path.with_name(f"{process.log_path.stem}-{n}.log")
    return ServiceProcess(app=process.app, env=process.env, log_path=log, port=free_port())


def customer_email(n: int) -> str:
    """The address of the desk tests' customer number ``n``."""
    return f"customer{n}@example.com"


async def import_btc_wallets(wallet_pool: ServiceProcess, stack: Stack, count: int) -> list[str]:
    """Import ``count`` BTC deposit addresses into the running ``wallet_pool``; the addresses."""
    addresses = [demo_address(currency="BTC", network="bitcoin", seed=1000 + i) for i in range(count)]
    async with httpx.AsyncClient(base_url=wallet_pool.url) as client:
        response = await client.post(
            "/v1/wallets",
            json={"currency": "BTC", "addresses": addresses},
            headers={"Authorization": f"Bearer {stack.keys.wallet_pool_admin}"},
        )
    if response.status_code != 201:
        raise AssertionError(f"wallet import answered {response.status_code}: {response.text}")
    return addresses


async def start_services(services: list[ServiceProcess], *processes: ServiceProcess) -> None:
    """Start ``processes`` one after the other, each handed to ``services`` first so that it is stopped after the
    test even when a later one fails to start."""
    for process in processes:
        services.append(process)
        await process.start()


async def start_intake(stack: Stack, services: list[ServiceProcess]) -> tuple[ServiceProcess, ServiceProcess]:
    """wallet-pool, then order-api, running; ``(wallet_pool, order_api)``."""
    wallet_pool, order_api = stack.wallet_pool(), stack.order_api()
    await start_services(services, wallet_pool, order_api)
    return wallet_pool, order_api


async def start_emailing(
    stack: Stack, services: list[ServiceProcess], *, smtp_port: int, **notifier_env: str
) -> tuple[ServiceProcess, ServiceProcess, ServiceProcess]:
    """wallet-pool, the notifier (email through the SMTP server at ``smtp_port``, Telegram off) and then
    order-api, running; ``(wallet_pool, order_api, notifier)``."""
    wallet_pool, order_api = stack.wallet_pool(), stack.order_api()
    notifier = stack.notifier(smtp_port=smtp_port, NOTIFIER_TELEGRAM_ENABLED="false", **notifier_env)
    await start_services(services, wallet_pool, notifier, order_api)
    return wallet_pool, order_api, notifier

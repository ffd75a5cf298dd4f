"""Production refuses to guess, and its settings can come from secret files.

With ``<PREFIX>_ENVIRONMENT=production`` each service, started exactly as its image starts it (uvicorn with
the ``create_app`` factory), exits non-zero with one line naming the missing setting, and writes nothing,
when it would otherwise run on an embedded store, in-process rate limits, generated keys or a polling bot.
A complete production configuration, whether given as variables or as files in the secrets directory, is
not refused.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from pydantic_settings import BaseSettings

from desk_testing.production import (
    METRICS_READER,
    SERVICES,
    Service,
    hermetic_environ,
    production_env,
)
from notifier.settings import Settings as NotifierSettings
from servicekit.server import uvicorn_argv
from servicekit.testing import ServiceProcess, eventually, free_port, migrated_database
from telegram_gateway.settings import Settings as TelegramGatewaySettings

ROOT = Path(__file__).resolve().parents[1]


def refused(command: list[str], env: Mapping[str, str], cwd: Path) -> str:
    """Run ``command`` (in this environment without any service setting, plus ``env``) and return the one
    line it printed on stderr, failing the test unless it exited non-zero with exactly one line."""
    result = subprocess.run(
        command,
        env={**hermetic_environ(), **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr  # one line, no traceback
    return lines[0]


def image_command(service: Service) -> list[str]:
    """The service's container command (its Dockerfile's CMD), on a free loopback port."""
    return uvicorn_argv(service.package, host="127.0.0.1", port=free_port())


@dataclass(frozen=True)
class Refusal:
    service: str
    unset: tuple[str, ...]
    message: str
    extra: tuple[tuple[str, str], ...] = ()


REFUSALS = [
    *(
        Refusal(name, ("DATABASE_URL",), f"{service.prefix}DATABASE_URL must be set in production")
        for name, service in SERVICES.items()
    ),
    Refusal("order-api", ("REDIS_URL",), "ORDER_API_REDIS_URL must be set in production"),
    Refusal("telegram-gateway", ("REDIS_URL",), "TELEGRAM_GATEWAY_REDIS_URL must be set in production"),
    Refusal(
        "order-api",
        ("DATA_KEYS", "DATA_KEY_CURRENT", "BLIND_INDEX_KEY"),
        "ORDER_API_DATA_KEYS, ORDER_API_DATA_KEY_CURRENT, ORDER_API_BLIND_INDEX_KEY must be set in production "
        "(otherwise development keys would be generated",
    ),
    Refusal(
        "order-api",
        ("EVENT_KEYS", "EVENT_KEY_CURRENT"),
        "ORDER_API_EVENT_KEYS, ORDER_API_EVENT_KEY_CURRENT must be set in production "
        "(otherwise development keys would be generated",
    ),
    Refusal(
        "notifier",
        ("DATA_KEYS", "DATA_KEY_CURRENT", "BLIND_INDEX_KEY"),
        "NOTIFIER_DATA_KEYS, NOTIFIER_DATA_KEY_CURRENT, NOTIFIER_BLIND_INDEX_KEY must be set in production "
        "(otherwise development keys would be generated",
    ),
    Refusal(
        "notifier",
        ("EVENT_KEYS",),
        "NOTIFIER_EVENT_KEYS must be set in production (otherwise development keys would be generated",
    ),
    Refusal(
        "telegram-gateway",
        ("WEBHOOK_URL",),
        "TELEGRAM_GATEWAY_WEBHOOK_URL must be set in production, or TELEGRAM_GATEWAY_MODE=polling chosen "
        "explicitly (polling: one replica at a time polls)",
    ),
    Refusal("wallet-pool", ("NOTIFIER__API_KEY",), "WALLET_POOL_NOTIFIER__API_KEY must be set in production"),
    Refusal("notifier", ("API_KEYS",), "NOTIFIER_API_KEYS must be set in production"),
]


@pytest.mark.parametrize(
    "refusal", REFUSALS, ids=[f"{r.service}-without-{'+'.join(r.unset).lower()}" for r in REFUSALS]
)
async def test_production_refuses_to_start_without_what_it_would_guess(
    refusal: Refusal, tmp_path: Path
) -> None:
    service = SERVICES[refusal.service]
    var_dir = tmp_path / "var"
    env = production_env(service) | {f"{service.prefix}VAR_DIR": str(var_dir)}
    for setting in refusal.unset:
        del env[service.prefix + setting]
    line = await asyncio.to_thread(refused, image_command(service), env, tmp_path)
    assert line.startswith(f"{service.name} refuses to start: "), line
    assert refusal.message in line
    assert not var_dir.exists(), "a refused start writes nothing (no SQLite file, no generated keys)"


def in_production(service: Service, monkeypatch: pytest.MonkeyPatch, directory: Path) -> dict[str, str]:
    """The environment of ``production_env`` set for this test, in ``directory`` (no stray ``.env``)."""
    monkeypatch.chdir(directory)
    env = production_env(service)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.mark.parametrize("service", SERVICES.values(), ids=list(SERVICES))
def test_a_complete_production_configuration_is_not_refused(
    service: Service, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    in_production(service, monkeypatch, tmp_path)
    assert service.settings().production_problems() == []


def test_the_gateway_may_poll_in_production_when_polling_is_chosen(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    in_production(SERVICES["telegram-gateway"], monkeypatch, tmp_path)
    monkeypatch.delenv("TELEGRAM_GATEWAY_WEBHOOK_URL")
    assert TelegramGatewaySettings().production_problems() != []
    monkeypatch.setenv("TELEGRAM_GATEWAY_MODE", "polling")
    settings = TelegramGatewaySettings()
    assert settings.bot_mode == "polling"
    assert settings.production_problems() == []


def test_the_notifier_needs_the_gateways_key_only_when_it_sends_to_telegram(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    in_production(SERVICES["notifier"], monkeypatch, tmp_path)
    monkeypatch.delenv("NOTIFIER_TELEGRAM_GATEWAY__API_KEY")
    assert NotifierSettings().production_problems() == [
        "NOTIFIER_TELEGRAM_GATEWAY__API_KEY must be set in production"
    ]
    monkeypatch.setenv("NOTIFIER_TELEGRAM_ENABLED", "false")
    assert NotifierSettings().production_problems() == []


def test_the_notifier_refuses_to_drop_customer_emails_into_files_in_production(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    in_production(SERVICES["notifier"], monkeypatch, tmp_path)
    monkeypatch.delenv("NOTIFIER_EMAIL_PROVIDERS")  # the default, maildrop
    assert NotifierSettings().production_problems() == [
        "NOTIFIER_EMAIL_PROVIDERS must not name maildrop in production (it writes emails to local files "
        "instead of sending them): choose smtp or http_api"
    ]
    monkeypatch.setenv("NOTIFIER_EMAIL_PROVIDERS", '["smtp", "maildrop"]')
    assert NotifierSettings().production_problems() != []


def test_the_gateway_with_a_bot_needs_the_operators_chat_in_production(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    in_production(SERVICES["telegram-gateway"], monkeypatch, tmp_path)
    monkeypatch.delenv("TELEGRAM_GATEWAY_OPERATORS_CHAT_ID")
    assert TelegramGatewaySettings().production_problems() == [
        "TELEGRAM_GATEWAY_OPERATORS_CHAT_ID must be set in production when the bot is on "
        "(order cards and alerts would have nowhere to go)"
    ]


def test_invalid_settings_stop_the_process_with_one_line_naming_the_variable(tmp_path: Path) -> None:
    service = SERVICES["telegram-gateway"]
    env = production_env(service) | {"TELEGRAM_GATEWAY_WEBHOOK_SECRET": "not allowed!"}
    line = refused(image_command(service), env, tmp_path)
    assert line.startswith("invalid settings: TELEGRAM_GATEWAY_WEBHOOK_SECRET: "), line


# --- secret files -------------------------------------------------------------------------------------------


def write_secret_files(directory: Path, env: Mapping[str, str]) -> None:
    """One file per variable, as a Kubernetes Secret volume or compose ``secrets:`` mounts them (values end
    with a newline, as ``kubectl create secret --from-file`` of an edited file keeps it)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, value in env.items():
        (directory / name).write_text(value + "\n")


async def test_production_shows_only_what_it_must(tmp_path: Path, services: list[ServiceProcess]) -> None:
    """order-api started as its image starts it, in production: no API documentation, ``/metrics`` and the
    readiness details only for a ``metrics:read`` key, the readiness status alone for a probe, the security
    headers and no ``Server`` banner."""
    service = SERVICES["order-api"]
    async with migrated_database("order-api") as url:
        env = production_env(service, database_url=url) | {f"{service.prefix}VAR_DIR": str(tmp_path / "var")}
        command = image_command(service)
        process = subprocess.Popen(  # noqa: ASYNC220 (returns at once; fixed argv)
            command,
            env={**hermetic_environ(), **env},
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base_url = f"http://127.0.0.1:{command[-1]}"
        try:
            async with httpx.AsyncClient(base_url=base_url, timeout=5.0) as client:

                async def ready() -> bool:
                    assert process.poll() is None, "order-api exited"
                    try:
                        return (await client.get("/health/live")).status_code == 200
                    except httpx.TransportError:
                        return False

                await eventually(ready, within=30.0, message="order-api answers")
                answers = {
                    path: await client.get(path)
                    for path in ("/docs", "/redoc", "/openapi.json", "/openapi.internal.json")
                }
                answers["/metrics"] = await client.get("/metrics")
                answers["/health/ready"] = await client.get("/health/ready")
                metrics = await client.get("/metrics", headers=METRICS_READER)
                details = await client.get("/health/ready", headers=METRICS_READER)
        finally:
            process.terminate()
            await asyncio.to_thread(process.wait, 15)
    assert {path: answer.status_code for path, answer in answers.items()} == {
        "/docs": 404,
        "/redoc": 404,
        "/openapi.json": 404,
        "/openapi.internal.json": 404,
        "/metrics": 401,
        "/health/ready": 200,
    }
    assert answers["/health/ready"].json() == {"status": "ready"}
    assert metrics.status_code == 200
    assert "http_requests_total" in metrics.text
    assert details.json()["checks"]["database"]["status"] == "ok"
    for answer in [*answers.values(), metrics, details]:
        assert "server" not in answer.headers
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["cache-control"] == "no-store"


def settings_fields(settings: BaseSettings) -> dict[str, object]:
    """Settings compared by value, secrets included."""
    return json.loads(json.dumps(settings.model_dump(mode="python"), default=_reveal))  # type: ignore[no-any-return]


def _reveal(value: object) -> object:
    reveal = getattr(value, "get_secret_value", None)
    return reveal() if reveal is not None else str(value)


@pytest.mark.parametrize("service", SERVICES.values(), ids=list(SERVICES))
def test_every_setting_can_come_from_a_file_in_the_secrets_directory(
    service: Service, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env = in_production(service, monkeypatch, tmp_path)
    from_variables = service.settings()
    for name in env:
        monkeypatch.delenv(name)

    secrets = tmp_path / "secrets"
    write_secret_files(
        secrets, {name: value for name, value in env.items() if name != f"{service.prefix}ENVIRONMENT"}
    )
    monkeypatch.setenv(f"{service.prefix}SECRETS_DIR", str(secrets))
    monkeypatch.setenv(f"{service.prefix}ENVIRONMENT", "production")
    from_files = service.settings()

    assert from_files.production_problems() == []
    assert settings_fields(from_files) == settings_fields(from_variables) | {"secrets_dir": str(secrets)}
    peer = service.peers[0].lower()
    key = getattr(from_files, peer).api_key
    assert key.get_secret_value() == env[f"{service.prefix}{service.peers[0]}__API_KEY"]  # nested, SecretStr
    assert key.get_secret_value() not in repr(from_files)


async def test_a_production_start_from_secret_files_serves_and_is_ready(
    tmp_path: Path, services: list[ServiceProcess]
) -> None:
    service = SERVICES["order-api"]
    async with migrated_database("order-api") as url:
        secrets = tmp_path / "secrets"
        write_secret_files(secrets, production_env(service, database_url=url))
        process = ServiceProcess(
            app="order_api.main:create_app",
            env={"ORDER_API_SECRETS_DIR": str(secrets), "ORDER_API_VAR_DIR": str(tmp_path / "var")},
            log_path=tmp_path / "order-api.log",
        )
        services.append(await process.start())
        async with httpx.AsyncClient(base_url=process.url) as client:
            ready = (await client.get("/health/ready", headers=METRICS_READER)).json()
        assert ready["checks"]["database"]["detail"] == "postgresql"
        assert ready["checks"]["redis"]["status"] == "ok"
        assert ready["schema"]["status"] == "ok"
        await process.stop()
        assert not (tmp_path / "var").exists()


def test_a_production_migration_without_a_database_url_stops_instead_of_migrating_a_file(
    tmp_path: Path,
) -> None:
    """The migration gate (``alembic upgrade head`` in the image's working directory) fails, rather than
    migrate a SQLite file of its own and report success."""
    var_dir = tmp_path / "var"
    env = {"WALLET_POOL_ENVIRONMENT": "production", "WALLET_POOL_VAR_DIR": str(var_dir)}
    command = [sys.executable, "-m", "alembic", "upgrade", "head"]
    line = refused(command, env, ROOT / "services" / "wallet-pool")
    assert line == (
        "wallet-pool refuses to start: WALLET_POOL_DATABASE_URL must be set in production "
        "(without it each replica would keep a SQLite file of its own)"
    )
    assert not var_dir.exists()


def test_an_ops_command_in_production_without_a_database_url_stops(tmp_path: Path) -> None:
    """``audit-verify`` would otherwise check an empty SQLite file and report an intact chain."""
    var_dir = tmp_path / "var"
    env = {"ORDER_API_ENVIRONMENT": "production", "ORDER_API_VAR_DIR": str(var_dir)}
    line = refused([sys.executable, "-m", "order_api", "audit-verify"], env, tmp_path)
    assert line.startswith("order-api refuses to start: ORDER_API_DATABASE_URL must be set in production")
    assert not var_dir.exists()

"""The embedded-mode smoke suite: ``scripts/devstack.py run`` exactly as ``make run`` starts it, as a real
process with a var dir of its own and four free ports.

The first run mints private credentials, migrates, seeds the demo pool and serves it, through the real
authenticated, traced order-api → wallet-pool hop, and prints commands that work as pasted; Ctrl-C stops every
service and the script, which exits 0 (so ``make`` reports no error). A second run on the same var dir reuses
the credentials and the data, and SIGTERM stops it as cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.util
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from dotenv import dotenv_values

from servicekit.apikeys import hash_key
from servicekit.testing import eventually, free_port

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "devstack.py"
ENV_PREFIXES = {
    "order-api": "ORDER_API_",
    "wallet-pool": "WALLET_POOL_",
    "notifier": "NOTIFIER_",
    "telegram-gateway": "TELEGRAM_GATEWAY_",
}
READY_WITHIN = 120.0  # migrate, seed and start four processes; generous for a loaded machine
STOP_WITHIN = 15.0

# Who accepts which key with which scopes (README, "Security": roles and scopes): the credential's name in the file → scopes.
ACCEPTED: dict[str, dict[str, list[str]]] = {
    "order-api": {
        "admin_token": ["admin"],
        "wallet-pool->order-api": ["events:publish"],
        "telegram-gateway->order-api": ["orders:act-as-operator"],
    },
    "wallet-pool": {
        "order-api->wallet-pool": ["allocations:write", "allocations:read", "pool:read"],
        "wallet_pool_admin_key": [
            "wallets:write",
            "wallets:read",
            "pool:read",
            "allocations:read",
            "outbox:admin",
        ],
        "telegram-gateway->wallet-pool": ["pool:read"],
    },
    "notifier": {
        "order-api->notifier": ["events:publish"],
        "wallet-pool->notifier": ["events:publish"],
        "notifier_admin_key": ["notifications:read", "notifications:write", "alerts:write", "webhooks:admin"],
    },
    "telegram-gateway": {"notifier->telegram-gateway": ["messages:send"]},
}
KEY_PREFIXES = {"order-api": "oa_", "wallet-pool": "wp_", "notifier": "nt_", "telegram-gateway": "tg_"}
ADMIN_KEYS = ("admin_token", "wallet_pool_admin_key", "notifier_admin_key")

# The demo seed: 5 free wallets per (currency, network); USDT has two networks (TRC20, ERC20).
DEMO_POOL = {"BTC": 5, "ETH": 5, "USDT": 10}


# --- one devstack.py process ------------------------------------------------------------------------------


def hermetic_environ(ports: Mapping[str, int]) -> dict[str, str]:
    """This environment without any service setting (a stray *_DATABASE_URL or bot token), plus the ports."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(tuple(ENV_PREFIXES.values()))}
    return env | {f"{ENV_PREFIXES[name]}PORT": str(port) for name, port in ports.items()}


def is_alive(pid: int) -> bool:
    """The process exists and has not exited (a zombie has exited; only its parent has not collected it)."""
    try:
        os.kill(pid, 0)
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (ProcessLookupError, FileNotFoundError):
        return False
    return state != "Z"


def is_listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


@dataclass(frozen=True)
class Stopped:
    returncode: int | None  # None: still running after STOP_WITHIN seconds
    seconds: float


class DevStackRun:
    """``devstack.py run --var-dir <var_dir>`` with the ports overridden, its output in ``log_path``."""

    def __init__(self, *, var_dir: Path, ports: Mapping[str, int], log_path: Path) -> None:
        self.var_dir = var_dir
        self.ports = dict(ports)
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.stopped: Stopped | None = None

    @property
    def credentials_path(self) -> Path:
        return self.var_dir / "dev-credentials.json"

    def credentials(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.credentials_path.read_text())
        return document

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def service_pids(self) -> dict[str, int]:
        """The pid of each uvicorn process, as honcho reports it (``order-api started (pid=123)``)."""
        found = re.findall(r"\| (\S+) started \(pid=(\d+)\)", self.log_text())
        return {name: int(pid) for name, pid in found}

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(SCRIPT), "run", "--var-dir", str(self.var_dir)],
                env=hermetic_environ(self.ports),
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )

    async def wait_until_ready(self) -> None:
        """Poll every service's ``/health/ready`` until all four answer 200, within READY_WITHIN seconds."""
        assert self.process is not None
        deadline = time.monotonic() + READY_WITHIN
        statuses: dict[str, int | str] = {}
        async with httpx.AsyncClient(timeout=2.0) as client:
            while True:
                if self.process.poll() is not None:
                    raise AssertionError(
                        f"devstack exited with {self.process.returncode} before it was ready:\n{self.tail()}"
                    )
                for service in self.ports:
                    try:
                        statuses[service] = (
                            await client.get(f"{self.url(service)}/health/ready")
                        ).status_code
                    except httpx.HTTPError as exc:
                        statuses[service] = type(exc).__name__
                if all(status == 200 for status in statuses.values()):
                    return
                if time.monotonic() > deadline:
                    raise AssertionError(f"not ready within {READY_WITHIN}s: {statuses}\n{self.tail()}")
                await asyncio.sleep(0.25)

    async def stop(self, signum: signal.Signals = signal.SIGINT) -> Stopped:
        """Ctrl-C (SIGINT, or ``signum``) and wait up to STOP_WITHIN seconds; the outcome is kept, so calling
        again is free."""
        assert self.process is not None
        if self.stopped is None:
            started = time.monotonic()
            self.process.send_signal(signum)
            try:
                returncode: int | None = await asyncio.to_thread(self.process.wait, STOP_WITHIN)
            except subprocess.TimeoutExpired:
                returncode = None
            self.stopped = Stopped(returncode=returncode, seconds=time.monotonic() - started)
        return self.stopped

    def kill_leftovers(self) -> None:
        """Whatever a failed test left running: the script, then each uvicorn (each leads its own group)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        for pid in self.service_pids().values():
            if is_alive(pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)

    def tail(self) -> str:
        return self.log_text()[-4000:]


@asynccontextmanager
async def devstack_run(
    *, var_dir: Path, ports: Mapping[str, int], log_path: Path
) -> AsyncIterator[DevStackRun]:
    """A started and ready ``devstack.py run``; stopped with Ctrl-C afterwards, killed if that fails."""
    stack = DevStackRun(var_dir=var_dir, ports=ports, log_path=log_path)
    try:
        stack.start()
        await stack.wait_until_ready()
        yield stack
    finally:
        with contextlib.suppress(AssertionError):
            if stack.process is not None:
                await stack.stop()
        stack.kill_leftovers()


async def assert_stops_cleanly(stack: DevStackRun, signum: signal.Signals = signal.SIGINT) -> None:
    """Ctrl-C (or ``signum``) ends the script within STOP_WITHIN seconds with status 0 (``make run`` reports
    no error after a clean stop) and leaves no service process or port behind."""
    pids = stack.service_pids()
    assert set(pids) == set(ENV_PREFIXES), f"honcho did not report four pids:\n{stack.tail()}"
    stopped = await stack.stop(signum)
    assert stopped.returncode is not None, (
        f"still running {STOP_WITHIN}s after {signum.name}:\n{stack.tail()}"
    )
    assert stopped.returncode == 0, stack.tail()
    assert stopped.seconds < STOP_WITHIN
    assert [name for name, pid in pids.items() if is_alive(pid)] == []
    assert [name for name, port in stack.ports.items() if is_listening(port)] == []


# --- what the services answer -----------------------------------------------------------------------------


def free_ports() -> dict[str, int]:
    ports: set[int] = set()
    while len(ports) < len(ENV_PREFIXES):
        ports.add(free_port())
    return dict(zip(ENV_PREFIXES, sorted(ports), strict=True))


def pool_figures(stats: Mapping[str, Any]) -> dict[str, tuple[int, int, int, int]]:
    """Per currency: (total, free, reserved, disabled)."""
    return {c["currency"]: (c["total"], c["free"], c["reserved"], c["disabled"]) for c in stats["currencies"]}


DEMO_FIGURES = {currency: (count, count, 0, 0) for currency, count in DEMO_POOL.items()}


async def get(stack: DevStackRun, service: str, path: str, *, key: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with httpx.AsyncClient(base_url=stack.url(service), timeout=10.0) as client:
        return await client.get(path, headers=headers)


# --- the suite (the tests below share one first run, in file order; the second run needs it stopped) -------


@pytest.fixture(scope="module")
def var_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("devstack") / "var"


@pytest.fixture(scope="module")
def ports() -> dict[str, int]:
    return free_ports()


@pytest.fixture(scope="module")
async def first_run(var_dir: Path, ports: dict[str, int]) -> AsyncIterator[DevStackRun]:
    async with devstack_run(var_dir=var_dir, ports=ports, log_path=var_dir.parent / "first-run.log") as stack:
        yield stack


async def test_first_run_writes_private_credentials_with_every_documented_key(first_run: DevStackRun) -> None:
    assert stat.S_IMODE(first_run.credentials_path.stat().st_mode) == 0o600
    credentials = first_run.credentials()
    service_keys: dict[str, str] = credentials["service_keys"]
    for name in ADMIN_KEYS:
        assert credentials[name].startswith("adm_"), name
    assert len(credentials["telegram_webhook_secret"]) >= 32
    calling_pairs = {name for accepted in ACCEPTED.values() for name in accepted if "->" in name}
    assert set(service_keys) == calling_pairs
    for pair, key in service_keys.items():
        assert key.startswith(KEY_PREFIXES[pair.split("->")[0]]), pair
    every_secret = [*service_keys.values(), *(credentials[name] for name in ADMIN_KEYS)]
    assert len(set(every_secret)) == len(every_secret)


async def test_wallet_pool_serves_the_seeded_demo_pool(first_run: DevStackRun) -> None:
    key = first_run.credentials()["wallet_pool_admin_key"]
    response = await get(first_run, "wallet-pool", "/v1/stats", key=key)
    assert response.status_code == 200, response.text
    assert pool_figures(response.json()) == DEMO_FIGURES


async def test_order_api_reads_the_pool_through_wallet_pool_with_its_key(first_run: DevStackRun) -> None:
    admin = first_run.credentials()["admin_token"]
    response = await get(first_run, "order-api", "/v1/stats/pool", key=admin)
    assert response.status_code == 200, response.text
    assert pool_figures(response.json()) == DEMO_FIGURES
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Correlation-ID"])

    async def peer_check() -> dict[str, Any]:
        body: dict[str, Any] = (await get(first_run, "order-api", "/health/ready")).json()
        check: dict[str, Any] = body["checks"]["peer:wallet-pool"]
        return check

    check = await eventually(peer_check, until=lambda c: c["status"] == "ok", within=10.0)
    assert check["critical"] is False


async def test_make_run_serves_the_docs_and_metrics_without_a_server_banner(first_run: DevStackRun) -> None:
    """Development keeps the documentation and ``/metrics`` open; uvicorn names itself nowhere."""
    for service in ("order-api", "wallet-pool", "notifier", "telegram-gateway"):
        for path in ("/docs", "/openapi.json", "/metrics"):
            response = await get(first_run, service, path)
            assert response.status_code == 200, f"{service} {path}"
            assert "server" not in response.headers
            assert response.headers["x-content-type-options"] == "nosniff"


def modes_under(root: Path) -> dict[str, int]:
    """``root`` and everything below it (relative names; ``.`` is root) with their permission bits."""
    return {
        str(path.relative_to(root)): stat.S_IMODE(path.stat().st_mode) for path in [root, *root.rglob("*")]
    }


async def test_everything_written_under_var_is_readable_by_its_owner_only(first_run: DevStackRun) -> None:
    order = {
        "email": "private-files@example.com",
        "from_currency": "BTC",
        "to_currency": "USDT",
        "to_network": "TRC20",
        "amount": "0.05",
        "payout_address": "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t",
    }
    async with httpx.AsyncClient(base_url=first_run.url("order-api"), timeout=10.0) as client:
        response = await client.post("/v1/orders", json=order)
    assert response.status_code == 201, response.text
    mail = first_run.var_dir / "mail"

    async def mail_drop() -> list[Path]:
        return list(mail.glob("*.eml")) if mail.is_dir() else []

    await eventually(mail_drop, within=20.0, message="the order's email in the mail drop")

    modes = modes_under(first_run.var_dir)
    written = {
        "dev-credentials.json",
        "order-api-secrets.json",
        *(f"{service}.db{suffix}" for service in ENV_PREFIXES for suffix in ("", "-wal", "-shm")),
    }
    assert written <= set(modes), sorted(modes)
    assert any(name.startswith("mail/") and name.endswith(".eml") for name in modes)
    directories = {name for name in modes if (first_run.var_dir / name).is_dir()}
    assert directories == {".", "mail"}
    assert {
        name: oct(mode) for name, mode in modes.items() if mode != (0o700 if name in directories else 0o600)
    } == {}

    await cancel_back_to_the_demo_pool(first_run, response.json())


async def cancel_back_to_the_demo_pool(stack: DevStackRun, order: Mapping[str, Any]) -> None:
    """Cancel ``order`` and wait until its address is free again, so later tests find the pool as seeded."""
    async with httpx.AsyncClient(base_url=stack.url("order-api"), timeout=10.0) as client:
        cancel = await client.post(
            f"/v1/orders/{order['id']}/cancel", headers={"Authorization": f"Bearer {order['session_token']}"}
        )
    assert cancel.status_code == 200, cancel.text
    admin = stack.credentials()["admin_token"]

    async def pool() -> dict[str, tuple[int, int, int, int]]:
        return pool_figures((await get(stack, "order-api", "/v1/stats/pool", key=admin)).json())

    await eventually(pool, until=lambda figures: figures == DEMO_FIGURES, within=20.0)


def run_script(*arguments: str, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *arguments],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


def mail_list(var_dir: Path, *options: str) -> str:
    command = [sys.executable, "-m", "notifier", "mail-list", "--dir", str(var_dir / "mail"), *options]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False).stdout


async def test_the_commands_it_prints_work_as_pasted_with_the_real_ports(first_run: DevStackRun) -> None:
    """Ports overridden: the banner's commands (also ``devstack.py urls``) reach this stack as they stand."""
    urls = run_script("urls", "--var-dir", str(first_run.var_dir), env=hermetic_environ(first_run.ports))
    assert urls.returncode == 0, urls.stderr
    commands = urls.stdout
    assert f"{first_run.url('order-api')}/v1/orders" in commands
    assert f"export ORDER_API_PORT={first_run.ports['order-api']} " in commands

    async def banner() -> str:
        return first_run.log_text() if "Ready to paste" in first_run.log_text() else ""

    log = await eventually(banner, within=20.0, message="the banner")
    assert [line for line in commands.splitlines() if f"  {line}\n" not in log] == []
    for name in ENV_PREFIXES:
        assert f"{first_run.url(name)}/docs" in log

    pasted = await asyncio.to_thread(
        subprocess.run,
        ["bash", "-euo", "pipefail", "-c", commands],
        env=hermetic_environ(first_run.ports),
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert pasted.returncode == 0, pasted.stderr
    decoder = json.JSONDecoder()
    pool, end = decoder.raw_decode(pasted.stdout)
    order, _ = decoder.raw_decode(pasted.stdout[end:].lstrip())
    assert pool_figures(pool) == DEMO_FIGURES
    assert order["status"] in ("awaiting_deposit", "awaiting_address"), order  # the latter: wallet-pool slow

    # The order's email, decoded: its id is found although the .eml file is quoted-printable.
    async def order_email() -> str:
        return await asyncio.to_thread(mail_list, first_run.var_dir, "--grep", order["id"], "--full")

    listed = await eventually(order_email, within=60.0, message="the order's email in mail-list")
    assert "To:      alice@example.com" in listed
    assert f"Thank you for your order {order['id']}" in listed
    if order["deposit_address"] is not None:
        assert order["deposit_address"] in listed
    await cancel_back_to_the_demo_pool(first_run, order)


async def test_ctrl_c_stops_all_four_services_and_the_script(first_run: DevStackRun) -> None:
    await assert_stops_cleanly(first_run)


async def test_second_run_reuses_the_credentials_and_the_data(
    first_run: DevStackRun, var_dir: Path, ports: dict[str, int]
) -> None:
    await first_run.stop()  # done already when the tests run in file order
    credentials_before = first_run.credentials_path.read_bytes()
    async with devstack_run(
        var_dir=var_dir, ports=ports, log_path=var_dir.parent / "second-run.log"
    ) as second:
        assert second.credentials_path.read_bytes() == credentials_before
        assert "no demo wallets added" in second.log_text()
        admin = second.credentials()["admin_token"]
        response = await get(second, "order-api", "/v1/stats/pool", key=admin)
        assert response.status_code == 200, response.text
        assert pool_figures(response.json()) == DEMO_FIGURES
        await assert_stops_cleanly(second, signal.SIGTERM)


# --- the wiring, without starting anything ----------------------------------------------------------------


def devstack_env(var_dir: Path, env: Mapping[str, str], *options: str) -> dict[str, dict[str, str]]:
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "env", "--format", "json", "--var-dir", str(var_dir), *options],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    envs: dict[str, dict[str, str]] = json.loads(completed.stdout)
    return envs


def test_env_gives_every_receiver_the_hashes_and_scopes_and_every_caller_its_key_and_url(
    tmp_path: Path,
) -> None:
    ports = {"order-api": 9101, "wallet-pool": 9102, "notifier": 9103, "telegram-gateway": 9104}
    envs = devstack_env(tmp_path, hermetic_environ(ports))
    credentials = json.loads((tmp_path / "dev-credentials.json").read_text())
    secrets = {**credentials, **credentials.pop("service_keys")}
    for receiver, accepted in ACCEPTED.items():
        entries = json.loads(envs[receiver][f"{ENV_PREFIXES[receiver]}API_KEYS"])
        assert {e["hash"]: e["scopes"] for e in entries} == {
            hash_key(secrets[name]): scopes for name, scopes in accepted.items()
        }, receiver
        for name in accepted:
            if "->" not in name:
                continue
            caller = name.split("->")[0]
            peer = f"{ENV_PREFIXES[caller]}{ENV_PREFIXES[receiver].rstrip('_')}"
            assert envs[caller][f"{peer}__API_KEY"] == secrets[name]
            assert envs[caller][f"{peer}__URL"] == f"http://127.0.0.1:{ports[receiver]}"
    for service, prefix in ENV_PREFIXES.items():
        assert envs[service][f"{prefix}VAR_DIR"] == str(tmp_path)
        assert envs[service][f"{prefix}LOG_JSON"] == "false"
    assert envs["telegram-gateway"]["TELEGRAM_GATEWAY_WEBHOOK_SECRET"] == secrets["telegram_webhook_secret"]
    # No bot token in the environment: the notifier does not queue Telegram cards the gateway would refuse.
    assert envs["notifier"]["NOTIFIER_TELEGRAM_ENABLED"] == "false"
    # Embedded services keep their own personal-data keys under var/; only compose gets them from here.
    assert "ORDER_API_DATA_KEYS" not in envs["order-api"]
    assert "NOTIFIER_DATA_KEYS" not in envs["notifier"]
    # order-api seals a customer's data in events with the ring the notifier opens them with.
    assert envs["order-api"]["ORDER_API_EVENT_KEYS"] == envs["notifier"]["NOTIFIER_EVENT_KEYS"]
    assert json.loads(envs["notifier"]["NOTIFIER_EVENT_KEYS"]) == {"e1": secrets["event_key"]}
    assert envs["order-api"]["ORDER_API_EVENT_KEY_CURRENT"] == envs["notifier"]["NOTIFIER_EVENT_KEY_CURRENT"]


def test_compose_env_names_peers_by_compose_service_and_is_private(tmp_path: Path) -> None:
    env = hermetic_environ({}) | {"TELEGRAM_GATEWAY_BOT_TOKEN": "123:abc"}
    envs = devstack_env(tmp_path, env, "--host-style", "compose")
    assert envs["order-api"]["ORDER_API_WALLET_POOL__URL"] == "http://wallet-pool:8002"
    assert envs["notifier"]["NOTIFIER_TELEGRAM_GATEWAY__URL"] == "http://telegram-gateway:8004"
    assert envs["telegram-gateway"]["TELEGRAM_GATEWAY_BOT_TOKEN"] == "123:abc"
    assert "NOTIFIER_TELEGRAM_ENABLED" not in envs["notifier"]  # with a bot, cards go out
    variables = [variable for env in envs.values() for variable in env]
    assert not [v for v in variables if v.endswith(("DATABASE_URL", "VAR_DIR", "LOG_JSON"))]

    output, passwords = tmp_path / "compose.env", tmp_path / ".env"
    command = [
        sys.executable,
        str(SCRIPT),
        "compose-env",
        "--var-dir",
        str(tmp_path),
        "--output",
        str(output),
    ]
    subprocess.run(
        [*command, "--passwords", str(passwords)], env=env, cwd=ROOT, capture_output=True, check=True
    )
    assert stat.S_IMODE(output.stat().st_mode) == 0o600
    # the passwords compose requires, minted once: a second run keeps them (PostgreSQL's volume has them)
    assert stat.S_IMODE(passwords.stat().st_mode) == 0o600
    minted = dotenv_values(passwords)
    required = set(re.findall(r"\$\{(\w+):\?", (ROOT / "docker-compose.yml").read_text()))
    assert set(minted) == required, "every password docker-compose.yml requires, and nothing else"
    assert len(set(minted.values())) == len(minted)
    assert all(value and len(value) >= 24 for value in minted.values())
    subprocess.run(
        [*command, "--passwords", str(passwords)], env=env, cwd=ROOT, capture_output=True, check=True
    )
    assert dotenv_values(passwords) == minted
    written = dotenv_values(output)
    assert written["ORDER_API_WALLET_POOL__URL"] == "http://wallet-pool:8002"
    # order-api's customer-data keys (production needs them) stay the same from one compose-env to the next.
    for service, prefix in (("order-api", "ORDER_API_"), ("notifier", "NOTIFIER_")):
        for name in ("DATA_KEYS", "DATA_KEY_CURRENT", "BLIND_INDEX_KEY", "EVENT_KEYS", "EVENT_KEY_CURRENT"):
            assert written[f"{prefix}{name}"] == envs[service][f"{prefix}{name}"]


def test_migrate_has_the_webhook_secret_make_run_generates(tmp_path: Path) -> None:
    """A public webhook URL and a bot token, no secret: every step, migrations included, gets the generated one."""
    env = hermetic_environ({}) | {
        "TELEGRAM_GATEWAY_BOT_TOKEN": "123456:ABC-test",
        "TELEGRAM_GATEWAY_WEBHOOK_URL": "https://example.test/hook",
    }
    migrated = run_script("migrate", "--var-dir", str(tmp_path), env=env)
    assert migrated.returncode == 0, migrated.stderr
    assert (tmp_path / "telegram-gateway.db").exists()
    assert "Traceback" not in migrated.stderr


def test_an_invalid_setting_stops_make_run_with_one_line_naming_it_before_anything_starts(
    tmp_path: Path,
) -> None:
    env = hermetic_environ(free_ports()) | {
        "WALLET_POOL_POOL_WATCH_SECONDS": "often",
        "TELEGRAM_GATEWAY_BOT_TOKEN": "not-a-token",
    }
    refused = run_script("run", "--var-dir", str(tmp_path), env=env)
    assert refused.returncode == 1
    assert "Traceback" not in refused.stderr
    problems = [line for line in refused.stderr.splitlines() if "invalid settings" in line]
    assert len(problems) == 2, refused.stderr
    assert problems[0].startswith("devstack: wallet-pool: invalid settings: WALLET_POOL_POOL_WATCH_SECONDS: ")
    assert problems[1].startswith(
        "devstack: telegram-gateway: invalid settings: TELEGRAM_GATEWAY_BOT_TOKEN: must be the token"
    )
    assert list(tmp_path.glob("*.db")) == []  # nothing migrated


@functools.cache
def devstack_module() -> ModuleType:
    """``scripts/devstack.py`` imported (registered first, as its dataclasses need)."""
    spec = importlib.util.spec_from_file_location("devstack", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("asked_to_stop", "returncodes", "status"),
    [
        (True, [0, -signal.SIGTERM, 0, -signal.SIGTERM], 0),  # Ctrl-C, every service shut down gracefully
        (True, [0, -signal.SIGKILL, 0, 0], 128 + signal.SIGKILL),  # one had to be killed
        (True, [0, 1, 0, 0], 1),  # one failed on its way down
        (False, [3, -signal.SIGTERM, -signal.SIGTERM, -signal.SIGTERM], 3),  # one crashed, the rest stopped
        (False, [0, -signal.SIGTERM, -signal.SIGTERM, -signal.SIGTERM], 1),  # one stopped, nobody asked
    ],
)
def test_run_exits_0_only_after_a_stop_it_was_asked_for(
    asked_to_stop: bool, returncodes: list[int], status: int
) -> None:
    assert devstack_module().exit_status(asked_to_stop=asked_to_stop, returncodes=returncodes) == status


def test_readme_examples_read_the_ports_make_run_reads() -> None:
    """No example in the README's shell blocks hard-codes a service port: each reads ``<SERVICE>_PORT``."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```bash\n(.*?)```", readme, flags=re.DOTALL)
    hard_coded = [line for block in blocks for line in block.splitlines() if re.search(r":800[1-4]\b", line)]
    assert hard_coded == []
    assert "${ORDER_API_PORT:-8001}" in readme

"""The Exchange Desk on this machine: the four services as local processes, embedded storage, demo data.

``make run`` calls ``devstack.py run``; the other subcommands are its steps, usable on their own::

    devstack.py run          credentials → migrate → seed demo wallets → the four services until Ctrl-C
    devstack.py urls         print the ready-to-paste commands ``run`` prints once it is up (ports filled in)
    devstack.py credentials  create var/dev-credentials.json (mode 0600) the first time, reuse it afterwards
    devstack.py env          print every service's environment [--format dotenv|json] [--host-style compose]
    devstack.py compose-env  write deploy/compose.env and deploy/audit-checkpoint.env (mode 0600) for compose,
                             and mint the passwords compose requires into ./.env (keeping those there)
    devstack.py migrate      every service's Alembic migrations to head (SQLite under var/, or *_DATABASE_URL)

Every subcommand takes ``--var-dir`` (default ``var/`` at the repository root): the credentials file, the
embedded SQLite databases and ``mail/`` live there, so a test can run a stack of its own. Every step runs
with the one environment :func:`dev_environment` builds (generated keys and secrets, ports, storage), and
each service's settings are checked before anything starts: a bad one is one line naming it.

``run`` exits 0 when it was asked to stop (Ctrl-C, SIGTERM) and every service stopped cleanly, and non-zero
when a service failed or stopped on its own.

Who may call whom is the one table :data:`GRANTS`: each row is a key the receiver accepts (configured there
as a hash with scopes in ``<RECEIVER>_API_KEYS``). A row held by a service is also a call: the holder gets
``<HOLDER>_<RECEIVER>__URL`` and ``<HOLDER>_<RECEIVER>__API_KEY``. A row held by a person (an admin) is a key
kept in the credentials file under its own name. Ports default to 8001-8004 and follow ``ORDER_API_PORT``,
``WALLET_POOL_PORT``, ``NOTIFIER_PORT`` and ``TELEGRAM_GATEWAY_PORT``; peer URLs follow the ports.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import secrets
import shlex
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Final, Literal

import httpx
from honcho.manager import Manager
from honcho.printer import Message

from servicekit.apikeys import ApiKeyEntry, hash_key, mint_key
from servicekit.private_files import private_directory, write_private_file
from servicekit.sealing import new_key as new_data_key
from servicekit.server import uvicorn_argv
from servicekit.settings import ServiceSettings, StartupRefusedError, load_settings

ROOT: Final = Path(__file__).resolve().parents[1]
CREDENTIALS_FILE: Final = "dev-credentials.json"
COMPOSE_ENV_FILE: Final = ROOT / "deploy" / "compose.env"
DEMO_WALLETS_PER_NETWORK: Final = 5
READY_WITHIN_SECONDS: Final = 90.0

HostStyle = Literal["local", "compose"]


@dataclass(frozen=True, slots=True)
class Service:
    """One of the four services."""

    name: str  # its directory under services/, its compose service name, the caller name peers record
    package: str  # its import package; upper-cased, its environment prefix and its name as a peer
    key_prefix: str  # the prefix of the API keys it holds (mint_key), so a leaked key names its holder
    default_port: int

    @property
    def env_prefix(self) -> str:
        return f"{self.package.upper()}_"

    @property
    def port_variable(self) -> str:
        return f"{self.env_prefix}PORT"


SERVICES: Final = {
    service.name: service
    for service in (
        Service("order-api", "order_api", "oa", 8001),
        Service("wallet-pool", "wallet_pool", "wp", 8002),
        Service("notifier", "notifier", "nt", 8003),
        Service("telegram-gateway", "telegram_gateway", "tg", 8004),
    )
}

ADMIN: Final = "admin"
ADMIN_KEY_PREFIX: Final = "adm"


@dataclass(frozen=True, slots=True)
class Grant:
    """``receiver`` accepts a key held by ``holder`` and lets it do ``scopes``.

    ``holder`` is a service (which then calls ``receiver`` with the key) or :data:`ADMIN`, a person whose key
    is kept in the credentials file as ``credential``.
    """

    receiver: str
    holder: str
    scopes: tuple[str, ...]
    credential: str | None = None

    @property
    def credential_name(self) -> str:
        """Its name in the credentials file: ``credential``, or ``<holder>-><receiver>`` for a service."""
        return self.credential or f"{self.holder}->{self.receiver}"

    @property
    def key_prefix(self) -> str:
        return ADMIN_KEY_PREFIX if self.holder == ADMIN else SERVICES[self.holder].key_prefix


# fmt: off
GRANTS: Final = (
    #     receiver            holder              scopes
    Grant("order-api",        ADMIN,              ("admin",), credential="admin_token"),
    Grant("order-api",        "wallet-pool",      ("events:publish",)),
    Grant("order-api",        "telegram-gateway", ("orders:act-as-operator",)),
    Grant("wallet-pool",      "order-api",        ("allocations:write", "allocations:read", "pool:read")),
    Grant("wallet-pool",      ADMIN,              ("wallets:write", "wallets:read", "pool:read", "allocations:read",
                                                   "outbox:admin"),
          credential="wallet_pool_admin_key"),
    Grant("wallet-pool",      "telegram-gateway", ("pool:read",)),
    Grant("notifier",         "order-api",        ("events:publish",)),
    Grant("notifier",         "wallet-pool",      ("events:publish",)),
    Grant("notifier",         ADMIN,              ("notifications:read", "notifications:write", "alerts:write",
                                                   "webhooks:admin"),
          credential="notifier_admin_key"),
    Grant("telegram-gateway", "notifier",         ("messages:send",)),
)
# fmt: on

WEBHOOK_CREDENTIAL: Final = "telegram_webhook_secret"
"""The secret token Telegram sends with every webhook call (``setWebhook(secret_token=...)``)."""

TELEGRAM_PASSTHROUGH: Final = (
    "BOT_TOKEN",
    "BOT_API_URL",
    "WEBHOOK_SECRET",
    "OPERATORS_CHAT_ID",
    "SUPPORT_CHAT_ID",
    "WEBHOOK_URL",
    "MODE",
)
"""telegram-gateway settings taken from your environment when set (they win over generated values)."""

DATA_KEY_CREDENTIAL: Final = "order_api_data_key"
BLIND_INDEX_CREDENTIAL: Final = "order_api_blind_index_key"
NOTIFIER_DATA_KEY_CREDENTIAL: Final = "notifier_data_key"
NOTIFIER_BLIND_INDEX_CREDENTIAL: Final = "notifier_blind_index_key"
DATA_KEY_ID: Final = "k1"
"""order-api's and the notifier's personal-data keys under compose (production refuses to start without them).
They stay in the credentials file: new ones would leave the data sealed with the old ones unreadable.
``make run`` does not use them: embedded services keep their own in ``var/<service>-secrets.json``."""
DATA_KEYS: Final = {
    "order-api": (DATA_KEY_CREDENTIAL, BLIND_INDEX_CREDENTIAL),
    "notifier": (NOTIFIER_DATA_KEY_CREDENTIAL, NOTIFIER_BLIND_INDEX_CREDENTIAL),
}
EVENT_KEY_CREDENTIAL: Final = "event_key"
EVENT_KEY_ID: Final = "e1"
"""The event key ring order-api seals a customer's data in events with and the notifier opens it with: one
credential, given to both (``make run`` and compose alike)."""
EVENT_KEY_HOLDERS: Final = ("order-api", "notifier")
AUDIT_CHECKPOINT_CREDENTIAL: Final = "order_api_audit_checkpoint_key"
"""Signs order-api's audit checkpoints under compose: written to its own file (``deploy/audit-checkpoint.env``)
for the checkpoint job only, never into ``compose.env``, which the services read."""
AUDIT_CHECKPOINT_ENV_FILE: Final = "audit-checkpoint.env"

COMPOSE_PASSWORDS_FILE: Final = ROOT / ".env"
"""Where compose reads the values it interpolates (``${VAR:?...}`` in docker-compose.yml): the passwords."""
COMPOSE_PASSWORDS: Final = (
    "POSTGRES_PASSWORD",
    "ORDER_API_DB_PASSWORD",
    "ORDER_API_RUNTIME_DB_PASSWORD",
    "WALLET_POOL_DB_PASSWORD",
    "NOTIFIER_DB_PASSWORD",
    "TELEGRAM_GATEWAY_DB_PASSWORD",
    "GRAFANA_ADMIN_PASSWORD",
)
"""The passwords docker-compose.yml requires; URL-safe, as they are pasted into database URLs."""


def say(text: str) -> None:
    print(f"devstack: {text}", file=sys.stderr, flush=True)


def shown(path: Path) -> str:
    """``path`` relative to the working directory when it is inside it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


# --- credentials ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Credentials:
    """What ``var/dev-credentials.json`` holds: the admins' keys and webhook secret at the top level, the keys
    the services call each other with under ``service_keys`` as ``"<caller>-><receiver>"``."""

    path: Path
    values: Mapping[str, str]

    def __getitem__(self, name: str) -> str:
        return self.values[name]

    def to_json(self) -> str:
        top = {name: value for name, value in self.values.items() if "->" not in name}
        service_keys = {name: value for name, value in self.values.items() if "->" in name}
        return json.dumps({**top, "service_keys": service_keys}, indent=2) + "\n"

    @classmethod
    def from_json(cls, path: Path, text: str) -> Credentials:
        document = json.loads(text)
        values = {name: value for name, value in document.items() if isinstance(value, str)}
        values.update(document.get("service_keys", {}))
        return cls(path=path, values=values)


def credential_names() -> list[str]:
    return [grant.credential_name for grant in GRANTS] + [
        WEBHOOK_CREDENTIAL,
        DATA_KEY_CREDENTIAL,
        BLIND_INDEX_CREDENTIAL,
        NOTIFIER_DATA_KEY_CREDENTIAL,
        NOTIFIER_BLIND_INDEX_CREDENTIAL,
        EVENT_KEY_CREDENTIAL,
        AUDIT_CHECKPOINT_CREDENTIAL,
    ]


def mint(name: str) -> str:
    if name == WEBHOOK_CREDENTIAL:
        return secrets.token_urlsafe(32)  # Telegram allows A-Z, a-z, 0-9, _ and - (1-256 characters)
    if name in (
        *(key for keys in DATA_KEYS.values() for key in keys),
        EVENT_KEY_CREDENTIAL,
        AUDIT_CHECKPOINT_CREDENTIAL,
    ):
        return new_data_key()
    grant = next(grant for grant in GRANTS if grant.credential_name == name)
    return mint_key(grant.key_prefix)


def ensure_credentials(var_dir: Path) -> Credentials:
    """The credentials in ``var_dir``: created on first use, reused afterwards (completed if the table grew)."""
    path = var_dir / CREDENTIALS_FILE
    if not path.exists():
        fresh = Credentials(path=path, values={name: mint(name) for name in credential_names()})
        if write_private_file(path, fresh.to_json(), replace=False):
            say(f"created {shown(path)} (mode 0600) with new keys")
            return fresh
    try:
        credentials = Credentials.from_json(path, path.read_text(encoding="utf-8"))
    except (ValueError, TypeError, AttributeError) as exc:
        raise SystemExit(f"devstack: {shown(path)} is not valid ({exc}); delete it to mint new keys") from exc
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        path.chmod(0o600)
        say(f"{shown(path)} was readable by others; its mode is 0600 again")
    missing = [name for name in credential_names() if name not in credentials.values]
    if missing:
        credentials = Credentials(path=path, values={**credentials.values, **{n: mint(n) for n in missing}})
        write_private_file(path, credentials.to_json())
        say(f"added {', '.join(missing)} to {shown(path)}")
    return credentials


# --- the environment of each service ---------------------------------------------------------------------


def configured_ports() -> dict[str, int]:
    """Each service's port: its default, or ``<PREFIX>_PORT`` from the environment."""
    ports: dict[str, int] = {}
    for service in SERVICES.values():
        value = os.environ.get(service.port_variable, str(service.default_port))
        if not value.isdigit() or not 0 < int(value) < 65536:
            raise SystemExit(f"devstack: {service.port_variable}={value!r} is not a port number")
        ports[service.name] = int(value)
    if len(set(ports.values())) != len(ports):
        raise SystemExit(f"devstack: two services share a port: {ports}")
    return ports


def listen_host(service: Service) -> str:
    return os.environ.get(f"{service.env_prefix}HOST", "127.0.0.1")


def local_url(service: Service, ports: Mapping[str, int]) -> str:
    host = listen_host(service)
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 (only recognised here, to reach such a service on loopback)
        host = "127.0.0.1"
    return f"http://{host}:{ports[service.name]}"


def peer_url(service: Service, *, ports: Mapping[str, int], style: HostStyle) -> str:
    if style == "compose":
        return f"http://{service.name}:{service.default_port}"
    return local_url(service, ports)


def accepted_keys(receiver: Service, credentials: Credentials) -> str:
    """``<RECEIVER>_API_KEYS``: the hash and scopes of every key ``receiver`` accepts, never a key itself."""
    entries = [
        ApiKeyEntry(
            name=grant.holder, hash=hash_key(credentials[grant.credential_name]), scopes=list(grant.scopes)
        )
        for grant in GRANTS
        if grant.receiver == receiver.name
    ]
    return json.dumps([entry.model_dump() for entry in entries], separators=(",", ":"))


def service_env(
    service: Service, credentials: Credentials, *, ports: Mapping[str, int], var_dir: Path, style: HostStyle
) -> dict[str, str]:
    """The environment ``service`` needs on top of its defaults."""
    prefix = service.env_prefix
    env: dict[str, str] = {}
    if style == "local":
        env |= storage_env(service, var_dir)
        env[service.port_variable] = str(ports[service.name])
        env[f"{prefix}LOG_JSON"] = "false"  # text logs for a human; containers keep JSON
    env[f"{prefix}API_KEYS"] = accepted_keys(service, credentials)
    for grant in GRANTS:
        if grant.holder == service.name:
            peer = SERVICES[grant.receiver]
            env[f"{prefix}{peer.package.upper()}__URL"] = peer_url(peer, ports=ports, style=style)
            env[f"{prefix}{peer.package.upper()}__API_KEY"] = credentials[grant.credential_name]
    if style == "compose" and service.name in DATA_KEYS:
        data_key, blind_index_key = DATA_KEYS[service.name]
        env[f"{prefix}DATA_KEYS"] = json.dumps({DATA_KEY_ID: credentials[data_key]}, separators=(",", ":"))
        env[f"{prefix}DATA_KEY_CURRENT"] = DATA_KEY_ID
        env[f"{prefix}BLIND_INDEX_KEY"] = credentials[blind_index_key]
    if service.name in EVENT_KEY_HOLDERS:
        env[f"{prefix}EVENT_KEYS"] = json.dumps(
            {EVENT_KEY_ID: credentials[EVENT_KEY_CREDENTIAL]}, separators=(",", ":")
        )
        env[f"{prefix}EVENT_KEY_CURRENT"] = EVENT_KEY_ID
    if service.name == "notifier" and not os.environ.get(
        f"{SERVICES['telegram-gateway'].env_prefix}BOT_TOKEN"
    ):
        # No bot: the gateway would refuse every card (409 telegram_disabled), so don't queue them at all.
        env[f"{prefix}TELEGRAM_ENABLED"] = "false"
    if service.name == "telegram-gateway":
        env[f"{prefix}WEBHOOK_SECRET"] = credentials[WEBHOOK_CREDENTIAL]
        for setting in TELEGRAM_PASSTHROUGH:
            if value := os.environ.get(f"{prefix}{setting}"):
                env[f"{prefix}{setting}"] = value
    return env


def storage_env(service: Service, var_dir: Path) -> dict[str, str]:
    """Where the embedded SQLite file and ``mail/`` go (a ``<PREFIX>_DATABASE_URL`` you export still wins)."""
    return {f"{service.env_prefix}VAR_DIR": str(var_dir)}


def all_envs(
    credentials: Credentials, *, ports: Mapping[str, int], var_dir: Path, style: HostStyle
) -> dict[str, dict[str, str]]:
    return {
        name: service_env(service, credentials, ports=ports, var_dir=var_dir, style=style)
        for name, service in SERVICES.items()
    }


@dataclass(frozen=True, slots=True)
class DevEnvironment:
    """Everything a step of the dev stack runs with: the credentials, the ports and each service's
    environment. Built in one place (:func:`dev_environment`), so migrations, the demo seed and the services
    see the same generated values (a webhook secret the migrations need as much as the gateway does)."""

    var_dir: Path
    credentials: Credentials
    ports: Mapping[str, int]
    envs: Mapping[str, Mapping[str, str]]


def dev_environment(var_dir: Path, *, style: HostStyle = "local") -> DevEnvironment:
    credentials = ensure_credentials(var_dir)
    ports = configured_ports()
    envs = all_envs(credentials, ports=ports, var_dir=var_dir, style=style)
    return DevEnvironment(var_dir=var_dir, credentials=credentials, ports=ports, envs=envs)


_PLAIN_VALUE: Final = re.compile(r"[A-Za-z0-9_@%+=:,./-]*")


def dotenv_value(value: str) -> str:
    """A value as a dotenv line reads it back (python-dotenv, docker compose and a POSIX shell alike)."""
    if _PLAIN_VALUE.fullmatch(value):
        return value
    if "'" in value:
        raise SystemExit(
            f"devstack: cannot write a value containing a single quote to a dotenv file: {value!r}"
        )
    return f"'{value}'"


def render_dotenv(envs: Mapping[str, Mapping[str, str]]) -> str:
    blocks = []
    for name, env in envs.items():
        lines = [f"# {name}", *(f"{variable}={dotenv_value(value)}" for variable, value in env.items())]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


# --- migrations and demo data -----------------------------------------------------------------------------


@contextmanager
def environment(extra: Mapping[str, str]) -> Iterator[None]:
    """``os.environ`` with ``extra`` set, restored afterwards (a service's migrations read its settings)."""
    saved = {name: os.environ.get(name) for name in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def settings_problems(envs: Mapping[str, Mapping[str, str]]) -> list[str]:
    """Each service's settings as it will read them (this environment plus its own): one line per service
    that would refuse to start, naming the variables and why."""
    problems = []
    for name, service in SERVICES.items():
        settings_class: type[ServiceSettings] = importlib.import_module(
            f"{service.package}.settings"
        ).Settings
        with environment(envs[name]):
            try:
                load_settings(settings_class)
            except StartupRefusedError as refused:
                problems.append(f"{name}: {refused}")
    return problems


def check_settings(envs: Mapping[str, Mapping[str, str]]) -> None:
    """Stop before migrating or starting anything when a service's settings are invalid."""
    if problems := settings_problems(envs):
        raise SystemExit("\n".join(f"devstack: {problem}" for problem in problems))


def migrate(dev: DevEnvironment) -> None:
    """Every service's migrations to head, in its own database (or schema), with its own settings."""
    # Imported here: Alembic takes seconds to import, and only this step needs it.
    from servicekit.migrations import upgrade

    check_settings(dev.envs)
    for name, service in SERVICES.items():
        url_variable = f"{service.env_prefix}DATABASE_URL"
        where = url_variable if os.environ.get(url_variable) else shown(dev.var_dir / f"{name}.db")
        say(f"migrating {name} ({where})")
        with environment(dev.envs[name]):
            upgrade(ROOT / "services" / name)


def seed_demo_wallets(env: Mapping[str, str]) -> None:
    """``python -m wallet_pool seed-demo``: demo wallets for an empty pool, nothing otherwise."""
    command = [
        sys.executable,
        "-m",
        "wallet_pool",
        "seed-demo",
        "--per-currency",
        str(DEMO_WALLETS_PER_NETWORK),
    ]
    if subprocess.run(command, env={**os.environ, **env}, cwd=ROOT, check=False).returncode != 0:
        raise SystemExit("devstack: seeding the demo wallets failed (see above)")


# --- running the four services ----------------------------------------------------------------------------


def require_free_ports(ports: Mapping[str, int]) -> None:
    """Fail early, naming the variable to change, rather than with four tracebacks."""
    for name, port in ports.items():
        service = SERVICES[name]
        host = listen_host(service)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            try:
                probe.bind((host, port))
            except OSError as exc:
                raise SystemExit(
                    f"devstack: port {port} for {name} is taken ({exc.strerror}); stop what holds it or set "
                    f"{service.port_variable}"
                ) from exc


def uvicorn_command(service: Service, port: int) -> str:
    """The shell line honcho runs; ``exec`` makes uvicorn the process honcho signals."""
    return shlex.join(
        [
            "exec",
            # one write per response, X-Forwarded-For left to the service, no banner (UVICORN_OPTIONS)
            *uvicorn_argv(service.package, host=listen_host(service), port=port),
            "--timeout-graceful-shutdown",
            "5",
            "--no-access-log",  # servicekit logs one line per request, with its correlation id
        ]
    )


DEMO_ORDER: Final = {
    "email": "alice@example.com",
    "from_currency": "BTC",
    "to_currency": "USDT",
    "to_network": "TRC20",
    "amount": "0.05",
    "payout_address": "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t",
}
"""The customer's order of the README's example (a demo pool has addresses for it)."""


def ready_to_paste(dev: DevEnvironment) -> str:
    """The README's first commands with this stack's real ports and paths, to paste into a shell at the
    repository root: the admin key, the pool through order-api → wallet-pool, a customer's order, its emails."""
    order_api = local_url(SERVICES["order-api"], dev.ports)
    credentials = shlex.quote(shown(dev.credentials.path))
    mail_list = [shown(Path(sys.executable)), "-m", "notifier", "mail-list"]
    if dev.var_dir != ROOT / "var":
        mail_list += ["--dir", shown(dev.var_dir / "mail")]
    overridden = [
        f"{service.port_variable}={dev.ports[name]}"
        for name, service in SERVICES.items()
        if dev.ports[name] != service.default_port
    ]
    lines = [
        "# the order-api admin key, then the pool as order-api reads it from wallet-pool:",
        "ADMIN=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[\"admin_token\"])' "
        f"{credentials})",
        f'curl -s -H "Authorization: Bearer $ADMIN" {order_api}/v1/stats/pool | python3 -m json.tool',
        "# a customer's order (the answer carries its id and session token):",
        f"curl -s -X POST {order_api}/v1/orders -H 'Content-Type: application/json' "
        f"-d {shlex.quote(json.dumps(DEMO_ORDER))} | python3 -m json.tool",
        "# the emails the desk sent, decoded (--grep <order id> finds one order's):",
        shlex.join(mail_list),
    ]
    if overridden:
        lines += ["# the README's examples read the ports from these:", f"export {' '.join(overridden)}"]
    return "\n".join(lines) + "\n"


def banner(dev: DevEnvironment) -> str:
    width = max(len(name) for name in SERVICES) + 2
    admin_keys = ", ".join(grant.credential_name for grant in GRANTS if grant.holder == ADMIN)
    mail = shown(dev.var_dir / "mail")
    lines = [
        "Exchange Desk is up. Ctrl-C stops all four services.",
        *(f"  {name:<{width}} {local_url(service, dev.ports)}/docs" for name, service in SERVICES.items()),
        f"  {'credentials':<{width}} {shown(dev.credentials.path)} ({admin_keys}, ...)",
        f"  {'data':<{width}} {shown(dev.var_dir)}/ (embedded databases; emails in {mail}/)",
        f"Ready to paste (again: {shown(Path(sys.executable))} {shown(Path(__file__))} urls):",
        *(f"  {line}" for line in ready_to_paste(dev).splitlines()),
    ]
    return "\n".join(lines) + "\n"


def answers_ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health/ready", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


STOPPED_AS_ASKED: Final = (0, -signal.SIGTERM)
"""How a service ends after our SIGTERM: 0, or killed by the SIGTERM uvicorn raises again after its graceful
shutdown (so its own parent sees the signal)."""


def exit_status(*, asked_to_stop: bool, returncodes: Iterable[int | None]) -> int:
    """``run``'s exit status: 0 when it was asked to stop (Ctrl-C, SIGTERM) and every service stopped as asked;
    else the status of a service that failed (a signal as 128 + its number, as a shell shows it), or 1 when
    a service stopped without being asked."""
    failed = [code for code in returncodes if code not in STOPPED_AS_ASKED]
    if failed:
        code = failed[0]
        return 1 if code is None else 128 - code if code < 0 else code
    return 0 if asked_to_stop else 1


class DevStack(Manager):  # type: ignore[misc]  # honcho ships no type hints
    """honcho's Manager (prefixed, coloured output; SIGINT or SIGTERM stops every process), plus a banner once
    every service answers ``/health/ready``, a stop that also reaches a process still being started, and an
    exit status that tells a clean stop (0) from a failure (:func:`exit_status`; honcho's is 130 after every
    Ctrl-C).

    The overrides rely on honcho 2.0's internals (pinned in uv.lock).
    """

    def __init__(self, *, ready_urls: Mapping[str, str], banner: str) -> None:
        super().__init__()
        self._ready_urls = dict(ready_urls)
        self._banner = banner
        self._signalled: set[str] = set()
        self._deferred_stop: bool | None = None  # a stop owed to processes not started yet; True: SIGKILL
        self.asked_to_stop = False  # SIGINT or SIGTERM arrived (rather than a service stopping on its own)

    def announce(self, text: str) -> None:
        """Print through honcho's own queue, so the text never interleaves with a service's log line."""
        self.events.put(Message(type="line", data=text, time=datetime.now(), name="devstack", colour=None))

    def _start(self) -> None:
        # honcho's loop has just installed its SIGINT and SIGTERM handlers: note the request, then run them.
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._on_stop_signal(signal.getsignal(signum)))
        super()._start()
        # Only now: honcho forks one runner per process in _start, and forking while a thread runs is unsafe.
        threading.Thread(target=self._announce_when_ready, name="devstack-ready", daemon=True).start()

    def _on_stop_signal(self, honcho_handler: object) -> Callable[[int, FrameType | None], None]:
        def handler(signum: int, frame: FrameType | None) -> None:
            self.asked_to_stop = True
            if callable(honcho_handler):
                honcho_handler(signum, frame)

        return handler

    @property
    def exit_status(self) -> int:
        return exit_status(
            asked_to_stop=self.asked_to_stop,
            returncodes=[process.get("returncode") for process in self._processes.values()],
        )

    def _announce_when_ready(self) -> None:
        deadline = time.monotonic() + READY_WITHIN_SECONDS
        pending = dict(self._ready_urls)
        while pending and not self._terminating and time.monotonic() < deadline:
            pending = {name: url for name, url in pending.items() if not answers_ready(url)}
            if pending:
                time.sleep(0.5)
        if self._terminating:
            return
        if pending:
            self.announce(
                f"not ready after {READY_WITHIN_SECONDS:.0f} s: {', '.join(pending)} (see the log)\n"
            )
        self.announce(self._banner)

    def _killall(self, force: bool = False) -> None:
        # honcho's own, except for a process whose start honcho has not heard of yet (Ctrl-C right at start):
        # honcho would fail on its unknown pid inside the signal handler. Its stop is deferred instead, and
        # sent by _all_started as soon as its pid is known. A process is sent SIGTERM once: a second one makes
        # uvicorn skip its graceful shutdown.
        for name, process in self._processes.items():
            if "returncode" in process or (name in self._signalled and not force):
                continue
            if "pid" not in process:
                self._deferred_stop = force or bool(self._deferred_stop)
                continue
            self._signalled.add(name)
            self._system_print(
                f"sending {'SIGKILL' if force else 'SIGTERM'} to {name} (pid {process['pid']})\n"
            )
            if force:
                self._procmgr.kill(process["pid"])
            else:
                self._procmgr.terminate(process["pid"])

    def _all_started(self) -> bool:
        # honcho's loop asks this after every event it handles, so it is where a deferred stop catches up.
        started = bool(super()._all_started())
        if started and self._deferred_stop is not None:
            force, self._deferred_stop = self._deferred_stop, None
            self._killall(force=force)
        return started


def run(var_dir: Path) -> int:
    dev = dev_environment(var_dir)
    require_free_ports(dev.ports)
    migrate(dev)
    seed_demo_wallets(dev.envs["wallet-pool"])
    stack = DevStack(
        ready_urls={name: local_url(service, dev.ports) for name, service in SERVICES.items()},
        banner=banner(dev),
    )
    for name, service in SERVICES.items():
        stack.add_process(
            name,
            uvicorn_command(service, dev.ports[name]),
            env={**os.environ, **dev.envs[name]},
            cwd=str(ROOT),
        )
    say(f"starting {', '.join(SERVICES)}; the URLs follow once all four are ready")
    stack.loop()
    return stack.exit_status


def write_compose_env(path: Path, dev: DevEnvironment) -> None:
    envs, credentials = dev.envs, dev.credentials
    source = shown(credentials.path)
    header = (
        f"# Written by `scripts/devstack.py compose-env` from {source}: the API keys the four services\n"
        "# accept and present to each other under docker compose, and order-api's customer-data keys.\n"
        "# Secret (mode 0600): never commit it. Regenerate it rather than edit it; keep the credentials file,\n"
        "# which also holds the admins' keys (admin_token, ...): new data keys make sealed data unreadable.\n\n"
    )
    write_private_file(path, header + render_dotenv(envs))
    say(f"wrote {shown(path)} (mode 0600) from {shown(credentials.path)}")
    audit = path.with_name(AUDIT_CHECKPOINT_ENV_FILE)
    audit_header = (
        f"# Written by `scripts/devstack.py compose-env` from {source}: the key that signs order-api's audit\n"
        "# checkpoints, for the order-api-audit-checkpoint job only (never the services). Secret: never commit.\n\n"
    )
    audit_env = {"ORDER_API_AUDIT_CHECKPOINT_KEY": credentials[AUDIT_CHECKPOINT_CREDENTIAL]}
    write_private_file(audit, audit_header + render_dotenv({"order-api-audit-checkpoint": audit_env}))
    say(f"wrote {shown(audit)} (mode 0600)")


def write_compose_passwords(path: Path) -> None:
    """Mint into ``path`` each of :data:`COMPOSE_PASSWORDS` it lacks, keeping every line already there: the
    database passwords are fixed when PostgreSQL's volume is first created, so they are never replaced."""
    text = path.read_text() if path.exists() else ""
    present = {line.split("=", 1)[0].strip() for line in text.splitlines() if "=" in line}
    missing = [name for name in COMPOSE_PASSWORDS if name not in present]
    if not missing and path.exists():
        say(f"{shown(path)} already holds the compose passwords")
        return
    if text and not text.endswith("\n"):
        text += "\n"
    if not text:
        text = "# Read by docker compose for ${...} in docker-compose.yml. Secret (mode 0600): never commit it.\n"
    text += "".join(f"{name}={secrets.token_urlsafe(24)}\n" for name in missing)
    write_private_file(path, text)
    say(f"wrote {shown(path)} (mode 0600): minted {', '.join(missing)}")


# --- command line -----------------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--var-dir",
        type=Path,
        default=ROOT / "var",
        help="credentials, embedded databases and mail (default: var/ at the repository root)",
    )
    root = argparse.ArgumentParser(prog="devstack.py", description=__doc__.split("\n\n")[0])
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("run", parents=[common], help="credentials, migrate, seed, then the four services")
    commands.add_parser("urls", parents=[common], help="print ready-to-paste commands with the real ports")
    commands.add_parser("credentials", parents=[common], help=f"create or reuse <var-dir>/{CREDENTIALS_FILE}")
    env = commands.add_parser("env", parents=[common], help="print the environment of the four services")
    env.add_argument("--format", choices=["dotenv", "json"], default="dotenv")
    env.add_argument(
        "--host-style",
        choices=["local", "compose"],
        default="local",
        help="compose: peers by compose service name, no local paths (default: local)",
    )
    compose = commands.add_parser(
        "compose-env",
        parents=[common],
        help="write deploy/compose.env and deploy/audit-checkpoint.env (0600)",
    )
    compose.add_argument("--output", type=Path, default=COMPOSE_ENV_FILE)
    compose.add_argument(
        "--passwords", type=Path, default=COMPOSE_PASSWORDS_FILE, help="compose's .env (default: ./.env)"
    )
    commands.add_parser("migrate", parents=[common], help="every service's migrations to head")
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    var_dir: Path = private_directory(args.var_dir.resolve())  # 0700: keys, databases and mail live there
    try:
        if args.command == "run":
            return run(var_dir)
        style: HostStyle = (
            "compose" if args.command == "compose-env" else getattr(args, "host_style", "local")
        )
        dev = dev_environment(var_dir, style=style)
        if args.command == "migrate":
            migrate(dev)
        elif args.command == "urls":
            print(ready_to_paste(dev), end="")
        elif args.command == "credentials":
            people = [name for name in dev.credentials.values if "->" not in name]
            calls = len(dev.credentials.values) - len(people)
            say(f"{shown(dev.credentials.path)} holds {', '.join(people)} and {calls} service keys")
        elif args.command == "env":
            envs = dev.envs
            print(json.dumps(envs, indent=2) + "\n" if args.format == "json" else render_dotenv(envs), end="")
        else:
            write_compose_env(args.output, dev)
            write_compose_passwords(args.passwords)
        return 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

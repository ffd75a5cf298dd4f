"""Settings come from the prefixed environment, a ``.env`` file, nested peer variables; secrets stay hidden."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import Field, ValidationError
from pydantic_settings import SettingsConfigDict

from servicekit.apikeys import ApiKeyEntry, hash_key, mint_key
from servicekit.settings import (
    PeerSettings,
    ServiceSettings,
    StartupRefusedError,
    refuse_production_guesses,
)


class DeskSettings(ServiceSettings):
    """Declared the way every service declares its settings."""

    model_config = SettingsConfigDict(
        env_prefix="DESKTEST_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        env_nested_delimiter="__",
    )

    service_name: str = "desk-test"
    wallet_pool: PeerSettings = Field(default=PeerSettings(url="http://127.0.0.1:8002"))


@pytest.fixture(autouse=True)
def clean_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run in an empty directory, so no stray ``.env`` is read."""
    monkeypatch.chdir(tmp_path)


def test_a_subclass_reads_only_its_prefixed_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "1111")
    monkeypatch.setenv("DESKTEST_PORT", "9100")
    monkeypatch.setenv("DESKTEST_DATABASE_URL", "postgresql://desk@db/desk")
    settings = DeskSettings()
    assert settings.port == 9100
    assert settings.database_url == "postgresql://desk@db/desk"
    assert not settings.embedded
    assert DeskSettings(database_url=None).embedded


def test_secrets_never_show_in_repr_or_dumps(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = mint_key("oa")
    monkeypatch.setenv("DESKTEST_WALLET_POOL__API_KEY", secret)
    settings = DeskSettings()
    assert settings.wallet_pool.api_key.get_secret_value() == secret
    assert settings.wallet_pool.url == "http://127.0.0.1:8002"  # only the key was set: the default URL stays
    for shown in (repr(settings), str(settings), settings.model_dump_json(), repr(settings.wallet_pool)):
        assert secret not in shown
        assert secret[3:12] not in shown


def test_api_keys_are_parsed_from_a_json_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    entries = [
        {"name": "order-api", "hash": hash_key(mint_key("oa")), "scopes": ["allocations:write"]},
        {"name": "order-api", "hash": hash_key(mint_key("oa"))},
    ]
    monkeypatch.setenv("DESKTEST_API_KEYS", json.dumps(entries))
    settings = DeskSettings()
    assert settings.api_keys == [ApiKeyEntry.model_validate(e) for e in entries]
    assert settings.api_keys[1].scopes == []

    monkeypatch.setenv("DESKTEST_API_KEYS", json.dumps([{"name": "x", "hash": "md5:abc"}]))
    with pytest.raises(ValidationError, match="hash"):
        DeskSettings()


def test_a_dot_env_file_is_read_and_the_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text(
        "DESKTEST_LOG_LEVEL=DEBUG\nDESKTEST_PORT=9200\nDESKTEST_WALLET_POOL__URL=http://wallet-pool:8002\n"
    )
    monkeypatch.setenv("DESKTEST_PORT", "9300")
    settings = DeskSettings()
    assert settings.log_level == "DEBUG"
    assert settings.port == 9300
    assert settings.wallet_pool.url == "http://wallet-pool:8002"


def test_peer_settings_nest_with_a_double_underscore(monkeypatch: pytest.MonkeyPatch) -> None:
    assert DeskSettings().wallet_pool == PeerSettings(url="http://127.0.0.1:8002")
    monkeypatch.setenv("DESKTEST_WALLET_POOL__URL", "http://wallet-pool.internal:8002")
    monkeypatch.setenv("DESKTEST_WALLET_POOL__TIMEOUT_SECONDS", "2.5")
    peer = DeskSettings().wallet_pool
    assert peer.url == "http://wallet-pool.internal:8002"
    assert peer.timeout_seconds == 2.5
    assert peer.api_key.get_secret_value() == ""


# --- secret files ----------------------------------------------------------------------------------------


def test_settings_come_from_files_named_like_their_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    key = mint_key("oa")
    entries = [{"name": "order-api", "hash": hash_key(key), "scopes": ["allocations:write"]}]
    (secrets / "DESKTEST_DATABASE_URL").write_text("postgresql://desk@db/desk\n")
    (secrets / "desktest_wallet_pool__api_key").write_text(key + "\n")  # case does not matter
    (secrets / "DESKTEST_API_KEYS").write_text(json.dumps(entries))
    (secrets / "DESKTEST_PORT").write_text("9400")
    (secrets / "OTHER_PORT").write_text("1")  # another service's file
    (secrets / ".DESKTEST_LOG_LEVEL").write_text("DEBUG")  # hidden: not a setting
    monkeypatch.setenv("DESKTEST_SECRETS_DIR", str(secrets))
    monkeypatch.setenv("DESKTEST_PORT", "9500")

    settings = DeskSettings()
    assert settings.secrets_dir == secrets
    assert settings.database_url == "postgresql://desk@db/desk"
    assert settings.wallet_pool.api_key.get_secret_value() == key  # nested, a SecretStr
    assert settings.wallet_pool.url == "http://127.0.0.1:8002"  # the default URL stays
    assert settings.api_keys == [ApiKeyEntry.model_validate(e) for e in entries]
    assert settings.port == 9500  # the variable wins over the file
    assert settings.log_level == "INFO"
    assert key not in repr(settings)


def test_a_kubernetes_secret_volume_is_read_through_its_links(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kubelet writes each key into a hidden timestamped directory and links ``KEY -> ..data/KEY``."""
    secrets = tmp_path / "secrets"
    (secrets / "..2026_01_01_00_00_00.1").mkdir(parents=True)
    (secrets / "..2026_01_01_00_00_00.1" / "DESKTEST_DATABASE_URL").write_text("postgresql://k8s@db/desk")
    (secrets / "..data").symlink_to("..2026_01_01_00_00_00.1")
    (secrets / "DESKTEST_DATABASE_URL").symlink_to("..data/DESKTEST_DATABASE_URL")
    assert DeskSettings(secrets_dir=secrets).database_url == "postgresql://k8s@db/desk"


def test_a_secrets_directory_that_does_not_exist_stops_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DESKTEST_SECRETS_DIR", str(tmp_path / "missing"))
    with pytest.raises(StartupRefusedError, match=r"DESKTEST_SECRETS_DIR=.*missing is not a directory"):
        DeskSettings()


# --- production refuses to guess ---------------------------------------------------------------------------


def test_production_names_every_setting_it_would_have_to_guess() -> None:
    settings = DeskSettings(environment="production")
    assert settings.production_problems() == [
        "DESKTEST_DATABASE_URL must be set in production "
        "(without it each replica would keep a SQLite file of its own)",
        "DESKTEST_API_KEYS must be set in production (no caller would be accepted)",
        "DESKTEST_WALLET_POOL__API_KEY must be set in production",
    ]
    with pytest.raises(StartupRefusedError) as refused:
        refuse_production_guesses(settings)
    assert refused.value.code == "desk-test refuses to start: " + "; ".join(settings.production_problems())
    refuse_production_guesses(DeskSettings(environment="development"))  # the embedded defaults are fine there


def test_a_service_whose_replicas_share_state_needs_redis_in_production() -> None:
    class SharingSettings(DeskSettings):
        redis_shared_state: ClassVar[str | None] = "rate limits"

    configured: dict[str, Any] = {
        "environment": "production",
        "database_url": "postgresql://desk@db/desk",
        "api_keys": [{"name": "x", "hash": hash_key(mint_key("xx"))}],
        "wallet_pool": {"url": "http://wallet-pool:8002", "api_key": mint_key("oa")},
    }
    assert DeskSettings(**configured).production_problems() == []
    assert SharingSettings(**configured).production_problems() == [
        "DESKTEST_REDIS_URL must be set in production (replicas share rate limits through it)"
    ]
    assert SharingSettings(**configured, redis_url="redis://redis:6379/0").production_problems() == []

"""Settings come from the prefixed environment, a ``.env`` file, nested peer variables; secrets stay hidden."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import Field, ValidationError
from pydantic_settings import SettingsConfigDict

from servicekit.apikeys import ApiKeyEntry, hash_key, mint_key
from servicekit.settings import PeerSettings, ServiceSettings


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

"""API keys: ``<prefix>_<random>`` keys, only hashes configured, scopes, rotation with overlap, the CLI."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import AsyncIterator
from importlib.metadata import entry_points
from pathlib import Path

import httpx
import pytest

from servicekit.apikeys import ApiKeyEntry, ApiKeyVerifier, hash_key, main, mint_key
from servicekit.testing.kitapps import KitSettings, create_demo_app, in_process_client

OLD_KEY = mint_key("oa")
NEW_KEY = mint_key("oa")
NO_SCOPE_KEY = mint_key("nt")


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = KitSettings(
        service_name="kit-apikeys",
        var_dir=tmp_path,
        api_keys=[
            ApiKeyEntry(name="order-api", hash=hash_key(OLD_KEY), scopes=["items:read"]),
            ApiKeyEntry(name="order-api", hash=hash_key(NEW_KEY), scopes=["items:read"]),
            ApiKeyEntry(name="notifier", hash=hash_key(NO_SCOPE_KEY), scopes=["events:publish"]),
        ],
    )
    async with in_process_client(create_demo_app(settings)) as client:
        yield client


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_minted_keys_and_their_hashes_have_the_documented_shape() -> None:
    key = mint_key("oa")
    assert re.fullmatch(r"oa_[A-Za-z0-9_-]{43}", key)
    assert mint_key("oa") != key
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", hash_key(key))
    assert hash_key(key) == "sha256:" + hashlib.sha256(key.encode()).hexdigest()
    for bad_prefix in ("OA", "o", "1a", "order_api"):
        with pytest.raises(ValueError, match="prefix"):
            mint_key(bad_prefix)


async def test_a_request_without_a_key_is_401_api_key_missing(client: httpx.AsyncClient) -> None:
    for headers in ({}, {"Authorization": "Basic dXNlcjpwdw=="}):
        response = await client.get("/v1/private", headers=headers)
        assert response.status_code == 401
        assert response.json()["code"] == "api_key_missing"


async def test_an_unknown_key_is_401_api_key_invalid(client: httpx.AsyncClient) -> None:
    for key in (mint_key("oa"), OLD_KEY[:-1], hash_key(OLD_KEY)):
        response = await client.get("/v1/private", headers=bearer(key))
        assert response.status_code == 401
        assert response.json()["code"] == "api_key_invalid"
        assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_a_key_without_the_scope_is_403_scope_missing(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/private", headers=bearer(NO_SCOPE_KEY))
    assert response.status_code == 403
    body = response.json()
    assert body["code"] == "scope_missing"
    assert body["scope"] == "items:read"


async def test_old_and_new_key_of_one_caller_are_both_accepted(client: httpx.AsyncClient) -> None:
    for key in (OLD_KEY, NEW_KEY):
        response = await client.get("/v1/private", headers=bearer(key))
        assert response.status_code == 200, response.text
        assert response.json() == {"caller": "order-api"}


def test_the_cli_mints_a_key_with_the_entry_the_receiver_configures(
    capsys: pytest.CaptureFixture[str],
) -> None:
    (script,) = entry_points(group="console_scripts", name="servicekit-apikey")
    assert script.value == "servicekit.apikeys:main"

    main(["mint", "--prefix", "oa", "--name", "order-api", "--scope", "a", "--scope", "b"])
    printed = json.loads(capsys.readouterr().out)
    key = printed["key"]
    assert re.fullmatch(r"oa_[A-Za-z0-9_-]{43}", key)
    entry = ApiKeyEntry.model_validate(printed["entry"])
    assert entry == ApiKeyEntry(name="order-api", hash=hash_key(key), scopes=["a", "b"])
    caller = ApiKeyVerifier([entry]).identify(key)
    assert caller is not None
    assert (caller.name, caller.scopes) == ("order-api", frozenset({"a", "b"}))

    main(["hash", key])
    assert capsys.readouterr().out.strip() == hash_key(key)

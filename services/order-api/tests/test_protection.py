"""Encryption at rest and the email blind index (README, "Security": what is sealed)."""

from __future__ import annotations

import base64
import json
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from pydantic import SecretStr

from order_api.protection import (
    DEV_SECRETS_FILE,
    DataProtection,
    DataProtectionConfigError,
    SealedDataError,
    new_key,
)
from order_api.testing import SettingsFactory


def _protection(*keys: str, current: str, blind: bytes = b"b" * 32) -> DataProtection:
    return DataProtection(
        keys={key_id: key_id.encode().ljust(32, b"k") for key_id in keys},
        current_key_id=current,
        blind_index_key=blind,
    )


def test_a_sealed_value_opens_in_its_context_and_never_shows_the_plaintext() -> None:
    protection = _protection("k1", current="k1")
    sealed = protection.seal("alice@example.com", context="customer.email")
    key_id, _, body = sealed.partition(":")
    assert key_id == "k1"
    assert "alice" not in sealed
    assert len(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))) == 12 + len("alice@example.com") + 16
    assert protection.open(sealed, context="customer.email") == "alice@example.com"
    # A random nonce per value: equal plaintexts do not give equal ciphertexts.
    assert protection.seal("alice@example.com", context="customer.email") != sealed
    assert protection.open(protection.seal("", context="x"), context="x") == ""
    assert protection.open(protection.seal("Grüße 🙂", context="x"), context="x") == "Grüße 🙂"


def test_a_sealed_value_does_not_open_in_another_context() -> None:
    protection = _protection("k1", current="k1")
    sealed = protection.seal("bc1qexample", context="order.payout_address")
    with pytest.raises(SealedDataError):
        protection.open(sealed, context="customer.email")


@pytest.mark.parametrize("where", ["nonce", "ciphertext", "tag", "key_id", "truncated", "garbage"])
def test_a_tampered_sealed_value_does_not_open(where: str) -> None:
    protection = _protection("k1", "k2", current="k1")
    sealed = protection.seal("alice@example.com", context="customer.email")
    key_id, _, body = sealed.partition(":")
    raw = bytearray(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    position = {"nonce": 0, "ciphertext": 14, "tag": len(raw) - 1}.get(where)
    if position is not None:
        raw[position] ^= 0x01
        tampered = f"{key_id}:{base64.urlsafe_b64encode(bytes(raw)).decode()}"
    elif where == "key_id":
        tampered = f"k2:{body}"
    elif where == "truncated":
        tampered = f"{key_id}:{body[:10]}"
    else:
        tampered = "not a sealed value"
    with pytest.raises(SealedDataError):
        protection.open(tampered, context="customer.email")


def test_data_sealed_with_an_old_key_opens_after_the_current_key_changes() -> None:
    before = _protection("k1", current="k1")
    sealed_before = before.seal("alice@example.com", context="customer.email")

    rotated = _protection("k1", "k2", current="k2")
    assert rotated.open(sealed_before, context="customer.email") == "alice@example.com"
    sealed_after = rotated.seal("bob@example.com", context="customer.email")
    assert sealed_after.startswith("k2:")
    # A replica not yet given k2 cannot read new data, which is why keys are added before they become current.
    with pytest.raises(SealedDataError, match="unknown key id"):
        before.open(sealed_after, context="customer.email")
    # Once k1 is retired, what it sealed no longer opens.
    with pytest.raises(SealedDataError):
        _protection("k2", current="k2").open(sealed_before, context="customer.email")


def test_the_email_index_is_stable_case_insensitive_and_keyed() -> None:
    protection = _protection("k1", current="k1")
    index = protection.email_index("alice@example.com")
    assert len(index) == 64
    assert int(index, 16) >= 0
    assert protection.email_index("  Alice@EXAMPLE.com\n") == index
    assert _protection("k2", current="k2").email_index("alice@example.com") == index  # data keys don't matter
    assert protection.email_index("alice+shop@example.com") != index
    assert _protection("k1", current="k1", blind=b"c" * 32).email_index("alice@example.com") != index
    assert DataProtection.normalise_email(" Alice@Example.COM ") == "alice@example.com"


def test_keys_come_from_settings(make_settings: SettingsFactory) -> None:
    key = new_key()
    settings = make_settings(
        data_keys={"old": SecretStr(new_key()), "new": SecretStr(key)},
        data_key_current="new",
        blind_index_key=SecretStr(new_key()),
    )
    protection = DataProtection.from_settings(settings)
    assert protection.seal("x", context="c").startswith("new:")
    assert not (settings.var_dir / DEV_SECRETS_FILE).exists()
    # URL-safe base64 without padding is accepted too.
    urlsafe = base64.urlsafe_b64encode(base64.b64decode(key)).decode().rstrip("=")
    same = DataProtection.from_settings(
        make_settings(
            data_keys={"new": SecretStr(urlsafe)},
            data_key_current="new",
            blind_index_key=settings.blind_index_key,
        )
    )
    assert same.open(protection.seal("x", context="c"), context="c") == "x"


def test_development_keys_are_generated_once_kept_0600_and_reused(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    settings = make_settings(
        environment="development", data_keys={}, data_key_current=None, blind_index_key=None, var_dir=tmp_path
    )
    first = DataProtection.from_settings(settings)
    path = tmp_path / DEV_SECRETS_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    stored = json.loads(path.read_text())
    assert set(stored) >= {"data_keys", "data_key_current", "blind_index_key"}
    assert [p.name for p in tmp_path.iterdir()] == [DEV_SECRETS_FILE]  # no temporary file left behind

    second = DataProtection.from_settings(settings)
    sealed = first.seal("alice@example.com", context="customer.email")
    assert second.open(sealed, context="customer.email") == "alice@example.com"
    assert second.email_index("alice@example.com") == first.email_index("alice@example.com")


def test_instances_starting_together_agree_on_one_development_key_set(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    settings = make_settings(
        environment="development", data_keys={}, data_key_current=None, blind_index_key=None, var_dir=tmp_path
    )
    with ThreadPoolExecutor(max_workers=8) as pool:
        instances = list(pool.map(lambda _: DataProtection.from_settings(settings), range(16)))
    assert len({p.email_index("alice@example.com") for p in instances}) == 1
    assert [p.name for p in tmp_path.iterdir()] == [DEV_SECRETS_FILE]


def test_production_without_keys_refuses_to_start_and_names_the_variables(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    settings = make_settings(
        environment="production", data_keys={}, data_key_current=None, blind_index_key=None, var_dir=tmp_path
    )
    with pytest.raises(DataProtectionConfigError) as raised:
        DataProtection.from_settings(settings)
    for variable in ("ORDER_API_DATA_KEYS", "ORDER_API_DATA_KEY_CURRENT", "ORDER_API_BLIND_INDEX_KEY"):
        assert variable in str(raised.value)
    assert not (tmp_path / DEV_SECRETS_FILE).exists()


def test_a_partial_or_malformed_key_configuration_is_refused(make_settings: SettingsFactory) -> None:
    with pytest.raises(DataProtectionConfigError, match="ORDER_API_BLIND_INDEX_KEY"):
        DataProtection.from_settings(make_settings(environment="development", blind_index_key=None))
    with pytest.raises(DataProtectionConfigError, match="not among the data keys"):
        DataProtection.from_settings(make_settings(data_key_current="missing"))
    with pytest.raises(DataProtectionConfigError, match="32 bytes"):
        DataProtection.from_settings(
            make_settings(
                data_keys={"short": SecretStr(base64.b64encode(b"x" * 16).decode())}, data_key_current="short"
            )
        )
    with pytest.raises(DataProtectionConfigError, match="base64"):
        DataProtection.from_settings(make_settings(blind_index_key=SecretStr("not base64!")))

"""``servicekit.sealing``: personal data sealed in events for the one receiver holding the event keys, bound to
the event it travels in; the event keys from settings, or shared development keys outside production."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from pydantic_settings import SettingsConfigDict

from servicekit.outbox import REDACT_AFTER_DELIVERY, EventEnvelope, redacted
from servicekit.sealing import (
    EVENT_SECRETS_FILE,
    DataProtection,
    DataProtectionConfigError,
    Keyring,
    SealedDataError,
    new_key,
    open_sealed_event,
    sealed_event_fields,
)
from servicekit.settings import DataKeySettings, EventKeySettings, ServiceSettings


class PublisherSettings(DataKeySettings, EventKeySettings, ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="KIT_PUB_", env_file=None, extra="ignore")
    service_name: str = "publisher"


class ReceiverSettings(EventKeySettings, ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="KIT_RCV_", env_file=None, extra="ignore")
    service_name: str = "receiver"


class PublisherProtection(DataProtection):
    dev_file = "publisher-secrets.json"


def _ring(*key_ids: str, current: str) -> Keyring:
    return Keyring(
        keys={k: k.encode().ljust(32, b"-") for k in key_ids}, current_key_id=current, name="event"
    )


def _envelope(
    payload: dict[str, Any], *, type_: str = "customer.email_code_requested", aggregate: str = "cus-1"
) -> EventEnvelope:
    return EventEnvelope(
        id="e-1",
        type=type_,
        source="publisher",
        occurred_at=datetime.now(UTC),
        aggregate_id=aggregate,
        payload=payload,
    )


def test_sealed_fields_open_only_in_the_event_they_were_sealed_for() -> None:
    ring = _ring("e1", current="e1")
    fields = sealed_event_fields(
        ring,
        {"email": "carol@example.com", "code": "974760"},
        event_type="customer.email_code_requested",
        aggregate_id="cus-1",
    )
    assert "carol" not in json.dumps(fields)
    assert "974760" not in json.dumps(fields)
    assert fields[REDACT_AFTER_DELIVERY] == ["sealed"]
    payload = {"customer_id": "cus-1", **fields}

    opened = open_sealed_event(ring, _envelope(payload))
    assert opened.payload["email"] == "carol@example.com"
    assert opened.payload["code"] == "974760"
    assert "sealed" not in opened.payload
    # Copied into another customer's event, or another type of event, it does not open.
    with pytest.raises(SealedDataError):
        open_sealed_event(ring, _envelope(payload, aggregate="cus-2"))
    with pytest.raises(SealedDataError):
        open_sealed_event(ring, _envelope(payload, type_="order.created"))
    # Delivered, even the sealed copy is masked in the outbox.
    assert redacted(payload)["sealed"] == "***"
    # An event without sealed fields is read as it is.
    assert open_sealed_event(ring, _envelope({"customer_id": "cus-1"})).payload == {"customer_id": "cus-1"}


def test_events_sealed_before_a_rotation_still_open_after_it() -> None:
    before = sealed_event_fields(
        _ring("e1", current="e1"), {"email": "a@example.com"}, event_type="t", aggregate_id="x"
    )
    rotated = _ring("e1", "e2", current="e2")
    after = sealed_event_fields(rotated, {"email": "b@example.com"}, event_type="t", aggregate_id="x")
    assert after["sealed"].startswith("e2:")
    assert (
        open_sealed_event(rotated, _envelope(before, type_="t", aggregate="x")).payload["email"]
        == "a@example.com"
    )
    with pytest.raises(SealedDataError, match="unknown key id"):
        open_sealed_event(_ring("e1", current="e1"), _envelope(after, type_="t", aggregate="x"))


def test_the_event_keys_come_from_settings_and_both_sides_hold_the_same_ring(tmp_path: Path) -> None:
    key = new_key()
    ring = {"e7": SecretStr(key)}
    publisher = PublisherProtection.from_settings(
        PublisherSettings(
            var_dir=tmp_path,
            data_keys={"d1": SecretStr(new_key())},
            data_key_current="d1",
            blind_index_key=SecretStr(new_key()),
            event_keys=ring,
            event_key_current="e7",
        )
    )
    receiver = Keyring.events_from_settings(
        ReceiverSettings(var_dir=tmp_path, event_keys=ring, event_key_current="e7")
    )
    fields = publisher.sealed_event_fields({"email": "a@example.com"}, event_type="t", aggregate_id="x")
    assert (
        open_sealed_event(receiver, _envelope(fields, type_="t", aggregate="x")).payload["email"]
        == "a@example.com"
    )
    assert list(tmp_path.iterdir()) == []  # nothing generated


def test_outside_production_services_sharing_a_var_dir_share_generated_event_keys(tmp_path: Path) -> None:
    publisher = PublisherProtection.from_settings(PublisherSettings(var_dir=tmp_path))
    receiver = Keyring.events_from_settings(ReceiverSettings(var_dir=tmp_path))
    fields = publisher.sealed_event_fields({"code": "123456"}, event_type="t", aggregate_id="x")
    assert (
        open_sealed_event(receiver, _envelope(fields, type_="t", aggregate="x")).payload["code"] == "123456"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [EVENT_SECRETS_FILE, "publisher-secrets.json"]
    for path in tmp_path.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_production_without_event_keys_refuses_to_start_and_names_them(tmp_path: Path) -> None:
    with pytest.raises(DataProtectionConfigError) as raised:
        Keyring.events_from_settings(ReceiverSettings(environment="production", var_dir=tmp_path))
    assert "KIT_RCV_EVENT_KEYS" in str(raised.value)
    assert "KIT_RCV_EVENT_KEY_CURRENT" in str(raised.value)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(DataProtectionConfigError, match="KIT_RCV_EVENT_KEY_CURRENT"):
        Keyring.events_from_settings(
            ReceiverSettings(var_dir=tmp_path, event_keys={"e1": SecretStr(new_key())})
        )

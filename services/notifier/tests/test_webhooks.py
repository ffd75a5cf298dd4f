"""Signed webhooks to the website: endpoints and their secret, events derived from order-api's, deliveries
signed per Standard Webhooks (checked with the README's receiver function and the reference library), the
SSRF guard at registration and at delivery, rotation, retries, dead letter, redelivery and test events.

The app runs in-process with its delivery workers; the website is a real HTTP receiver on loopback (allowed by
the development settings, except where a test refuses it)."""

from __future__ import annotations

import base64
import ipaddress
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from notifier.main import create_app
from notifier.notifications.models import TELEGRAM_NO_LOCALE, Channel
from notifier.notifications.service import queue_notification
from notifier.testing import (
    FAST_WORKER,
    KEYS,
    TEST_PROTECTION,
    RunningApp,
    WebhookReceiver,
    event_envelope,
    localhost_tls,
    make_settings,
    order_payload,
    running_workers,
)
from notifier.webhooks import receiver as receiver_module
from notifier.webhooks.events import WebhookEventType
from notifier.webhooks.models import WebhookEndpoint
from notifier.webhooks.receiver import verify_webhook
from notifier.webhooks.schemas import WebhookEndpointCreate
from notifier.webhooks.sender import WebhookSender
from notifier.webhooks.service import create_endpoint, send_test
from notifier.webhooks.targets import address_refusal
from notifier.workers.delivery import DeliveryWorker
from servicekit.db import Database, utcnow
from servicekit.testing import eventually, running_app

ENDPOINTS = "/v1/admin/webhook-endpoints"
REFUSED = (
    "127.0.0.1",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "100.64.0.1",  # CGNAT
    "169.254.169.254",  # metadata
    "0.0.0.0",  # noqa: S104 (an address refused, not bound)
    "224.0.0.251",
    "::1",
    "fe80::1",
    "fd00:ec2::254",  # metadata
    "::ffff:127.0.0.1",
    "::7f00:1",  # IPv4-compatible 127.0.0.1
    "64:ff9b::a01:203",  # NAT64 to 10.1.2.3
    "64:ff9b:1::a9fe:a9fe",  # local-use NAT64 to the metadata address
    "2002:a9fe:a9fe::",  # 6to4 of the metadata address
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo, its client 192.0.2.45 (documentation range)
    "fec0::1",  # site-local
    "192.0.0.192",  # the IETF protocol block (Oracle Cloud's metadata service)
)
ALL_EVENTS = ["order.created", "order.address_assigned", "order.status_changed", "order.expired"]


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with WebhookReceiver().serving() as serving:
        yield serving


@pytest.fixture
async def api(database: Database, database_url: str, tmp_path: Path) -> AsyncIterator[RunningApp]:
    """The notifier, allowed to deliver to a receiver on loopback over plain HTTP, three attempts at most."""
    settings = make_settings(
        database_url,
        tmp_path,
        webhook_allow_http=True,
        webhook_allow_private_targets=True,
        delivery_max_attempts=3,
    )
    app = create_app(settings)
    async with running_app(app) as client:
        yield RunningApp(app, client)


async def _register(api: RunningApp, url: str, **fields: Any) -> dict[str, Any]:
    body = {"url": url, "event_types": ALL_EVENTS, **fields}
    response = await api.client.post(ENDPOINTS, json=body, headers=api.auth(KEYS.admin))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def _deliveries(api: RunningApp, endpoint_id: str) -> list[dict[str, Any]]:
    response = await api.client.get(f"{ENDPOINTS}/{endpoint_id}/deliveries", headers=api.auth(KEYS.admin))
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def _settled(api: RunningApp, endpoint_id: str, count: int) -> list[dict[str, Any]]:
    """The endpoint's ``count`` deliveries once none is pending."""
    return await eventually(
        lambda: _deliveries(api, endpoint_id),
        until=lambda found: len(found) == count and all(d["status"] != "pending" for d in found),
        within=15,
    )


async def _publish(api: RunningApp, event: dict[str, Any]) -> None:
    response = await api.client.post("/v1/events", json=event, headers=api.auth(KEYS.publisher))
    assert response.status_code == 200, response.text


async def _test_event(api: RunningApp, endpoint_id: str) -> dict[str, Any]:
    response = await api.client.post(f"{ENDPOINTS}/{endpoint_id}/test", headers=api.auth(KEYS.admin))
    assert response.status_code == 202, response.text
    queued: dict[str, Any] = response.json()
    return queued


def _reference_verifies(secret: str, headers: dict[str, str], body: bytes) -> bool:
    try:
        Webhook(secret).verify(body, headers)
    except WebhookVerificationError:
        return False
    return True


async def test_order_events_arrive_signed_once_per_endpoint_and_tampering_fails(
    api: RunningApp, receiver: WebhookReceiver, database: Database
) -> None:
    endpoint = await _register(api, receiver.url, description="the shop")
    secret = endpoint["secret"]
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    async with database.engine.connect() as connection:
        stored = str((await connection.execute(text("SELECT * FROM webhook_endpoint"))).all())
    assert endpoint["id"] in stored
    assert secret.removeprefix("whsec_") not in stored  # sealed at rest
    shown = await api.client.get(f"{ENDPOINTS}/{endpoint['id']}", headers=api.auth(KEYS.admin))
    listed = await api.client.get(ENDPOINTS, headers=api.auth(KEYS.admin))
    assert "secret" not in shown.json()
    assert secret not in shown.text
    assert secret not in listed.text
    assert [e["id"] for e in listed.json()["items"]] == [endpoint["id"]]

    # a queued order gets its address: order.status_changed and order.address_assigned, each once
    changed = event_envelope(
        "order.status_changed",
        "ord-1",
        order_payload(from_status="queued", customer_email="anna@example.com"),
    )
    await _publish(api, changed)
    await _publish(api, {**changed})  # the same event again (a retried publication) adds nothing
    deliveries = await _settled(api, endpoint["id"], 2)
    assert {d["event_type"] for d in deliveries} == {"order.status_changed", "order.address_assigned"}
    assert all((d["status"], d["response_status"], d["attempts"]) == ("sent", 200, 1) for d in deliveries)
    assert all(d["latency_ms"] is not None and d["event_id"] == changed["id"] for d in deliveries)
    assert len(receiver.received) == 2

    headers, body = receiver.received[0]
    assert verify_webhook(secret, headers, body)
    assert _reference_verifies(secret, headers, body)
    sent = json.loads(body)
    assert sent["type"] in ("order.status_changed", "order.address_assigned")
    assert sent["data"] == {
        "schema_version": 1,
        "order_id": "ord-1",
        "status": "awaiting_deposit",
        "from_status": "queued",
        "from_currency": "BTC",
        "from_network": "bitcoin",
        "to_currency": "USDT",
        "to_network": "tron",
        "amount": "0.015",
        "deposit_address": "bc1qaddress",
        "queue_position": None,
        "expires_at": "2026-11-21T15:30:00Z",
        "version": 1,
    }
    assert headers["webhook-id"] in {d["id"] for d in deliveries}

    tampered_body = body.replace(b"0.015", b"9.015")
    late = {**headers, "webhook-timestamp": str(int(headers["webhook-timestamp"]) - 1)}
    for forged_headers, forged_body in ((headers, tampered_body), (late, body)):
        assert not verify_webhook(secret, forged_headers, forged_body)
        assert not _reference_verifies(secret, forged_headers, forged_body)


async def test_an_endpoint_gets_only_the_event_types_it_chose(
    api: RunningApp, receiver: WebhookReceiver
) -> None:
    endpoint = await _register(api, receiver.url, event_types=["order.expired"])
    await _publish(api, event_envelope("order.created", "ord-2", order_payload(order_id="ord-2")))
    expired = order_payload(order_id="ord-2", status="expired", from_status="awaiting_deposit")
    await _publish(api, event_envelope("order.status_changed", "ord-2", expired))
    [delivery] = await _settled(api, endpoint["id"], 1)
    assert delivery["event_type"] == "order.expired"
    assert json.loads(receiver.received[0][1])["data"]["status"] == "expired"


async def test_private_and_malformed_urls_are_refused_naming_the_field(
    database: Database, database_url: str, tmp_path: Path, receiver: WebhookReceiver
) -> None:
    app = create_app(make_settings(database_url, tmp_path, webhook_allow_http=True))
    async with running_app(app) as client:
        admin = {"Authorization": f"Bearer {KEYS.admin}"}
        refused = {
            receiver.url: "url",  # loopback
            "http://10.1.2.3/hook": "url",
            "http://169.254.169.254/latest/meta-data": "url",
            "http://[::ffff:192.168.0.1]/hook": "url",
            "ftp://shop.example.com/hook": "url",
            "https://.com/hook": "url",  # a host IDNA cannot encode
            f"https://{'a' * 64}.example.com/hook": "url",  # a label over 63 characters
        }
        for url, field in refused.items():
            response = await client.post(
                ENDPOINTS, json={"url": url, "event_types": ALL_EVENTS}, headers=admin
            )
            assert response.status_code == 422, (url, response.text)
            assert response.headers["content-type"] == "application/problem+json"
            assert [e["field"] for e in response.json()["errors"]] == [field]
        bad_type = await client.post(
            ENDPOINTS, json={"url": "http://93.184.215.14/", "event_types": ["order.paid"]}, headers=admin
        )
        assert bad_type.status_code == 422
        assert "event_types" in str(bad_type.json()["errors"])
        assert (await client.get(ENDPOINTS, headers=admin)).json()["items"] == []

        # registered while it resolved to a public address, it resolves to loopback now: refused at delivery
        now = utcnow()
        async with database.sessionmaker.begin() as session:
            session.add(
                WebhookEndpoint(
                    id="ep-rebound",
                    url=receiver.url,
                    description="",
                    event_types=ALL_EVENTS,
                    enabled=True,
                    secret_sealed=TEST_PROTECTION.seal_webhook_secret("whsec_AAAA"),
                    created_at=now,
                    updated_at=now,
                )
            )
            await queue_notification(
                session=session,
                protection=TEST_PROTECTION,
                channel=Channel.webhook,
                template="webhook.test",
                locale=TELEGRAM_NO_LOCALE,
                recipient="ep-rebound",
                variables={"type": "webhook.test", "timestamp": now.isoformat(), "data": {}},
            )
        api = RunningApp(app, client)
        [delivery] = await _settled(api, "ep-rebound", 1)
        assert delivery["status"] == "failed"
        assert "not a public address" in delivery["error"]
        assert receiver.received == []


async def test_rotation_signs_with_both_secrets_during_the_overlap(
    api: RunningApp, receiver: WebhookReceiver
) -> None:
    endpoint = await _register(api, receiver.url)
    rotated = await api.client.post(
        f"{ENDPOINTS}/{endpoint['id']}/rotate-secret", headers=api.auth(KEYS.admin)
    )
    assert rotated.status_code == 200, rotated.text
    new_secret = rotated.json()["secret"]
    assert new_secret != endpoint["secret"]
    assert rotated.json()["previous_secret_expires_at"]

    await _test_event(api, endpoint["id"])
    await _settled(api, endpoint["id"], 1)
    headers, body = receiver.received[0]
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (endpoint["secret"], new_secret):
        assert verify_webhook(secret, headers, body)
        assert _reference_verifies(secret, headers, body)
    assert json.loads(body)["type"] == "webhook.test"


async def test_failures_are_retried_then_dead_lettered_and_redelivered_with_the_same_id(
    api: RunningApp, receiver: WebhookReceiver
) -> None:
    endpoint = await _register(api, receiver.url)
    receiver.answers = [307, 503, 500]  # a redirect is a failed attempt, never followed
    queued = await _test_event(api, endpoint["id"])
    [dead] = await _settled(api, endpoint["id"], 1)
    assert (dead["status"], dead["attempts"], dead["response_status"]) == ("dead", 3, 500)
    assert dead["error"] == "TransientDeliveryError: the endpoint answered 500"

    path = f"{ENDPOINTS}/{endpoint['id']}/deliveries/{queued['id']}/redeliver"
    redelivered = await api.client.post(path, headers=api.auth(KEYS.admin))
    assert redelivered.status_code == 202, redelivered.text
    [sent] = await _settled(api, endpoint["id"], 1)
    assert (sent["status"], sent["response_status"]) == ("sent", 200)
    assert [h["webhook-id"] for h, _ in receiver.received] == [queued["id"]] * 4
    assert receiver.redirected == 0
    secret = endpoint["secret"]
    assert all(verify_webhook(secret, h, b) for h, b in receiver.received)

    elsewhere = await api.client.post(
        f"{ENDPOINTS}/no-such-endpoint/deliveries/{queued['id']}/redeliver", headers=api.auth(KEYS.admin)
    )
    assert elsewhere.status_code == 404


async def test_patch_delete_and_scopes(api: RunningApp, receiver: WebhookReceiver) -> None:
    endpoint = await _register(api, receiver.url)
    path = f"{ENDPOINTS}/{endpoint['id']}"
    unknown = await api.client.patch(path, json={"secret": "mine"}, headers=api.auth(KEYS.admin))
    assert unknown.status_code == 422
    assert "secret" in str(unknown.json()["errors"])
    patched = await api.client.patch(
        path, json={"enabled": False, "description": "paused"}, headers=api.auth(KEYS.admin)
    )
    assert (patched.json()["enabled"], patched.json()["description"]) == (False, "paused")
    await _publish(api, event_envelope("order.created", "ord-3", order_payload(order_id="ord-3")))
    assert await _deliveries(api, endpoint["id"]) == []  # a disabled endpoint is sent nothing

    assert (await api.client.get(ENDPOINTS, headers=api.auth(KEYS.reader))).status_code == 403
    assert (await api.client.delete(path, headers=api.auth(KEYS.admin))).status_code == 204
    assert (await api.client.get(path, headers=api.auth(KEYS.admin))).status_code == 404


def test_the_readme_quotes_the_receiver_function_the_tests_run() -> None:
    source = Path(receiver_module.__file__).read_text(encoding="utf-8")
    code = source[source.index("import base64") :]
    readme = (Path(__file__).parents[3] / "README.md").read_text(encoding="utf-8")
    assert f"```python\n{code}```" in readme


def test_production_refuses_the_development_webhook_settings(tmp_path: Path) -> None:
    settings = make_settings(
        None, tmp_path, environment="production", webhook_allow_http=True, webhook_allow_private_targets=True
    )
    problems = " ".join(settings.production_problems())
    assert "NOTIFIER_WEBHOOK_ALLOW_HTTP must be off in production" in problems
    assert "NOTIFIER_WEBHOOK_ALLOW_PRIVATE_TARGETS must be off in production" in problems


@pytest.mark.parametrize("address", REFUSED)
def test_addresses_off_the_public_internet_are_refused(address: str) -> None:
    assert address_refusal(ipaddress.ip_address(address), allow_private=False) is not None


def test_public_addresses_are_allowed_and_metadata_stays_refused_in_development() -> None:
    for public in ("93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c", "64:ff9b::5db8:d70e"):
        assert address_refusal(ipaddress.ip_address(public), allow_private=False) is None
    assert address_refusal(ipaddress.ip_address("192.168.1.1"), allow_private=True) is None
    for metadata in ("169.254.169.254", "fd00:ec2::254"):
        assert address_refusal(ipaddress.ip_address(metadata), allow_private=True) is not None


async def test_https_goes_to_the_checked_address_with_the_host_name_in_tls(
    database: Database, tmp_path: Path
) -> None:
    """The delivery connects to the address it checked and still verifies the certificate of the URL's host."""
    settings = make_settings(None, tmp_path, webhook_allow_private_targets=True)
    server_tls, client_tls = localhost_tls()
    async with WebhookReceiver().serving(tls=server_tls) as website:
        async with database.sessionmaker.begin() as session:
            body = WebhookEndpointCreate(url=website.url, event_types=[WebhookEventType.order_created])
            endpoint = await create_endpoint(
                session=session, protection=TEST_PROTECTION, settings=settings, body=body
            )
            await send_test(session=session, protection=TEST_PROTECTION, endpoint_id=endpoint.id)
        sender = WebhookSender(
            database=database, protection=TEST_PROTECTION, settings=settings, trust=client_tls
        )
        worker = DeliveryWorker(database=database, protection=TEST_PROTECTION, sender=sender, **FAST_WORKER)
        async with running_workers(worker):
            await eventually(lambda: _received(website), until=lambda n: n == 1, within=15)
        headers, sent = website.received[0]
        assert headers["host"] == website.url.split("/")[2]
        assert verify_webhook(endpoint.secret, headers, sent)


async def _received(receiver: WebhookReceiver) -> int:
    return len(receiver.received)

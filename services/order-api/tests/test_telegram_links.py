"""Linking an operator's Telegram account with a one-time code: an admin issues it
(``POST /v1/admin/operators/{id}/telegram-link-code``), the Telegram gateway redeems it for the Telegram user
who sent ``/start <code>`` (``POST /v1/telegram/links``), and from then on acts for that operator."""

from __future__ import annotations

import asyncio
import re
import secrets
import uuid
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from order_api.__main__ import main as order_api_cli
from order_api.audit.models import AuditLog
from order_api.audit.service import verify_audit_chain
from order_api.db import SCHEMA
from order_api.operators.models import Operator, TelegramLinkCode
from order_api.operators.telegram_links import LINK_CODE_ALPHABET, link_code_hash
from order_api.protection import DataProtection
from order_api.testing import ApiKeys, OrderApi, OrderApiRunner, hire
from servicekit.db import Database, resolve_database_url, utcnow
from servicekit.migrations import upgrade
from servicekit.state import service_state
from servicekit.testing import service_dir

LINKS = "/v1/telegram/links"
INVALID_DETAIL = "The link code is wrong, expired or already used. Ask an admin for a new code."


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def telegram_user() -> int:
    """A Telegram user id no other test uses."""
    return 10**9 + secrets.randbelow(10**12)


async def issue_code(api: OrderApi, api_keys: ApiKeys, operator_id: str) -> dict[str, Any]:
    response = await api.client.post(
        f"/v1/admin/operators/{operator_id}/telegram-link-code", headers=bearer(api_keys.admin)
    )
    assert response.status_code == 201, response.text
    issued: dict[str, Any] = response.json()
    return issued


async def redeem(
    api: OrderApi, api_keys: ApiKeys, code: str, telegram_user_id: int, **extra: Any
) -> httpx.Response:
    return await api.client.post(
        LINKS,
        json={"code": code, "telegram_user_id": telegram_user_id, **extra},
        headers=bearer(api_keys.telegram_gateway),
    )


def assert_invalid_code(response: httpx.Response) -> None:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert (body["code"], body["detail"]) == ("link_code_invalid", INVALID_DETAIL)
    assert [e["field"] for e in body["errors"]] == ["code"]


async def audit_rows(session: AsyncSession, **where: Any) -> list[AuditLog]:
    query = select(AuditLog).filter_by(**where).order_by(AuditLog.id)
    return list((await session.execute(query)).scalars())


async def acts_as(api: OrderApi, api_keys: ApiKeys, telegram_user_id: int) -> httpx.Response:
    """The gateway acting for whoever is linked to ``telegram_user_id``."""
    return await api.client.get(
        "/v1/operator/orders/mine",
        headers={**bearer(api_keys.telegram_gateway), "X-Operator-Telegram-Id": str(telegram_user_id)},
    )


# --- issuing --------------------------------------------------------------------------------------------


async def test_an_admin_issues_a_typeable_code_shown_once_stored_only_as_a_keyed_hash(
    api: OrderApi, api_keys: ApiKeys, db_session: AsyncSession, protection: DataProtection
) -> None:
    operator = await hire(api, api_keys)
    before = utcnow()
    issued = await issue_code(api, api_keys, operator["id"])

    code = issued["code"]
    assert re.fullmatch(f"[{LINK_CODE_ALPHABET}]{{10}}", code), code
    expires_at = datetime.fromisoformat(issued["expires_at"])
    assert before + timedelta(seconds=899) <= expires_at <= utcnow() + timedelta(seconds=900)
    [row] = (
        await db_session.execute(
            select(TelegramLinkCode).where(TelegramLinkCode.operator_id == operator["id"])
        )
    ).scalars()
    assert row.code_hash == link_code_hash(protection, code)
    table = TelegramLinkCode.__table__
    [values] = await db_session.execute(select(table).where(table.c.operator_id == operator["id"]))
    stored = " ".join(str(v) for v in values)
    assert code not in stored
    assert (row.issued_by, row.consumed_at, row.telegram_user_id) == ("api-key:admin", None, None)
    [audit] = await audit_rows(db_session, action="operator.telegram_link_code_issued")
    assert (audit.actor, audit.target_id, audit.channel) == ("api-key:admin", operator["id"], "rest")
    assert audit.parameters == {"link_code_id": row.id, "expires_at": row.expires_at.isoformat()}
    assert code not in str(audit.parameters)


async def test_codes_differ_and_the_lifetime_is_a_setting(
    order_api: OrderApiRunner, db_session: AsyncSession, api_keys: ApiKeys
) -> None:
    async with order_api(session=db_session, telegram_link_code_ttl_seconds=120) as api:
        operators = [await hire(api, api_keys) for _ in range(5)]
        before = utcnow()
        codes = [await issue_code(api, api_keys, o["id"]) for o in operators]
    assert len({c["code"] for c in codes}) == 5
    for issued in codes:
        assert datetime.fromisoformat(issued["expires_at"]) - before < timedelta(seconds=121)


async def test_only_admins_issue_codes_for_active_operators_that_exist(
    api: OrderApi, api_keys: ApiKeys, db_session: AsyncSession
) -> None:
    operator = await hire(api, api_keys)
    admin = await hire(api, api_keys, role="admin")
    url = f"/v1/admin/operators/{operator['id']}/telegram-link-code"

    by_admin_token = await api.client.post(url, headers=bearer(admin["token"]))
    assert by_admin_token.status_code == 201, by_admin_token.text
    [audit] = await audit_rows(db_session, action="operator.telegram_link_code_issued")
    assert audit.actor == f"operator:{admin['id']}"
    by_operator = await api.client.post(url, headers=bearer(operator["token"]))
    assert (by_operator.status_code, by_operator.json()["code"]) == (403, "operator_forbidden")
    by_gateway = await api.client.post(url, headers=bearer(api_keys.telegram_gateway))
    assert (by_gateway.status_code, by_gateway.json()["code"]) == (403, "telegram_operator_unknown")
    assert (await api.client.post(url)).status_code == 401

    missing = await api.client.post(
        f"/v1/admin/operators/{uuid.uuid4()}/telegram-link-code", headers=bearer(api_keys.admin)
    )
    assert (missing.status_code, missing.json()["code"]) == (404, "operator_not_found")
    await api.client.patch(
        f"/v1/admin/operators/{operator['id']}", json={"active": False}, headers=bearer(api_keys.admin)
    )
    inactive = await api.client.post(url, headers=bearer(api_keys.admin))
    assert inactive.status_code == 409
    assert inactive.headers["content-type"].startswith("application/problem+json")
    assert inactive.json()["code"] == "operator_inactive"


# --- redeeming ------------------------------------------------------------------------------------------


async def test_the_gateway_links_the_operator_with_the_code_and_then_acts_for_them(
    api: OrderApi, api_keys: ApiKeys, db_session: AsyncSession
) -> None:
    operator = await hire(api, api_keys, role="support")
    issued = await issue_code(api, api_keys, operator["id"])
    user = telegram_user()
    assert (await acts_as(api, api_keys, user)).json()["code"] == "telegram_operator_unknown"

    typed = f" {issued['code'][:5].lower()}-{issued['code'][5:]} "  # as typed on a phone
    linked = await redeem(api, api_keys, typed, user, telegram_username="@anna_k")
    assert linked.status_code == 200, linked.text
    assert linked.json() == {
        "operator_id": operator["id"],
        "name": operator["name"],
        "role": "support",
        "telegram_user_id": user,
    }
    assert (await acts_as(api, api_keys, user)).status_code == 200
    listed = await api.client.get(f"/v1/admin/operators/{operator['id']}", headers=bearer(api_keys.admin))
    assert listed.json()["telegram_user_id"] == user

    row = await db_session.scalar(
        select(TelegramLinkCode).where(TelegramLinkCode.operator_id == operator["id"])
    )
    assert row is not None
    assert row.consumed_at is not None
    assert row.telegram_user_id == user
    [audit] = await audit_rows(db_session, action="operator.telegram_linked")
    assert (audit.actor, audit.actor_role, audit.channel, audit.target_id) == (
        f"operator:{operator['id']}",
        "support",
        "telegram",
        operator["id"],
    )
    assert audit.parameters == {
        "telegram_user_id": user,
        "telegram_username": "anna_k",
        "previous_telegram_user_id": None,
        "link_code_id": row.id,
        "via": "telegram-gateway",
    }

    assert_invalid_code(await redeem(api, api_keys, issued["code"], user))  # single use
    assert_invalid_code(await redeem(api, api_keys, issued["code"], telegram_user()))
    assert await verify_audit_chain(db_session) is None


async def test_the_operator_record_is_the_one_truth_the_gateway_looks_up(
    api: OrderApi, api_keys: ApiKeys
) -> None:
    """However the link was made (an admin's create or edit, or ``/start <code>``), the gateway's lookup
    answers the same, and an admin clearing it or deactivating the operator ends it at once."""
    gateway, admin = bearer(api_keys.telegram_gateway), bearer(api_keys.admin)
    by_admin, by_code = telegram_user(), telegram_user()
    created = await hire(api, api_keys, telegram_user_id=by_admin)
    linked = await hire(api, api_keys, role="support")
    redeemed = await redeem(api, api_keys, (await issue_code(api, api_keys, linked["id"]))["code"], by_code)
    assert redeemed.status_code == 200, redeemed.text

    found = await api.client.get(f"/v1/telegram/operators/{by_admin}", headers=gateway)
    assert found.status_code == 200, found.text
    assert found.json() == {
        "operator_id": created["id"],
        "name": created["name"],
        "role": "operator",
        "telegram_user_id": by_admin,
    }
    assert (await api.client.get(f"/v1/telegram/operators/{by_code}", headers=gateway)).json() == (
        redeemed.json()
    )

    cleared = await api.client.patch(
        f"/v1/admin/operators/{created['id']}", json={"telegram_user_id": None}, headers=admin
    )
    assert cleared.status_code == 200, cleared.text
    gone = await api.client.get(f"/v1/telegram/operators/{by_admin}", headers=gateway)
    assert (gone.status_code, gone.json()["code"]) == (404, "telegram_link_not_found")
    moved = await api.client.patch(
        f"/v1/admin/operators/{created['id']}", json={"telegram_user_id": by_admin + 1}, headers=admin
    )
    assert moved.status_code == 200, moved.text
    assert (
        await api.client.get(f"/v1/telegram/operators/{by_admin + 1}", headers=gateway)
    ).status_code == 200
    await api.client.patch(f"/v1/admin/operators/{linked['id']}", json={"active": False}, headers=admin)
    deactivated = await api.client.get(f"/v1/telegram/operators/{by_code}", headers=gateway)
    assert (deactivated.status_code, deactivated.json()["code"]) == (404, "telegram_link_not_found")

    other_key = await api.client.get(f"/v1/telegram/operators/{by_admin + 1}", headers=admin)
    assert (other_key.status_code, other_key.json()["code"]) == (403, "scope_missing")
    personal = await api.client.get(
        f"/v1/telegram/operators/{by_admin + 1}", headers=bearer(created["token"])
    )
    assert (personal.status_code, personal.json()["code"]) == (403, "api_key_required")
    assert (await api.client.get("/v1/telegram/operators/0", headers=gateway)).status_code == 422


async def test_wrong_expired_used_and_superseded_codes_get_the_same_answer(
    api: OrderApi, api_keys: ApiKeys, db_session: AsyncSession
) -> None:
    operator = await hire(api, api_keys)
    first = await issue_code(api, api_keys, operator["id"])
    second = await issue_code(api, api_keys, operator["id"])
    user = telegram_user()

    assert_invalid_code(await redeem(api, api_keys, first["code"], user))  # superseded by the second
    assert_invalid_code(await redeem(api, api_keys, "ABCDEFGHJK", user))  # wrong
    assert_invalid_code(await redeem(api, api_keys, "no such code at all!", user))
    await db_session.execute(
        update(TelegramLinkCode)
        .where(TelegramLinkCode.operator_id == operator["id"], TelegramLinkCode.consumed_at.is_(None))
        .values(expires_at=utcnow() - timedelta(seconds=1))
    )
    assert_invalid_code(await redeem(api, api_keys, second["code"], user))  # expired
    assert (await acts_as(api, api_keys, user)).status_code == 403
    stored = await db_session.get(Operator, operator["id"], populate_existing=True)
    assert stored is not None
    assert stored.telegram_user_id is None
    assert await audit_rows(db_session, action="operator.telegram_linked") == []


async def test_a_deactivated_operators_code_no_longer_links(
    api: OrderApi, api_keys: ApiKeys, db_session: AsyncSession
) -> None:
    operator = await hire(api, api_keys)
    issued = await issue_code(api, api_keys, operator["id"])
    await api.client.patch(
        f"/v1/admin/operators/{operator['id']}", json={"active": False}, headers=bearer(api_keys.admin)
    )
    assert_invalid_code(await redeem(api, api_keys, issued["code"], telegram_user()))


async def test_a_telegram_user_of_another_operator_is_refused_and_the_code_survives(
    api: OrderApi, api_keys: ApiKeys
) -> None:
    user = telegram_user()
    holder = await hire(api, api_keys, telegram_user_id=user)
    operator = await hire(api, api_keys)
    issued = await issue_code(api, api_keys, operator["id"])

    taken = await redeem(api, api_keys, issued["code"], user)
    assert (taken.status_code, taken.json()["code"]) == (409, "operator_telegram_id_taken")
    assert taken.headers["content-type"].startswith("application/problem+json")
    assert (await acts_as(api, api_keys, user)).status_code == 200  # still the holder
    await api.client.patch(
        f"/v1/admin/operators/{holder['id']}", json={"telegram_user_id": None}, headers=bearer(api_keys.admin)
    )
    linked = await redeem(api, api_keys, issued["code"], user)
    assert linked.status_code == 200, linked.text
    assert linked.json()["operator_id"] == operator["id"]


async def test_linking_again_moves_the_operator_to_the_new_telegram_account(
    api: OrderApi, api_keys: ApiKeys, db_session: AsyncSession
) -> None:
    old_phone, new_phone = telegram_user(), telegram_user()
    operator = await hire(api, api_keys, telegram_user_id=old_phone)
    issued = await issue_code(api, api_keys, operator["id"])

    linked = await redeem(api, api_keys, issued["code"], new_phone)
    assert linked.status_code == 200, linked.text
    assert (await acts_as(api, api_keys, new_phone)).status_code == 200
    assert (await acts_as(api, api_keys, old_phone)).json()["code"] == "telegram_operator_unknown"
    [audit] = await audit_rows(db_session, action="operator.telegram_linked")
    assert (audit.parameters["previous_telegram_user_id"], audit.parameters["telegram_username"]) == (
        old_phone,
        None,
    )


async def test_only_the_gateways_key_redeems_and_the_body_is_validated(
    api: OrderApi, api_keys: ApiKeys
) -> None:
    operator = await hire(api, api_keys)
    issued = await issue_code(api, api_keys, operator["id"])
    body = {"code": issued["code"], "telegram_user_id": telegram_user()}

    admin = await api.client.post(LINKS, json=body, headers=bearer(api_keys.admin))
    assert (admin.status_code, admin.json()["code"]) == (403, "scope_missing")
    personal = await api.client.post(LINKS, json=body, headers=bearer(operator["token"]))
    assert (personal.status_code, personal.json()["code"]) == (403, "api_key_required")
    assert (await api.client.post(LINKS, json=body)).status_code == 401

    gateway = bearer(api_keys.telegram_gateway)
    for bad, field in [
        ({**body, "telegram_user_id": 0}, "telegram_user_id"),
        ({**body, "telegram_user_id": -5}, "telegram_user_id"),
        ({**body, "telegram_user_id": "anna"}, "telegram_user_id"),
        ({"telegram_user_id": body["telegram_user_id"]}, "code"),
        ({**body, "code": ""}, "code"),
        ({**body, "code": "X" * 65}, "code"),
        ({**body, "telegram_username": "anna k"}, "telegram_username"),
        ({**body, "operator_id": operator["id"]}, "operator_id"),
    ]:
        refused = await api.client.post(LINKS, json=bad, headers=gateway)
        assert refused.status_code == 422, (bad, refused.text)
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert field in {e["field"].split(".")[-1] for e in refused.json()["errors"]}, (bad, refused.text)
    assert (await redeem(api, api_keys, issued["code"], body["telegram_user_id"])).status_code == 200


async def test_link_attempts_are_limited_per_telegram_user(
    order_api: OrderApiRunner, db_session: AsyncSession, api_keys: ApiKeys
) -> None:
    async with order_api(session=db_session, telegram_link_rate_limit="3/hour") as api:
        operator = await hire(api, api_keys)
        issued = await issue_code(api, api_keys, operator["id"])
        guesser, other = telegram_user(), telegram_user()
        for _ in range(3):
            assert_invalid_code(await redeem(api, api_keys, "WRONGCODE2", guesser))
        limited = await redeem(api, api_keys, issued["code"], guesser)  # even the right code now
        assert (limited.status_code, limited.json()["code"]) == (429, "rate_limited")
        assert int(limited.headers["Retry-After"]) > 0
        linked = await redeem(api, api_keys, issued["code"], other)
        assert linked.status_code == 200, linked.text


# --- concurrency, committed for real --------------------------------------------------------------------


async def test_ten_concurrent_redemptions_of_one_code_link_exactly_once(
    order_api: OrderApiRunner, own_database_url: str, api_keys: ApiKeys
) -> None:
    async with order_api(database_url=own_database_url) as api:
        operator = await hire(api, api_keys)
        issued = await issue_code(api, api_keys, operator["id"])
        users = [telegram_user() for _ in range(10)]

        responses = await asyncio.gather(*(redeem(api, api_keys, issued["code"], u) for u in users))
        database: Database = service_state(api.app).runtime.database
        async with database.sessionmaker() as session:
            stored = await session.get(Operator, operator["id"])
            code = await session.scalar(select(TelegramLinkCode))
            links = await audit_rows(session, action="operator.telegram_linked")
            broken = await verify_audit_chain(session)

    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: 1, 422: 9}, [r.text for r in responses]
    [winner] = [u for u, r in zip(users, responses, strict=True) if r.status_code == 200]
    for lost in (r for r in responses if r.status_code == 422):
        assert_invalid_code(lost)
    assert stored is not None
    assert stored.telegram_user_id == winner
    assert code is not None
    assert code.telegram_user_id == winner
    assert [a.parameters["telegram_user_id"] for a in links] == [winner]
    assert broken is None


async def test_one_telegram_user_redeeming_two_operators_codes_at_once_links_one(
    order_api: OrderApiRunner, own_database_url: str, api_keys: ApiKeys
) -> None:
    async with order_api(database_url=own_database_url) as api:
        operators = [await hire(api, api_keys) for _ in range(2)]
        codes = [await issue_code(api, api_keys, o["id"]) for o in operators]
        user = telegram_user()

        responses = await asyncio.gather(*(redeem(api, api_keys, c["code"], user) for c in codes))
        database: Database = service_state(api.app).runtime.database
        async with database.sessionmaker() as session:
            linked = (
                (await session.execute(select(Operator.id).where(Operator.telegram_user_id == user)))
                .scalars()
                .all()
            )
            used = (
                (
                    await session.execute(
                        select(TelegramLinkCode.id).where(TelegramLinkCode.telegram_user_id == user)
                    )
                )
                .scalars()
                .all()
            )

    assert sorted(r.status_code for r in responses) == [200, 409], [r.text for r in responses]
    [won] = [r.json() for r in responses if r.status_code == 200]
    [lost] = [r.json() for r in responses if r.status_code == 409]
    assert lost["code"] == "operator_telegram_id_taken"
    assert linked == [won["operator_id"]]
    assert len(used) == 1  # the loser's code is still unused


# --- embedded mode --------------------------------------------------------------------------------------


async def test_linking_works_the_same_on_the_embedded_sqlite_database(
    order_api: OrderApiRunner, tmp_path: Path, api_keys: ApiKeys
) -> None:
    var_dir = tmp_path / "embedded"
    url = resolve_database_url(None, var_dir=var_dir, service_name="order-api")
    await asyncio.to_thread(upgrade, service_dir("order-api"), url=url)
    async with order_api(database_url=None, var_dir=var_dir) as api:
        assert service_state(api.app).runtime.database.engine.dialect.name == "sqlite"
        operator = await hire(api, api_keys)
        first = await issue_code(api, api_keys, operator["id"])
        second = await issue_code(api, api_keys, operator["id"])
        user = telegram_user()
        assert_invalid_code(await redeem(api, api_keys, first["code"], user))
        linked = await redeem(api, api_keys, second["code"], user)
        assert linked.status_code == 200, linked.text
        assert_invalid_code(await redeem(api, api_keys, second["code"], telegram_user()))
        assert (await acts_as(api, api_keys, user)).status_code == 200
        gateway = bearer(api_keys.telegram_gateway)
        found = await api.client.get(f"/v1/telegram/operators/{user}", headers=gateway)
        assert found.json()["operator_id"] == operator["id"]
        by_admin = telegram_user()
        boss = await hire(api, api_keys, role="admin", telegram_user_id=by_admin)
        found = await api.client.get(f"/v1/telegram/operators/{by_admin}", headers=gateway)
        assert found.json()["operator_id"] == boss["id"]
        refused = await api.client.get(
            "/v1/audit", headers={**gateway, "X-Operator-Telegram-Id": str(by_admin)}
        )
        assert (refused.status_code, refused.json()["code"]) == (403, "acted_for_identity_forbidden")


# --- from a shell ---------------------------------------------------------------------------------------


async def test_links_are_listed_and_ended_from_a_shell(
    order_api: OrderApiRunner,
    own_database_url: str,
    api_keys: ApiKeys,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``python -m order_api telegram-links`` / ``telegram-unlink``: the operator record, read and changed as an
    admin would, audited, and the gateway's lookup follows at once."""
    monkeypatch.setenv("ORDER_API_DATABASE_URL", own_database_url)
    gateway = bearer(api_keys.telegram_gateway)
    async with order_api(database_url=own_database_url) as api:
        by_admin, by_code = telegram_user(), telegram_user()
        anna = await hire(api, api_keys, telegram_user_id=by_admin)
        boris = await hire(api, api_keys, role="support")
        redeemed = await redeem(
            api, api_keys, (await issue_code(api, api_keys, boris["id"]))["code"], by_code
        )
        assert redeemed.status_code == 200, redeemed.text
        unlinked = await hire(api, api_keys)

        capsys.readouterr()  # the service's log so far
        assert await asyncio.to_thread(order_api_cli, ["telegram-links"]) == 0
        header, *rows = capsys.readouterr().out.splitlines()
        assert header.split("\t") == ["telegram_user_id", "operator_id", "role", "state", "name"]
        assert sorted(rows) == sorted(
            [
                f"{by_admin}\t{anna['id']}\toperator\tactive\t{anna['name']}",
                f"{by_code}\t{boris['id']}\tsupport\tactive\t{boris['name']}",
            ]
        )

        assert await asyncio.to_thread(order_api_cli, ["telegram-unlink", anna["id"]]) == 0
        assert (
            capsys.readouterr().out
            == f"unlinked: {by_admin}\t{anna['id']}\toperator\tactive\t{anna['name']}\n"
        )
        assert (
            await asyncio.to_thread(order_api_cli, ["telegram-unlink", "--telegram-user-id", str(by_code)])
            == 0
        )
        for user in (by_admin, by_code):
            gone = await api.client.get(f"/v1/telegram/operators/{user}", headers=gateway)
            assert (gone.status_code, gone.json()["code"]) == (404, "telegram_link_not_found")

        capsys.readouterr()
        assert await asyncio.to_thread(order_api_cli, ["telegram-unlink", unlinked["id"]]) == 2
        assert capsys.readouterr().err == (
            f"telegram_link_not_found: Operator {unlinked['id']} ({unlinked['name']}) is not linked to Telegram.\n"
        )
        assert await asyncio.to_thread(order_api_cli, ["telegram-links"]) == 0
        assert capsys.readouterr().err == "no operator is linked to Telegram\n"

    database = Database(url=own_database_url, schema=SCHEMA, var_dir=Path("var"), service_name="order-api")
    try:
        async with database.sessionmaker() as session:
            audited = await audit_rows(session, action="operator.updated", channel="cli")
            assert sorted(row.target_id for row in audited) == sorted([anna["id"], boris["id"]])
            assert all(row.parameters == {"telegram_user_id": None} for row in audited)
    finally:
        await database.dispose()

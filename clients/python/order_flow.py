"""A website's backend talking to order-api through the client openapi-python-client generates from its
OpenAPI document: create an order without signing in, read a validation problem (422) and a missing order
(404) as typed problems with their fields, then cancel the order with ``If-Match``.

Generate the client as ``order_api_client`` next to this file (docs/clients.md), then run it against a desk:

    python clients/python/order_flow.py http://127.0.0.1:8001

It prints what it saw as JSON; ``tests/test_generated_clients.py`` runs it against a live order-api.
"""

from __future__ import annotations

import json
import sys
import uuid
from typing import Any, TypeVar, cast

from order_api_client import AuthenticatedClient, Client
from order_api_client.api.orders import cancel_order, create_order, get_order
from order_api_client.models import OrderCreate, OrderCreated, OrderRead, ProblemDetail
from order_api_client.types import Response

PAYOUT_USDT = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"
MISSING_ORDER_ID = "00000000-0000-4000-8000-000000000000"

Parsed = TypeVar("Parsed")


def expect(response: Response[Any], kind: type[Parsed]) -> Parsed:
    """The response's body as ``kind``, or stop: the generated client did not type the answer."""
    if not isinstance(response.parsed, kind):
        raise SystemExit(
            f"HTTP {response.status_code} parsed as {type(response.parsed).__name__}, not {kind.__name__}: "
            f"{response.content!r}"
        )
    return response.parsed


def an_order(amount: str = "0.05") -> OrderCreate:
    """``amount`` BTC for USDT (TRC20), from a fresh email address."""
    return OrderCreate(
        email=f"website.{uuid.uuid4().hex[:10]}@example.com",
        from_currency="BTC",
        to_currency="USDT",
        to_network="TRC20",
        amount=amount,
        payout_address=PAYOUT_USDT,
    )


def problem_summary(problem: ProblemDetail) -> dict[str, Any]:
    return {
        "status": problem.status,
        "code": problem.code,
        "fields": [error.field for error in problem.errors or []],
    }


def order_flow(base_url: str) -> dict[str, Any]:
    # openapi-python-client asks for an AuthenticatedClient wherever a route declares a credential, even where
    # the document lets the call go without one, as order creation does (its upstream issue #1372): the call
    # uses only what both clients have.
    anonymous = cast(AuthenticatedClient, Client(base_url=base_url))

    # Creating an order needs no account: the answer carries a session token for this order.
    body = an_order()
    order = expect(create_order.sync_detailed(client=anonymous, body=body), OrderCreated)
    if not isinstance(order.session_token, str):
        raise SystemExit("an anonymous order came without a session token")
    customer = AuthenticatedClient(base_url=base_url, token=order.session_token)

    # Bad input is a problem naming the field.
    invalid = expect(create_order.sync_detailed(client=anonymous, body=an_order("-1")), ProblemDetail)

    # Another (here: no) order is a 404 problem.
    missing = expect(get_order.sync_detailed(MISSING_ORDER_ID, client=customer), ProblemDetail)

    # Cancel the order as read: a change made since would make this a 412 problem.
    cancelled = expect(
        cancel_order.sync_detailed(order.id, client=customer, if_match=f'"{order.version}"'), OrderRead
    )
    sent: str = body.amount  # money is a decimal string both ways, never a float
    received: str = order.amount
    return {
        "created": {
            "id": order.id,
            "status": str(order.status),
            "version": order.version,
            "sent": sent,
            "amount": received,
        },
        "invalid": problem_summary(invalid),
        "missing": problem_summary(missing),
        "cancelled": {"id": cancelled.id, "status": str(cancelled.status), "version": cancelled.version},
    }


if __name__ == "__main__":
    print(json.dumps(order_flow(sys.argv[1])))

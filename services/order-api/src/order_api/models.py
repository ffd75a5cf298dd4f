"""Every table of order-api, imported in one place for Alembic and tests."""

from order_api.auth.models import CustomerSession, EmailCode
from order_api.customers.models import Customer
from order_api.db import inbox, metadata, outbox
from order_api.orders.models import IdempotencyKey, Order, OrderEvent

__all__ = [
    "Customer",
    "CustomerSession",
    "EmailCode",
    "IdempotencyKey",
    "Order",
    "OrderEvent",
    "inbox",
    "metadata",
    "outbox",
]

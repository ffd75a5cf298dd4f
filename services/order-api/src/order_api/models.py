"""Every table of order-api, imported in one place for Alembic and tests."""

from order_api.audit.models import AuditChainHead, AuditLog
from order_api.auth.models import CustomerSession, EmailCode
from order_api.customers.models import Customer
from order_api.db import inbox, metadata, outbox
from order_api.operators.models import Escalation, EscalationComment, Operator, TelegramLinkCode
from order_api.orders.models import IdempotencyKey, Order, OrderEvent

__all__ = [
    "AuditChainHead",
    "AuditLog",
    "Customer",
    "CustomerSession",
    "EmailCode",
    "Escalation",
    "EscalationComment",
    "IdempotencyKey",
    "Operator",
    "Order",
    "OrderEvent",
    "TelegramLinkCode",
    "inbox",
    "metadata",
    "outbox",
]

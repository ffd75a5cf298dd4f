"""The stable ``code`` of every problem+json error the services answer: what a caller matches on, written
once. Every ``servicekit.errors.DomainError`` subclass sets ``code = ErrorCode.<member>``, and a caller (the
bot matching order-api's refusals, a client rebuilding a peer's error) compares with the member, never with a
literal string. A value is never renamed: callers in other services (and other versions) match on it."""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """Problem codes, grouped by the service that answers them (servicekit's by every service)."""

    # servicekit: every service
    BAD_REQUEST = "bad_request"
    API_KEY_MISSING = "api_key_missing"
    API_KEY_INVALID = "api_key_invalid"
    SCOPE_MISSING = "scope_missing"
    API_KEY_REQUIRED = "api_key_required"
    FORBIDDEN_CHARACTER = "forbidden_character"
    JSON_TOO_DEEP = "json_too_deep"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    VALIDATION_FAILED = "validation_failed"
    BODY_TOO_LARGE = "body_too_large"
    RATE_LIMITED = "rate_limited"
    PEER_UNAVAILABLE = "peer_unavailable"
    BACKING_STORE_UNAVAILABLE = "backing_store_unavailable"
    PEER_ANSWER_INVALID = "peer_answer_invalid"
    PEER_REJECTED = "peer_rejected"
    OUTBOX_EVENT_NOT_FOUND = "outbox_event_not_found"
    OUTBOX_EVENT_NOT_REPLAYABLE = "outbox_event_not_replayable"

    # order-api
    SESSION_MISSING = "session_missing"
    SESSION_INVALID = "session_invalid"
    EMAIL_CODE_INVALID = "email_code_invalid"
    CUSTOMER_NOT_FOUND = "customer_not_found"
    CUSTOMER_HAS_OPEN_ORDERS = "customer_has_open_orders"
    OPERATOR_TOKEN_MISSING = "operator_token_missing"
    OPERATOR_TOKEN_INVALID = "operator_token_invalid"
    OPERATOR_FORBIDDEN = "operator_forbidden"
    ACTED_FOR_IDENTITY_FORBIDDEN = "acted_for_identity_forbidden"
    TELEGRAM_OPERATOR_UNKNOWN = "telegram_operator_unknown"
    TELEGRAM_LINK_NOT_FOUND = "telegram_link_not_found"
    OPERATOR_NOT_FOUND = "operator_not_found"
    OPERATOR_INACTIVE = "operator_inactive"
    OPERATOR_TELEGRAM_ID_TAKEN = "operator_telegram_id_taken"
    ORDER_ALREADY_TAKEN = "order_already_taken"
    ORDER_NOT_HELD = "order_not_held"
    OPERATOR_AT_CAPACITY = "operator_at_capacity"
    ORDER_ALREADY_ESCALATED = "order_already_escalated"
    ESCALATION_NOT_FOUND = "escalation_not_found"
    ESCALATION_NOT_OPEN = "escalation_not_open"
    LINK_CODE_INVALID = "link_code_invalid"
    ORDER_NOT_FOUND = "order_not_found"
    ORDER_TRANSITION_NOT_ALLOWED = "order_transition_not_allowed"
    ORDER_VERSION_MISMATCH = "order_version_mismatch"
    OPEN_ORDER_LIMIT_REACHED = "open_order_limit_reached"
    ORDER_INVALID = "order_invalid"
    TRANSACTION_REQUIRED = "transaction_required"
    TRANSACTION_INVALID = "transaction_invalid"
    PAYMENT_MISMATCH = "payment_mismatch"
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
    IDEMPOTENCY_KEY_IN_FLIGHT = "idempotency_key_in_flight"
    FULL_SESSION_REQUIRED = "full_session_required"

    # wallet-pool
    ALLOCATION_NOT_FOUND = "allocation_not_found"
    ALLOCATION_CLOSED = "allocation_closed"
    ALLOCATION_MISMATCH = "allocation_mismatch"
    WALLET_NOT_FOUND = "wallet_not_found"

    # notifier
    ALERT_NOT_FOUND = "alert_not_found"
    ALERT_ALREADY_RESOLVED = "alert_already_resolved"
    NOTIFICATION_NOT_FOUND = "notification_not_found"
    NOTIFICATION_NOT_REDELIVERABLE = "notification_not_redeliverable"
    EVENT_SEALED_FIELDS_UNREADABLE = "event_sealed_fields_unreadable"
    WEBHOOK_ENDPOINT_NOT_FOUND = "webhook_endpoint_not_found"
    WEBHOOK_URL_REFUSED = "webhook_url_refused"
    WEBHOOK_DELIVERY_NOT_FOUND = "webhook_delivery_not_found"
    WEBHOOK_DELIVERY_PENDING = "webhook_delivery_pending"

    # telegram-gateway
    TELEGRAM_DISABLED = "telegram_disabled"
    TELEGRAM_REJECTED = "telegram_rejected"
    TELEGRAM_UNAVAILABLE = "telegram_unavailable"
    WEBHOOK_SECRET_INVALID = "webhook_secret_invalid"
    WEBHOOK_NOT_IN_USE = "webhook_not_in_use"
    ORDER_API_SLOW = "order_api_slow"

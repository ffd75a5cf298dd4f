"""Reading an event's payload into a model: a payload that can never be read is a 422 naming each bad
``payload.<field>``, which the publisher's outbox relay dead-letters instead of retrying."""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ValidationError

from servicekit.errors import ValidationFailedError
from servicekit.outbox import EventEnvelope

M = TypeVar("M", bound=BaseModel)


def read_payload(model: type[M], envelope: EventEnvelope) -> M:
    try:
        return model.model_validate(envelope.payload)
    except ValidationError as exc:
        errors = [
            {
                "field": ".".join(["payload", *(str(part) for part in error["loc"])]),
                "message": error["msg"],
                "type": error["type"],
            }
            for error in exc.errors()
        ]
        fields = ", ".join(e["field"] for e in errors)
        raise ValidationFailedError(f"{envelope.type} payload: {fields}", errors=errors) from exc

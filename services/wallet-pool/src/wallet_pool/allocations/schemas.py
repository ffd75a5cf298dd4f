"""What the allocation routes accept and answer.

An allocation answers in one of three shapes, told apart by ``status``: ``allocated`` (the order holds an
address), ``queued`` (it waits, with its position) and ``released`` (closed for good).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

ORDER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
PriorityName = Literal["normal", "priority", "vip"]


class AllocationCreate(BaseModel):
    """Ask for a deposit address for an order. Idempotent per ``order_id``: asking again returns the current
    answer and never a second address."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "order_id": "5f0c6a8e-3b7d-4c1e-9a44-0d2f5b9e7c11",
                    "currency": "BTC",
                    "network": "bitcoin",
                    "priority": "normal",
                }
            ]
        },
    )

    order_id: str = Field(pattern=ORDER_ID_PATTERN, examples=["5f0c6a8e-3b7d-4c1e-9a44-0d2f5b9e7c11"])
    currency: str = Field(min_length=2, max_length=10, examples=["BTC"])
    network: str | None = Field(
        default=None,
        max_length=16,
        description="Defaults to the currency's first network.",
        examples=["bitcoin"],
    )
    priority: PriorityName = Field(
        default="normal", description="Place in the wait queue: vip before priority before normal."
    )


class AllocationAllocatedRead(BaseModel):
    """The order holds this deposit address."""

    order_id: str
    status: Literal["allocated"] = "allocated"
    currency: str
    network: str
    address: str
    allocated_at: datetime


class AllocationQueuedRead(BaseModel):
    """No address was free: the order waits in its pool's queue."""

    order_id: str
    status: Literal["queued"] = "queued"
    currency: str
    network: str
    position: int = Field(ge=1, description="1 is next; moves up as orders ahead are served or leave.")
    estimated_wait_seconds: int | None = Field(
        description="From the pool's recent release rate; null when nothing was released lately."
    )
    enqueued_at: datetime


class AllocationReleasedRead(BaseModel):
    """Closed: the order's address went back to the pool (or it left the queue). An order never gets a second
    address, so allocating it again is refused. ``currency`` is null for an order wallet-pool only ever saw
    released (a tombstone)."""

    order_id: str
    status: Literal["released"] = "released"
    currency: str | None
    network: str | None
    address: str | None = Field(description="The address it held; null if it never held one.")
    released_at: datetime


AllocationRead = Annotated[
    AllocationAllocatedRead | AllocationQueuedRead | AllocationReleasedRead, Field(discriminator="status")
]
AllocationAnswer = Annotated[AllocationAllocatedRead | AllocationQueuedRead, Field(discriminator="status")]


class AllocationReleaseRead(BaseModel):
    """The result of a release. Releasing again answers the same."""

    order_id: str
    status: Literal["released"] = "released"
    address: str | None = Field(description="The address freed; null when the order held none.")
    handed_to_order_id: str | None = Field(
        description="The waiting order that received the address in the same transaction, if any."
    )

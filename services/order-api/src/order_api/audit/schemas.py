"""Bodies of ``GET /v1/audit``, and a checkpoint as ``audit-checkpoint`` prints it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from order_api.audit.models import AuditCheckpoint
from servicekit.pagination import Page, PageQuery


class AuditFilter(PageQuery):
    """Which audit rows to read (query parameters)."""

    model_config = ConfigDict(extra="forbid")

    actor: str | None = Field(
        default=None, max_length=80, description="Exactly, e.g. `operator:<id>` or `api-key:admin`."
    )
    order_id: str | None = Field(default=None, max_length=64, description="Rows about this order.")
    action: str | None = Field(default=None, max_length=64, examples=["order.taken"])
    occurred_from: AwareDatetime | None = Field(default=None, description="Inclusive, with a time zone.")
    occurred_to: AwareDatetime | None = Field(default=None, description="Exclusive, with a time zone.")


class AuditEntryRead(BaseModel):
    """One audit row, with the hashes that chain it to the row before."""

    id: int
    occurred_at: datetime
    actor: str
    actor_role: str
    action: str
    target_type: str
    target_id: str
    parameters: dict[str, Any]
    channel: str = Field(description="rest, telegram, system or cli")
    correlation_id: str | None = Field(description="The trace id (X-Correlation-ID) of the request.")
    prev_hash: str
    row_hash: str


class AuditPage(Page[AuditEntryRead]):
    """Audit rows, newest first."""


class CheckpointRecord(BaseModel):
    """A checkpoint as ``audit-checkpoint`` prints it (one JSON line): kept outside the database (the job's
    log, shipped elsewhere), it still proves what the log held after someone with the database's keys deleted
    both the rows and the checkpoints covering them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: int = Field(ge=1)
    row_count: int = Field(ge=0)
    head_hash: str = Field(min_length=64, max_length=64)
    checkpointed_at: AwareDatetime
    previous_signature: str = Field(min_length=64, max_length=64)
    signature: str = Field(min_length=64, max_length=64)

    @classmethod
    def of(cls, checkpoint: AuditCheckpoint) -> CheckpointRecord:
        return cls.model_validate(checkpoint, from_attributes=True)

"""Bodies of ``GET /v1/audit``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class AuditFilter(BaseModel):
    """Which audit rows to read (query parameters)."""

    model_config = ConfigDict(extra="forbid")

    actor: str | None = Field(
        default=None, max_length=80, description="Exactly, e.g. `operator:<id>` or `api-key:admin`."
    )
    order_id: str | None = Field(default=None, max_length=64, description="Rows about this order.")
    action: str | None = Field(default=None, max_length=64, examples=["order.taken"])
    occurred_from: AwareDatetime | None = Field(default=None, description="Inclusive, with a time zone.")
    occurred_to: AwareDatetime | None = Field(default=None, description="Exclusive, with a time zone.")
    cursor: str | None = Field(default=None, max_length=20, description="`next_cursor` of the page before.")
    limit: int = Field(default=50, ge=1, le=200)


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


class AuditPage(BaseModel):
    items: list[AuditEntryRead]
    next_cursor: str | None = Field(description="Pass as `cursor` for older rows; null on the last page.")

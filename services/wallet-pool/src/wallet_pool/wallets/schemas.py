"""What the wallet routes accept and answer."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from servicekit.pagination import Page

WalletStatusName = Literal["free", "reserved", "disabled"]


class WalletImportCreate(BaseModel):
    """A batch of deposit addresses for one pool. All of them are imported, or none."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"currency": "USDT", "network": "TRC20", "addresses": ["TQn9Y2khEsLJW1ChVWFMSMeRDow5KcbLSE"]}
            ]
        },
    )

    currency: str = Field(min_length=2, max_length=10, examples=["USDT"])
    network: str | None = Field(
        default=None,
        max_length=16,
        description="Defaults to the currency's first network: bitcoin, ethereum, TRC20 for USDT.",
        examples=["TRC20"],
    )
    addresses: list[str] = Field(
        min_length=1,
        description="One address per entry, as pasted (surrounding whitespace is ignored). The service "
        "refuses more than its configured batch limit (default 1000) in one request.",
        examples=[["TQn9Y2khEsLJW1ChVWFMSMeRDow5KcbLSE"]],
    )


class WalletRead(BaseModel):
    """One deposit address of the pool."""

    id: int
    currency: str = Field(examples=["BTC"])
    network: str = Field(examples=["bitcoin"])
    address: str = Field(description="Stored normalised: bech32 lower case, EIP-55 case for Ethereum.")
    status: WalletStatusName
    order_id: str | None = Field(description="The order holding it while reserved.")
    disable_on_release: bool = Field(
        description="Disabled while reserved: it becomes disabled, not free, when its order releases it."
    )
    reserved_at: datetime | None
    released_at: datetime | None = Field(description="Last release; NULL for a never-used wallet.")
    allocation_count: int = Field(description="How many orders it has served.")
    created_at: datetime


class WalletImportRead(BaseModel):
    """The result of an import: every wallet it created (some may already serve waiting orders)."""

    imported: int
    currency: str
    network: str
    wallets: list[WalletRead]


class WalletPageRead(Page[WalletRead]):
    """Wallets, oldest first (by id)."""

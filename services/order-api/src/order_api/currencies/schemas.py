"""The answer of ``GET /v1/currencies``."""

from __future__ import annotations

from pydantic import BaseModel, Field

from servicekit.bounds import DecimalString


class AddressFormatRead(BaseModel):
    """What an address of a network looks like: check it in the form before sending the order."""

    description: str = Field(description="The format in words, for the customer.")
    pattern: str = Field(
        description="A regular expression (ECMAScript and Python alike, no flags) every address the desk "
        "accepts matches once surrounding whitespace is trimmed; the checksum is checked by the desk alone, "
        "so a matching address may still be refused (`422` naming `payout_address`)."
    )


class NetworkRead(BaseModel):
    """A network a currency is sent and received on."""

    code: str = Field(
        description="What `from_network` and `to_network` of an order take.", examples=["TRC20"]
    )
    default: bool = Field(description="The network an order gets when it names none.")
    address_format: AddressFormatRead = Field(description="Its payout (and deposit) addresses.")


class CurrencyRead(BaseModel):
    """A currency orders may be placed in: its rules hold on every network it has."""

    code: str = Field(
        description="What `from_currency` and `to_currency` of an order take.", examples=["BTC"]
    )
    precision: int = Field(description="Decimal places an order's `amount` may have in this currency.")
    min_amount: DecimalString = Field(
        description="The smallest `amount` an order sending this currency may have (decimal string).",
        examples=["0.0001"],
    )
    max_amount: DecimalString = Field(
        description="The largest `amount` an order sending this currency may have (decimal string).",
        examples=["10"],
    )
    default_network: str = Field(description="The network an order gets when it names none.")
    networks: list[NetworkRead] = Field(description="Every network it is taken on, the default first.")
    awaiting_deposit_minutes: int = Field(
        description="An unpaid order sending this currency expires this long after it got its deposit address."
    )
    queued_minutes: int = Field(
        description="An order sending this currency and still without a deposit address (queued, or awaiting "
        "it) expires this long after it was placed."
    )
    exchangeable_to: list[str] = Field(
        description="The currencies an order sending this one may ask for (`to_currency`)."
    )


class CurrencyCatalogue(BaseModel):
    """Every currency the desk takes orders in, by code."""

    currencies: list[CurrencyRead]

"""The currency catalogue: what an order may ask for, read from the settings (precision, limits, expiry) and
``coin_addresses`` (networks, the default one, address formats), built once when the service starts.

A currency of ``ORDER_API_CURRENCIES`` that ``coin_addresses`` has no network for is left out: intake refuses
orders in it, so the website must not offer it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from coin_addresses import ADDRESS_FORMATS, SUPPORTED
from order_api.currencies.schemas import AddressFormatRead, CurrencyCatalogue, CurrencyRead, NetworkRead
from order_api.settings import CurrencyRules


def currency_catalogue(*, currencies: Mapping[str, CurrencyRules]) -> CurrencyCatalogue:
    """Every currency orders may be placed in, by code, with its networks (the default first)."""
    offered = sorted(code for code in currencies if SUPPORTED.get(code))
    return CurrencyCatalogue(
        currencies=[
            _currency(code, currencies[code], exchangeable_to=[other for other in offered if other != code])
            for code in offered
        ]
    )


def _currency(code: str, rules: CurrencyRules, *, exchangeable_to: list[str]) -> CurrencyRead:
    networks = SUPPORTED[code]
    return CurrencyRead(
        code=code,
        precision=rules.precision,
        min_amount=rules.min_amount,
        max_amount=rules.max_amount,
        default_network=networks[0],
        networks=[
            NetworkRead(
                code=network,
                default=network == networks[0],
                address_format=AddressFormatRead(
                    description=ADDRESS_FORMATS[network].description, pattern=ADDRESS_FORMATS[network].pattern
                ),
            )
            for network in networks
        ],
        awaiting_deposit_minutes=rules.awaiting_deposit_minutes,
        queued_minutes=rules.queued_minutes,
        exchangeable_to=exchangeable_to,
    )


@dataclass(frozen=True, slots=True)
class PublishedCatalogue:
    """The catalogue as it is answered: its JSON body, and the strong ``ETag`` that is the body's hash."""

    body: bytes
    etag: str
    cache_control: str

    def is_current(self, if_none_match: str | None) -> bool:
        """Whether the client's copy (``If-None-Match``) is this one: then ``304`` instead of the body. As
        RFC 9110 has it for ``If-None-Match``, a weak tag (``W/"…"``) compares by its value, and ``*`` is any
        copy."""
        if if_none_match is None:
            return False
        tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
        return "*" in tags or self.etag in tags


def published_catalogue(*, catalogue: CurrencyCatalogue, max_age_seconds: int) -> PublishedCatalogue:
    body = catalogue.model_dump_json().encode()
    return PublishedCatalogue(
        body=body,
        etag=f'"{hashlib.sha256(body).hexdigest()[:32]}"',
        cache_control=f"public, max-age={max_age_seconds}",
    )

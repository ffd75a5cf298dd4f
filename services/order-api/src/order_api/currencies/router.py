"""The currency catalogue, for the website: public and cacheable."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header
from fastapi.responses import Response

from order_api.context import Ctx
from order_api.currencies.schemas import CurrencyCatalogue
from servicekit.errors import problem_responses
from servicekit.openapi import ETAG_HEADER

router = APIRouter(prefix="/v1/currencies", tags=["currencies"])

CACHE_HEADERS = {
    **ETAG_HEADER,  # the catalogue's version, a hash of the body
    "Cache-Control": {
        "description": "`public, max-age=<ORDER_API_CURRENCIES_CACHE_SECONDS>`.",
        "schema": {"type": "string"},
    },
}
IfNoneMatch = Annotated[
    str | None,
    Header(alias="If-None-Match", description="The ETag of the copy you hold: `304` while it is current."),
]


@router.get(
    "",
    operation_id="listCurrencies",
    summary="List the currencies orders may be placed in",
    description="Each currency with its precision, amount limits, networks (the default first, each with its "
    "address format), unpaid-order expiry and the currencies it may be exchanged to, exactly as order intake "
    "applies them: build the order form from it instead of hard-coding any of it. No authentication. The "
    "answer changes only when the desk's settings do: it carries a strong `ETag` and `Cache-Control: public`; "
    "a request with `If-None-Match` naming the current `ETag` is answered `304` without a body.",
    response_model=CurrencyCatalogue,
    responses={
        200: {"description": "The currencies, by code.", "headers": CACHE_HEADERS},
        304: {
            "description": "Not Modified: the copy named by If-None-Match is current.",
            "headers": CACHE_HEADERS,
        },
        **problem_responses(500),
    },
)
async def list_currencies(ctx: Ctx, if_none_match: IfNoneMatch = None) -> Response:
    catalogue = ctx.currency_catalogue
    headers = {"ETag": catalogue.etag, "Cache-Control": catalogue.cache_control}
    if catalogue.is_current(if_none_match):
        return Response(status_code=304, headers=headers)
    return Response(catalogue.body, media_type="application/json", headers=headers)

"""``Annotated`` dependency aliases of telegram-gateway's routes (what the gateway holds is ``context.Ctx``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from servicekit.ratelimit import client_key
from telegram_gateway.context import Ctx


async def _client_ip(request: Request, ctx: Ctx) -> str:
    """The client's network as the webhook's rate limit counts it (an IPv4 address, an IPv6 /64)."""
    return client_key(request, trusted_proxies=ctx.trusted_proxies, settings=ctx.settings)


ClientIp = Annotated[str, Depends(_client_ip)]

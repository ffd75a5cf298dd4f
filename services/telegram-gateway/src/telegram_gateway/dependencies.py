"""Annotated dependency aliases of telegram-gateway's routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from servicekit.ratelimit import Network, RateLimiter, client_key
from telegram_gateway.bot.runtime import TelegramBot
from telegram_gateway.metrics import GatewayMetrics
from telegram_gateway.settings import Settings


async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def _telegram(request: Request) -> TelegramBot:
    telegram: TelegramBot = request.app.state.telegram
    return telegram


async def _metrics(request: Request) -> GatewayMetrics:
    metrics: GatewayMetrics = request.app.state.gateway_metrics
    return metrics


async def _rate_limiter(request: Request) -> RateLimiter:
    limiter: RateLimiter = request.app.state.rate_limiter
    return limiter


async def _client_ip(request: Request) -> str:
    """The client's network as the webhook's rate limit counts it (an IPv4 address, an IPv6 /64)."""
    trusted: list[Network] = request.app.state.trusted_proxies
    settings: Settings = request.app.state.settings
    return client_key(request, trusted_proxies=trusted, settings=settings)


AppSettings = Annotated[Settings, Depends(_settings)]
Telegram = Annotated[TelegramBot, Depends(_telegram)]
Metrics = Annotated[GatewayMetrics, Depends(_metrics)]
RateLimits = Annotated[RateLimiter, Depends(_rate_limiter)]
ClientIp = Annotated[str, Depends(_client_ip)]

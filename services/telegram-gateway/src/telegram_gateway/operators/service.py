"""Who a Telegram user is: order-api's operator record is the one truth about the link, however it was made
(``/start <code>`` redeemed here, or an admin setting or clearing ``telegram_user_id``). The gateway keeps no
table of links: it asks order-api (``GET /v1/telegram/operators/{telegram_user_id}``) and caches the answer,
the operator or nobody, for ``TELEGRAM_GATEWAY_OPERATOR_CACHE_SECONDS`` (in Redis when configured, so every
replica sees one answer and one invalidation).

The cache only decides which handlers a Telegram user reaches (the menu, ``/pool``): every action on an
order is checked by order-api against the operator record when it is made, and its refusal
(``telegram_operator_unknown``) drops the cached answer at once. A link made here is cached at once too.
"""

from __future__ import annotations

import logging

from servicekit.cache import ExpiringCache
from telegram_gateway.clients.order_api import LinkedOperator, OrderApiClient

log = logging.getLogger("telegram_gateway.operators")

NOBODY = ""
"""What the cache holds for a Telegram user no active operator is linked to."""


class OperatorLinks:
    """Finds, links and forgets who Telegram users are, through order-api and a short cache."""

    def __init__(self, *, order_api: OrderApiClient, cache: ExpiringCache) -> None:
        self.order_api = order_api
        self.cache = cache

    async def find(self, *, telegram_user_id: int) -> LinkedOperator | None:
        """The operator linked to this Telegram user, or ``None``; raises ``PeerUnavailableError`` when
        order-api cannot say and nothing is cached."""
        key = str(telegram_user_id)
        cached = await self.cache.get(key)
        if cached is not None:
            return None if cached == NOBODY else LinkedOperator.model_validate_json(cached)
        operator = await self.order_api.linked_operator(telegram_user_id=telegram_user_id)
        await self.cache.put(key, NOBODY if operator is None else operator.model_dump_json())
        return operator

    async def link(
        self, *, code: str, telegram_user_id: int, telegram_username: str | None
    ) -> LinkedOperator:
        """Redeem the one-time ``code`` at order-api, which links the operator to this Telegram user (an
        earlier Telegram account of theirs is unlinked there; the cache forgets it within its lifetime)."""
        operator = await self.order_api.redeem_link_code(
            code=code, telegram_user_id=telegram_user_id, telegram_username=telegram_username
        )
        await self.cache.put(str(telegram_user_id), operator.model_dump_json())
        log.info(
            "operator linked to Telegram",
            extra={"operator_id": operator.operator_id, "telegram_user_id": telegram_user_id},
        )
        return operator

    async def forget(self, *, telegram_user_id: int) -> None:
        """order-api no longer knows this Telegram user (unlinked or deactivated): ask again next time."""
        await self.cache.forget(str(telegram_user_id))
        log.info("operator link dropped: order-api refuses it", extra={"telegram_user_id": telegram_user_id})

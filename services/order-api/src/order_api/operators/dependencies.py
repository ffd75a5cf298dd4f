"""Who an operator route is called by (``Annotated`` aliases).

A request is authenticated once (``_staff_member``): an operator's personal token (``op_…``), the admin API key
(scope ``admin``), or the Telegram gateway's key (scope ``orders:act-as-operator``) naming the operator with
``X-Operator-Telegram-Id``; ``401`` for a missing or unknown token. The principal carries which
(``credential``). Each alias then admits the roles it names, and **only the aliases of the bot's work admit an
identity acted for**; every other route answers it ``403 acted_for_identity_forbidden``, whatever the
operator's role, so a leaked gateway key reaches an operator's work on orders and nothing else:

- ``OrderReader`` (every role; acted for too): the takeable list, my orders, one order, my presence;
- ``OrderHandler`` (roles ``operator`` and ``admin``; acted for too): take, change status, give back,
  escalate. Acted for, an admin has an operator's powers only (``OperatorPrincipal.is_admin``);
- ``OrderReassigner`` (roles ``support`` and ``admin``; acted for too, for support's reassign in the bot):
  hand a held order to another operator;
- ``CurrentOperator`` (every role, own credential): escalation comments, personal stats;
- ``SupportStaff`` (roles ``support`` and ``admin``, own credential): escalations;
- ``AdminStaff`` (role ``admin``, own credential): operators, audit.

A wrong role is ``403 operator_forbidden``. ``TelegramGateway``: the Telegram gateway's own key (scope
``orders:act-as-operator``), for calls it makes for nobody in particular (redeeming a link code, looking up
who a Telegram user is).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from order_api.operators.errors import (
    ActedForIdentityForbiddenError,
    OperatorForbiddenError,
    OperatorTokenInvalidError,
    OperatorTokenMissingError,
)
from order_api.operators.models import OperatorRole
from order_api.operators.service import (
    ACT_AS_OPERATOR_SCOPE,
    OPERATOR_TOKEN_PREFIX,
    OperatorPrincipal,
    authenticate_operator,
    principal_for_api_key,
)
from servicekit.apikeys import Caller, require_scope
from servicekit.app import DbSession
from servicekit.state import service_state

_operator_token = HTTPBearer(
    auto_error=False,
    scheme_name="OperatorToken",
    description="An operator's personal token (`op_…`), or the admin API key.",
)


async def _staff_member(
    request: Request,
    session: DbSession,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_operator_token)],
    telegram_user_id: Annotated[
        int | None,
        Header(
            alias="X-Operator-Telegram-Id",
            include_in_schema=False,
            description="Telegram gateway only: the Telegram user id of the operator it acts for.",
        ),
    ] = None,
) -> OperatorPrincipal:
    if credentials is None or not credentials.credentials:
        raise OperatorTokenMissingError("Send your operator token as 'Authorization: Bearer op_…'.")
    token = credentials.credentials
    if token.startswith(OPERATOR_TOKEN_PREFIX):
        principal = await authenticate_operator(session=session, token=token)
    else:
        caller = service_state(request.app).api_key_verifier.identify(token)
        if caller is None:
            raise OperatorTokenInvalidError("The token is neither an operator token nor an accepted API key.")
        principal = await principal_for_api_key(
            session=session, caller=caller, telegram_user_id=telegram_user_id
        )
    request.state.operator = principal
    return principal


_StaffMember = Annotated[OperatorPrincipal, Depends(_staff_member)]


def _staff(
    *roles: OperatorRole, acted_for: bool = False
) -> Callable[[OperatorPrincipal], Awaitable[OperatorPrincipal]]:
    """A dependency admitting ``roles`` (every role when none is named), and an identity acted for only
    when ``acted_for``."""

    async def dependency(principal: _StaffMember) -> OperatorPrincipal:
        if principal.acted_for and not acted_for:
            raise ActedForIdentityForbiddenError(
                "Acting for an operator reaches only their work on orders; this route needs the member of "
                "staff's own credential.",
                extra={"credential": principal.credential},
            )
        if roles and principal.role not in roles:
            raise OperatorForbiddenError(
                f"This needs the role {' or '.join(roles)}; you are {principal.role}.",
                extra={"roles": list(roles)},
            )
        return principal

    dependency.__name__ = (
        "require_" + ("_or_".join(roles) or "staff") + ("_or_acted_for" if acted_for else "")
    )
    return dependency


OrderReader = Annotated[OperatorPrincipal, Depends(_staff(acted_for=True))]
OrderHandler = Annotated[
    OperatorPrincipal, Depends(_staff(OperatorRole.OPERATOR, OperatorRole.ADMIN, acted_for=True))
]
OrderReassigner = Annotated[
    OperatorPrincipal, Depends(_staff(OperatorRole.SUPPORT, OperatorRole.ADMIN, acted_for=True))
]
CurrentOperator = Annotated[OperatorPrincipal, Depends(_staff())]
SupportStaff = Annotated[OperatorPrincipal, Depends(_staff(OperatorRole.SUPPORT, OperatorRole.ADMIN))]
admin_staff = _staff(OperatorRole.ADMIN)
"""The dependency of ``AdminStaff`` (for routers servicekit builds: the outbox's)."""
AdminStaff = Annotated[OperatorPrincipal, Depends(admin_staff)]
TelegramGateway = Annotated[Caller, Depends(require_scope(ACT_AS_OPERATOR_SCOPE))]

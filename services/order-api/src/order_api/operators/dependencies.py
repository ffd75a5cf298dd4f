"""Who an operator route is called by (DESIGN §10: ``Annotated`` aliases).

- ``CurrentOperator``: any member of staff — an operator's personal token (``op_…``), the admin API key
  (scope ``admin``), or the Telegram gateway's key (scope ``orders:act-as-operator``) naming the operator
  with ``X-Operator-Telegram-Id``; ``401`` for a missing or unknown token;
- ``OrderHandler``: roles ``operator`` and ``admin`` (take, drive, give back, escalate);
- ``SupportStaff``: roles ``support`` and ``admin`` (escalations);
- ``AdminStaff``: role ``admin`` (operators, audit). A wrong role is ``403 operator_forbidden``;
- ``TelegramGateway``: the Telegram gateway's own key (scope ``orders:act-as-operator``), for calls it makes
  for nobody in particular (redeeming a link code).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from order_api.operators.errors import (
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
from servicekit.apikeys import ApiKeyVerifier, Caller, require_scope
from servicekit.app import DbSession

_operator_token = HTTPBearer(
    auto_error=False,
    scheme_name="OperatorToken",
    description="An operator's personal token (`op_…`), or an API key: the admin key, or the Telegram "
    "gateway's key together with `X-Operator-Telegram-Id`.",
)


async def _current_operator(
    request: Request,
    session: DbSession,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_operator_token)],
    telegram_user_id: Annotated[
        int | None,
        Header(
            alias="X-Operator-Telegram-Id",
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
        verifier: ApiKeyVerifier = request.app.state.api_key_verifier
        caller = verifier.identify(token)
        if caller is None:
            raise OperatorTokenInvalidError("The token is neither an operator token nor an accepted API key.")
        principal = await principal_for_api_key(
            session=session, caller=caller, telegram_user_id=telegram_user_id
        )
    request.state.operator = principal
    return principal


CurrentOperator = Annotated[OperatorPrincipal, Depends(_current_operator)]


def _with_role(*roles: OperatorRole) -> Callable[[OperatorPrincipal], Awaitable[OperatorPrincipal]]:
    async def dependency(principal: CurrentOperator) -> OperatorPrincipal:
        if principal.role not in roles:
            raise OperatorForbiddenError(
                f"This needs the role {' or '.join(roles)}; you are {principal.role}.",
                extra={"roles": list(roles)},
            )
        return principal

    dependency.__name__ = "require_" + "_or_".join(roles)
    return dependency


OrderHandler = Annotated[OperatorPrincipal, Depends(_with_role(OperatorRole.OPERATOR, OperatorRole.ADMIN))]
SupportStaff = Annotated[OperatorPrincipal, Depends(_with_role(OperatorRole.SUPPORT, OperatorRole.ADMIN))]
AdminStaff = Annotated[OperatorPrincipal, Depends(_with_role(OperatorRole.ADMIN))]
TelegramGateway = Annotated[Caller, Depends(require_scope(ACT_AS_OPERATOR_SCOPE))]

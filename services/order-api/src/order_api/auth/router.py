"""``/v1/auth``: emailed one-time codes that upgrade to a full customer session; who am I; log out."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from order_api.auth import service
from order_api.auth.dependencies import CurrentCustomer, MailboxCheck
from order_api.auth.schemas import (
    EmailCodeCreate,
    EmailCodeRead,
    IssuedSessionRead,
    SessionCreate,
    SessionRead,
)
from servicekit.app import DbSession
from servicekit.errors import problem_responses

router = APIRouter(prefix="/v1/auth", tags=["auth"])


@router.post(
    "/email-code",
    operation_id="requestEmailCode",
    summary="Email a one-time code to prove the mailbox",
    description=(
        "Always answers `202 sent`, whether or not a customer has this email. When one does, a 6-digit "
        "code valid for `expires_in_seconds` is emailed; it replaces any earlier code. Limited per email "
        "and per client."
    ),
    status_code=status.HTTP_202_ACCEPTED,
    response_model=EmailCodeRead,
    responses=problem_responses(422, 429),
)
async def request_email_code(body: EmailCodeCreate, proof: MailboxCheck) -> EmailCodeRead:
    seconds = await service.request_email_code(proof=proof, email=body.email, locale=body.locale)
    return EmailCodeRead(expires_in_seconds=seconds)


@router.post(
    "/verify",
    operation_id="verifyEmailCode",
    summary="Exchange the emailed code for a full session",
    description=(
        "A full session reaches all of the customer's orders. A wrong, expired or used code answers `422` "
        "with code `email_code_invalid`; after too many wrong guesses the code is spent."
    ),
    response_model=IssuedSessionRead,
    responses=problem_responses(422, 429),
)
async def verify_email_code(body: SessionCreate, proof: MailboxCheck) -> IssuedSessionRead:
    verified = await service.verify_email_code(proof=proof, email=body.email, code=body.code)
    return IssuedSessionRead(
        session_token=verified.session.token,
        kind=verified.session.kind,
        expires_at=verified.session.expires_at,
        customer_id=verified.customer_id,
    )


@router.get(
    "/session",
    operation_id="getSession",
    summary="The session this request is made with",
    response_model=SessionRead,
    responses=problem_responses(401),
)
async def get_session(customer: CurrentCustomer, session: DbSession) -> SessionRead:
    stored = await service.get_customer_session(session=session, session_id=customer.session_id)
    return SessionRead(
        customer_id=customer.customer_id,
        kind=customer.kind,
        order_id=customer.order_id,
        expires_at=stored.expires_at,
    )


@router.post(
    "/logout",
    operation_id="logout",
    summary="End this session",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=problem_responses(401),
)
async def logout(customer: CurrentCustomer, session: DbSession) -> None:
    await service.revoke_session(session=session, session_id=customer.session_id)

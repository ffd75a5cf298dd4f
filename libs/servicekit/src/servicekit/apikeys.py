"""API keys between services.

A key looks like ``<prefix>_<random>``: the prefix names the calling service (``oa`` for order-api, ...), so a
leaked key is easy to recognise and to scan for. The receiving service is configured with the **hash** of
each key it accepts (``sha256:<hex>``), the caller's name and the key's scopes; several entries per caller
may be valid at once, which is how keys rotate with overlap. Keys are 256-bit random, so a fast hash is
enough (there is nothing to brute-force); comparison is constant-time over every configured entry.

``servicekit-apikey mint --prefix oa --name order-api --scope allocations:write`` prints a new key and
the entry to configure on the receiving side.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from desk_contracts.errors import ErrorCode
from servicekit.errors import DomainError
from servicekit.state import service_state


class ApiKeyEntry(BaseModel):
    """One accepted key, as configured on the receiving side."""

    name: str = Field(description="Who holds the key, e.g. 'order-api'.")
    hash: str = Field(pattern=r"^sha256:[0-9a-f]{64}$")
    scopes: list[str] = Field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated caller of a request."""

    name: str
    scopes: frozenset[str]


class ApiKeyMissingError(DomainError):
    status = 401
    code = ErrorCode.API_KEY_MISSING
    title = "API key required"


class ApiKeyInvalidError(DomainError):
    status = 401
    code = ErrorCode.API_KEY_INVALID
    title = "API key not accepted"


class ApiKeyRequiredError(DomainError):
    """A person's own token (an operator's, a customer's session) on a route only services' API keys reach:
    the token may be valid, but not here."""

    status = 403
    code = ErrorCode.API_KEY_REQUIRED
    title = "This route takes a service's API key"


class ScopeMissingError(DomainError):
    status = 403
    code = ErrorCode.SCOPE_MISSING
    title = "The API key lacks a required scope"


def mint_key(prefix: str) -> str:
    """A new random key ``<prefix>_<43 url-safe chars>``."""
    if not re.fullmatch(r"[a-z][a-z0-9]{1,15}", prefix):
        raise ValueError("prefix must be 2-16 lowercase letters or digits, starting with a letter")
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def hash_key(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


class ApiKeyVerifier:
    """Checks a presented key against the configured hashes, touching every entry (constant time)."""

    def __init__(
        self, entries: Sequence[ApiKeyEntry], *, personal_token_prefixes: Sequence[str] = ()
    ) -> None:
        """``personal_token_prefixes``: how the service's own personal tokens start (order-api's ``op_`` and
        ``cs_``), so such a token on an API-key route is told so rather than called an unknown key."""
        self._entries = [(bytes.fromhex(e.hash.removeprefix("sha256:")), e) for e in entries]
        self.personal_token_prefixes = tuple(personal_token_prefixes)

    def identify(self, presented: str) -> Caller | None:
        digest = hashlib.sha256(presented.encode()).digest()
        found: ApiKeyEntry | None = None
        for expected, entry in self._entries:
            if hmac.compare_digest(digest, expected) and found is None:
                found = entry
        if found is None:
            return None
        return Caller(name=found.name, scopes=frozenset(found.scopes))


_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer <prefix>_<random>`")


def _identify_caller(request: Request, credentials: HTTPAuthorizationCredentials | None) -> Caller:
    if credentials is None or not credentials.credentials:
        raise ApiKeyMissingError("Send an API key as 'Authorization: Bearer <key>'.")
    verifier = service_state(request.app).api_key_verifier
    caller = verifier.identify(credentials.credentials)
    if caller is None:
        if credentials.credentials.startswith(verifier.personal_token_prefixes):
            raise ApiKeyRequiredError(
                "This route is for services' API keys; a personal token (an operator's or a customer's) "
                "cannot use it."
            )
        raise ApiKeyInvalidError("The API key is unknown or has been retired.")
    request.state.caller = caller
    return caller


def caller_with_scope(
    request: Request, credentials: HTTPAuthorizationCredentials | None, scope: str
) -> Caller:
    """The caller of this request if its key carries ``scope``; ``401`` without a known key, ``403`` without
    the scope."""
    caller = _identify_caller(request, credentials)
    if scope not in caller.scopes:
        raise ScopeMissingError(f"This call needs the scope '{scope}'.", extra={"scope": scope})
    return caller


BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
"""The ``Authorization: Bearer`` credentials of a request, if any (for :func:`caller_with_scope`)."""


async def current_caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    """The caller of this request, by its API key; ``401`` when absent or unknown."""
    return _identify_caller(request, credentials)


def require_scope(scope: str) -> Callable[..., Awaitable[Caller]]:
    """A dependency that admits only callers whose key carries ``scope`` (``403`` otherwise).

    It identifies the caller itself rather than through ``current_caller``: every dependency level costs
    FastAPI about ten microseconds to solve, and this one guards the services' busiest calls."""

    async def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Caller:
        return caller_with_scope(request, credentials, scope)

    dependency.__name__ = f"require_scope_{scope.replace(':', '_').replace('-', '_')}"
    return dependency


def main(argv: Sequence[str] | None = None) -> None:
    """``servicekit-apikey``: mint a key, or hash an existing one."""
    parser = argparse.ArgumentParser(prog="servicekit-apikey", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    mint = sub.add_parser("mint", help="mint a new key and print it with the entry for the receiver")
    mint.add_argument("--prefix", required=True, help="short name of the calling service, e.g. oa")
    mint.add_argument("--name", required=True, help="caller name recorded on the receiving side")
    mint.add_argument("--scope", action="append", default=[], help="scope to grant (repeatable)")
    hashed = sub.add_parser("hash", help="print the hash of a key read from stdin")
    hashed.add_argument("key", nargs="?", help="the key (read from stdin when omitted)")
    args = parser.parse_args(argv)
    if args.command == "mint":
        key = mint_key(args.prefix)
        entry = ApiKeyEntry(name=args.name, hash=hash_key(key), scopes=args.scope)
        print(json.dumps({"key": key, "entry": entry.model_dump()}, indent=2))
    else:
        key = args.key if args.key else input().strip()
        print(hash_key(key))


if __name__ == "__main__":
    main()

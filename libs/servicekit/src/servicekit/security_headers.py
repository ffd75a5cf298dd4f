"""The security headers every response of every service carries, in one pure-ASGI layer.

- ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: no-referrer``, ``X-Frame-Options: DENY``;
- ``Content-Security-Policy``: nothing may be loaded or framed (``default-src 'none'; frame-ancestors
  'none'``: the services answer JSON), except on the API documentation pages, which load Swagger UI and ReDoc
  from the service itself (``servicekit.docs``) and run an inline script: from this origin only;
- ``Cache-Control: no-store`` unless the route chose its own: answers carry tokens and personal data (an
  order's session token, a payout address, an operator's token), so nothing is kept by a browser or a proxy
  unless a route says it may be;
- ``Strict-Transport-Security`` when configured (``hsts_max_age_seconds``: the service is reached over
  HTTPS only).

It wraps everything else, so errors answered by the outermost layers (a 500, a refused CORS preflight) carry
the headers too.
"""

from __future__ import annotations

from collections.abc import Collection

from starlette.types import ASGIApp, Message, Receive, Scope, Send

Header = tuple[bytes, bytes]

API_POLICY = b"default-src 'none'; frame-ancestors 'none'"
"""The services answer JSON (and Prometheus text): a browser is to load and frame nothing from them."""

DOCS_POLICY = (
    b"default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    b"img-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; frame-ancestors 'none'"
)
"""The documentation pages: Swagger UI and ReDoc, their assets and the OpenAPI document from this origin and
no other, an inline start-up script and inline styles (both draw with them), ReDoc's search in a worker it
makes from a blob. ReDoc's footer logo, which its script asks of ``cdn.redoc.ly``, is blocked: the page
works without it."""

NO_STORE: Header = (b"cache-control", b"no-store")


class SecurityHeadersMiddleware:
    """Adds the security headers (module docstring) to every HTTP response."""

    def __init__(self, app: ASGIApp, *, docs_paths: Collection[str], hsts_max_age_seconds: int = 0) -> None:
        self.app = app
        self.docs_paths = frozenset(docs_paths)
        common: list[Header] = [
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
            (b"x-frame-options", b"DENY"),
        ]
        if hsts_max_age_seconds > 0:
            common.append((b"strict-transport-security", b"max-age=%d" % hsts_max_age_seconds))
        self.api_headers = [*common, (b"content-security-policy", API_POLICY)]
        self.docs_headers = [*common, (b"content-security-policy", DOCS_POLICY)]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        added = self.docs_headers if scope["path"] in self.docs_paths else self.api_headers

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers: list[Header] = list(message.get("headers", ()))
                if not any(name.lower() == b"cache-control" for name, _ in headers):
                    headers.append(NO_STORE)
                headers.extend(added)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)

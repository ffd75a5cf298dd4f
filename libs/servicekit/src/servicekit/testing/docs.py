"""Checks that a service's documentation pages (``servicekit.docs``) need nothing but the service itself: the
page HTML is parsed as a browser reads it, every URL it references is fetched, and the policy is read."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import PurePosixPath

import httpx

from servicekit.docs import ASSETS_PATH, REDOC_PATH, SWAGGER_UI_PATH

ASSET_TYPES = {
    ".js": ("text/javascript", "application/javascript"),
    ".css": ("text/css",),
    ".png": ("image/png",),
}
POLICY_SOURCES = {"'self'", "'none'", "'unsafe-inline'", "data:", "blob:"}
"""What a documentation page's Content-Security-Policy may name: this origin, inline code, and the data: and
blob: URLs a page makes itself; no host."""
OUTSIDE_URL = re.compile(r"(?:https?:)?//[^\s'\"<>]+")


class ReferencedUrls(HTMLParser):
    """Every URL a page makes the browser load (``src`` and ``href``), and the text of its inline scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline_scripts.append(data)


async def assert_docs_served_offline(client: httpx.AsyncClient) -> None:
    """``/docs`` and ``/redoc`` name no outside host; every asset they reference is served by the service
    (``200``, its content type, revalidated by its ``ETag``); their policy lets the browser load nothing from
    anywhere else; and each page starts its viewer on the service's own OpenAPI document."""
    for page, suffixes in ((SWAGGER_UI_PATH, [".css", ".js", ".png"]), (REDOC_PATH, [".js", ".png"])):
        answer = await client.get(page)
        assert answer.status_code == 200, page
        assert answer.headers["content-type"].startswith("text/html"), page
        assert OUTSIDE_URL.findall(answer.text) == [], page
        parsed = ReferencedUrls()
        parsed.feed(answer.text)
        assert all(url.startswith(f"{ASSETS_PATH}/") for url in parsed.urls), parsed.urls
        assert sorted(PurePosixPath(url).suffix for url in parsed.urls) == suffixes, parsed.urls
        for url in parsed.urls:
            served = await client.get(url)
            assert served.status_code == 200, url
            assert served.headers["content-type"].split(";")[0] in ASSET_TYPES[PurePosixPath(url).suffix], url
            assert len(served.content) > 1000, url
            revalidated = await client.get(url, headers={"If-None-Match": served.headers["etag"]})
            assert revalidated.status_code == 304, url
        if page == SWAGGER_UI_PATH:
            assert "SwaggerUIBundle({" in "".join(parsed.inline_scripts)
            assert "url: '/openapi.json'" in "".join(parsed.inline_scripts)
        else:
            assert '<redoc spec-url="/openapi.json">' in answer.text
        directives = [directive.split() for directive in answer.headers["content-security-policy"].split(";")]
        assert {source for _, *sources in directives for source in sources} <= POLICY_SOURCES, page
        assert ["default-src", "'none'"] in directives
        assert ["frame-ancestors", "'none'"] in directives
        assert answer.headers["x-frame-options"] == "DENY"

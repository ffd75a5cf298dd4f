"""The API documentation pages, Swagger UI (``/docs``) and ReDoc (``/redoc``), with every asset they load
served by the service itself under :data:`ASSETS_PATH`: they work on a desk without internet, and their
Content-Security-Policy names no outside host (``servicekit.security_headers.DOCS_POLICY``). One request
still leaves: the bundled ReDoc script draws its "API docs by Redocly" footer logo from ``cdn.redoc.ly``; the
policy blocks it (the browser logs a CSP violation) and the page works without it.

FastAPI's own pages load Swagger UI, ReDoc, a favicon and Google fonts from CDNs; these are the same pages
pointed at the copies the ``fastapi-offline`` package ships (Swagger UI 5, ReDoc 2, FastAPI's favicon).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Final

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.types import Scope

SWAGGER_UI_PATH: Final = "/docs"
SWAGGER_UI_OAUTH2_REDIRECT_PATH: Final = "/docs/oauth2-redirect"
REDOC_PATH: Final = "/redoc"
ASSETS_PATH: Final = "/docs-assets"

ASSETS_DIRECTORY: Final = Path(str(files("fastapi_offline") / "static"))
"""``swagger-ui-bundle.js``, ``swagger-ui.css``, ``redoc.standalone.js``, ``favicon.png``."""

SWAGGER_UI_PARAMETERS: Final = {"validatorUrl": None}
"""Laid over FastAPI's defaults: Swagger UI would otherwise send the document to validator.swagger.io."""


class DocsAssets(StaticFiles):
    """The documentation's static files. A browser keeps them but asks again each time (``no-cache``
    answered ``304`` by their ``ETag``), so an upgraded package is never shadowed by a stale copy."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers["cache-control"] = "no-cache"
        return response


def install_docs(app: FastAPI, *, openapi_url: str) -> list[str]:
    """Serve Swagger UI and ReDoc for the document at ``openapi_url``, and their assets; returns the paths of
    the pages (the ones the documentation's Content-Security-Policy applies to)."""
    app.mount(ASSETS_PATH, DocsAssets(directory=ASSETS_DIRECTORY), name="docs-assets")

    def asset(request: Request, name: str) -> str:
        return f"{request.scope.get('root_path', '')}{ASSETS_PATH}/{name}"

    @app.get(SWAGGER_UI_PATH, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=f"{root}{SWAGGER_UI_OAUTH2_REDIRECT_PATH}",
            swagger_js_url=asset(request, "swagger-ui-bundle.js"),
            swagger_css_url=asset(request, "swagger-ui.css"),
            swagger_favicon_url=asset(request, "favicon.png"),
            swagger_ui_parameters=SWAGGER_UI_PARAMETERS,
        )

    @app.get(SWAGGER_UI_OAUTH2_REDIRECT_PATH, include_in_schema=False)
    async def swagger_ui_oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(REDOC_PATH, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        return get_redoc_html(
            openapi_url=f"{request.scope.get('root_path', '')}{openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=asset(request, "redoc.standalone.js"),
            redoc_favicon_url=asset(request, "favicon.png"),
            with_google_fonts=False,
        )

    return [SWAGGER_UI_PATH, SWAGGER_UI_OAUTH2_REDIRECT_PATH, REDOC_PATH]

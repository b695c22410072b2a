"""The API's documentation pages, Swagger UI at ``/docs`` and ReDoc at ``/redoc``, served offline.

FastAPI's own pages load their scripts, styles and fonts from a CDN, so they are blank on a machine
without internet. Here the same pages point at the copies the ``fastapi-offline`` package ships
(Swagger UI bundle and CSS, ReDoc standalone, favicon), mounted at ``/docs/assets``; nothing on either
page is fetched from another host (the Swagger validator badge is off too). The package's own
``FastAPIOffline`` factory builds the whole app and always serves the pages open; Aura builds its app
itself and puts the pages behind an admin key outside development (``AURA_DOCS_PUBLIC``), so only the
package's files are used. The assets are vendor code with nothing of ours in them, so they are open.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

ASSETS_URL = "/docs/assets"
OPENAPI_URL = "/openapi.json"

router = APIRouter(tags=["system"])  # open in development, admin elsewhere (serving/app.py)


def assets() -> StaticFiles:
    """The package's static files (ETag and Last-Modified, so browsers revalidate rather than refetch)."""
    return StaticFiles(directory=str(files("fastapi_offline").joinpath("static")))


@router.get("/docs", include_in_schema=False)
async def swagger_ui(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    return get_swagger_ui_html(
        openapi_url=root + OPENAPI_URL, title=f"{request.app.title} - docs",
        swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
        swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
        oauth2_redirect_url=None,  # API keys, no OAuth2 flow
        swagger_ui_parameters={"validatorUrl": None},  # the badge would call the public validator
    )


@router.get("/redoc", include_in_schema=False)
async def redoc(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    return get_redoc_html(
        openapi_url=root + OPENAPI_URL, title=f"{request.app.title} - ReDoc",
        redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
        redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
        with_google_fonts=False,  # ReDoc falls back to the system fonts
    )

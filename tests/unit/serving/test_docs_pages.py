"""serving/routes/docs.py: /docs and /redoc reference only assets the API itself serves (no CDN, no
web fonts, no validator badge), and every one of those answers 200 with the type a browser needs."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from aura.settings import Settings
from serving.app import create_app

ASSET_TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/png"}


@pytest.fixture(scope="module")
def client() -> TestClient:
    # the pages need no store: no lifespan (no `with`), so nothing connects
    return TestClient(create_app(Settings().replace(docs_public=True, redis_prefix="docs-pages")))


def referenced(html: str) -> list[str]:
    """Every URL the page makes the browser load: src/href attributes, Swagger's and ReDoc's spec URL."""
    return re.findall(r'(?:src|href|spec-url)="([^"]+)"', html) + re.findall(r"url: '([^']+)'", html)


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_page_references_only_local_assets_that_answer(client, page):
    r = client.get(page)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "http://" not in r.text and "https://" not in r.text and "//cdn" not in r.text
    urls = referenced(r.text)
    assert "/openapi.json" in urls, urls
    assets = [u for u in urls if u != "/openapi.json"]
    assert len(assets) >= (3 if page == "/docs" else 2), urls  # script (+ stylesheet) + favicon
    for url in assets:
        assert url.startswith("/docs/assets/"), url
        a = client.get(url)
        assert a.status_code == 200, url
        suffix = url[url.rfind("."):]
        assert ASSET_TYPES[suffix] in a.headers["content-type"], (url, a.headers["content-type"])
        assert len(a.content) > 1000, url  # the real file, not an empty stub
    spec = client.get("/openapi.json")
    assert spec.status_code == 200 and spec.json()["paths"]


def test_scripts_are_the_real_bundles(client):
    assert b"SwaggerUIBundle" in client.get("/docs/assets/swagger-ui-bundle.js").content
    assert b"Redoc" in client.get("/docs/assets/redoc.standalone.js").content
    assert client.get("/docs/assets/nothing-here.js").status_code == 404
    assert "validatorUrl" in client.get("/docs").text  # set to null: no call to the public validator

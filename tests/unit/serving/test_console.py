"""The console mount (serving/console.py): cache headers, SPA fallback, containment, missing build."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from serving.console import CSP, IMMUTABLE, MOUNT, NO_CACHE, console_app


def client(dist: Path) -> TestClient:
    app = FastAPI()
    app.mount(MOUNT, console_app(dist))
    return TestClient(app)


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    d = tmp_path / "dist"
    (d / "assets").mkdir(parents=True)
    (d / "index.html").write_text("<!doctype html><title>console</title>")
    (d / "assets" / "index-abc123.js").write_text("console.log(1)")
    (d / "assets" / "big-def456.css").write_text("body { color: red; }\n" * 500)
    (d / "favicon.svg").write_text("<svg/>")
    (tmp_path / "secret.txt").write_text("outside")
    return d


def test_index_is_not_cached_and_has_a_policy(dist: Path) -> None:
    r = client(dist).get("/console/")
    assert r.status_code == 200 and "<title>console</title>" in r.text
    assert r.headers["cache-control"] == NO_CACHE
    assert r.headers["content-security-policy"] == CSP
    assert r.headers["content-type"].startswith("text/html")


def test_hashed_assets_are_cached_for_a_year(dist: Path) -> None:
    r = client(dist).get("/console/assets/index-abc123.js")
    assert r.status_code == 200 and r.text == "console.log(1)"
    assert r.headers["cache-control"] == IMMUTABLE
    assert r.headers["content-type"].startswith("text/javascript")
    other = client(dist).get("/console/favicon.svg")  # not hashed: revalidated
    assert other.status_code == 200 and other.headers["cache-control"] == NO_CACHE


def test_any_other_path_is_the_single_page_app(dist: Path) -> None:
    for path in ("/console/overview", "/console/profiles/u1", "/console/index.html"):
        r = client(dist).get(path)
        assert r.status_code == 200 and "<title>console</title>" in r.text, path


def test_bare_mount_redirects_to_the_slash(dist: Path) -> None:
    r = client(dist).get("/console", follow_redirects=False)
    assert r.status_code in (307, 308) and r.headers["location"].endswith("/console/")


def test_a_missing_hashed_asset_is_a_404_not_the_page(dist: Path) -> None:
    r = client(dist).get("/console/assets/index-old999.js")
    assert r.status_code == 404 and "<title>" not in r.text


def test_nothing_outside_dist_is_served(dist: Path) -> None:
    for path in ("/console/../secret.txt", "/console/%2e%2e/secret.txt", "/console/assets/../../secret.txt"):
        r = client(dist).get(path)
        assert "outside" not in r.text, path


def test_writes_are_refused(dist: Path) -> None:
    r = client(dist).post("/console/", content=b"{}")
    assert r.status_code == 405


def test_missing_build_says_how_to_build(tmp_path: Path) -> None:
    r = client(tmp_path / "nothing").get("/console/")
    assert r.status_code == 404
    assert "make console" in r.text and r.headers["content-type"].startswith("text/html")


def test_assets_are_gzipped_for_clients_that_accept_it(dist: Path) -> None:
    c = client(dist)
    r = c.get("/console/assets/big-def456.css", headers={"Accept-Encoding": "gzip"})
    assert r.status_code == 200 and r.headers["content-encoding"] == "gzip"
    assert r.text.startswith("body { color: red; }") and r.headers["cache-control"] == IMMUTABLE
    plain = c.get("/console/assets/big-def456.css", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers and len(plain.content) == 21 * 500

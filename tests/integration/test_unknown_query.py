"""Every route refuses a query parameter it does not declare with a 422 naming it (serving/query.py),
after authentication (401 first) and before anything else is validated or done; the open mail
tracking routes are the one exception (mail clients and scanners fetch them)."""

from __future__ import annotations

import re

import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.routes import campaigns

pytestmark = [pytest.mark.integration]

FASTAPI_OWN = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}  # FastAPI's documents


def test_every_route_refuses_an_unknown_query_parameter(isolated, api_key):
    app = create_app(isolated)
    tracking = {r.endpoint for r in campaigns.tracking_router.routes}
    admin = {"X-API-Key": api_key("admin")}
    checked = 0
    with TestClient(app, raise_server_exceptions=False) as c:
        for ctx in iter_route_contexts(app.routes):
            if not isinstance(ctx.original_route, APIRoute) or ctx.path in FASTAPI_OWN or ctx.endpoint in tracking:
                continue
            path = re.sub(r"\{[^}]+\}", "x", ctx.path)
            for method in sorted(ctx.methods):
                r = c.request(method, f"{path}?limit=5&zz_unknown=1", headers=admin)
                assert r.status_code == 422, (method, path, r.status_code, r.text)
                locs = [e["loc"] for e in r.json()["detail"]]
                assert ["query", "zz_unknown"] in locs, (method, path, r.text)
                assert all(loc[0] == "query" for loc in locs), (method, path, r.text)  # before body, path
                checked += 1
        assert checked > 100, checked
        # known parameters still answer; authentication still comes first
        ok = c.get("/v1/recommendations/trending?limit=3&category=c", headers=admin)
        assert ok.status_code == 200, ok.text
        assert c.get("/v1/analytics/revenue?timeframe=1h", headers=admin).status_code == 200
        assert c.get("/v1/health?verbose=1").status_code == 422
        assert c.get("/v1/profiles/u1?zz_unknown=1").status_code == 401
        assert c.get("/v1/profiles/u1?zz_unknown=1", headers={"X-API-Key": "nonsense"}).status_code == 401
        # the tracking redirect keeps working whatever a mail client appends
        click = c.get("/v1/campaigns/track/click/not-a-token?url=/&utm_source=mail", follow_redirects=False)
        assert (click.status_code, click.json()) == (404, {"detail": "unknown link"})  # the route itself answered

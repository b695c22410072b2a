"""API keys against the real app and stores: 401/403 for every route group (found by walking
app.routes, so new groups are covered without touching this file), revocation, per-key rate
limits (429 + Retry-After), body size limits (413), CORS, and auth switched off."""

from __future__ import annotations

import re
import time

import pytest
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient

from aura.apikeys import parse_token
from serving.app import create_app
from serving.security import ADMIN, EVENTS, READ, UNAUTHORIZED, required_scope
from tests.conftest import wait_for

pytestmark = [pytest.mark.integration]

OPEN_PATHS = {"/v1/health", "/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc",
              # campaign open pixel and click redirect: opened from mail clients, the signed token is the credential
              "/v1/campaigns/track/open/{token}.gif", "/v1/campaigns/track/click/{token}"}
ALL_SCOPES = (READ, EVENTS, ADMIN)


def protected_routes(app):
    """(method, concrete path, required scope) of every route; fails on an unprotected one."""
    out = []
    for ctx in iter_route_contexts(app.routes):
        if ctx.path in OPEN_PATHS or not ctx.methods:
            continue
        path = re.sub(r"\{[^}]+\}", "zz-auth-check", ctx.path)
        for method in sorted(ctx.methods - {"HEAD", "OPTIONS"}):
            scope = required_scope(ctx, method)
            assert scope in ALL_SCOPES, f"{method} {ctx.path} is not covered by any scope guard"
            out.append((method, path, scope))
    return out


@pytest.fixture
def client(isolated):
    # this file walks every route without a key: the failed-attempt throttle would answer 429 early
    with TestClient(create_app(isolated.replace(failed_auth_burst=100_000)), raise_server_exceptions=False) as c:
        yield c


def call(client, method, path, token=None, bearer=False):
    headers = {}
    if token is not None:
        headers = {"Authorization": f"Bearer {token}"} if bearer else {"X-API-Key": token}
    kwargs = {"json": {}} if method in ("POST", "PUT", "PATCH") else {}
    return client.request(method, path, headers=headers, **kwargs)


def test_every_route_group_answers_401_without_a_key_and_403_with_the_wrong_scope(client, api_key):
    routes = protected_routes(client.app)
    groups = {path.split("/")[2] for _m, path, _s in routes if path.startswith("/v1/")}
    assert {"stats", "profiles", "events"} <= groups  # the walk really found the groups
    keys = {scope: api_key(scope) for scope in ALL_SCOPES}
    bad = []
    for method, path, scope in routes:
        r = call(client, method, path)
        if r.status_code != 401 or "WWW-Authenticate" not in r.headers or "detail" not in r.json():
            bad.append((method, path, "no key", r.status_code))
        r = call(client, method, path, token=keys[READ][:-3] + "AAA")  # well-formed, wrong secret
        if r.status_code != 401:
            bad.append((method, path, "wrong secret", r.status_code))
        for granted in ALL_SCOPES:
            r = call(client, method, path, token=keys[granted], bearer=granted == EVENTS)
            allowed = granted == scope or granted == ADMIN
            if allowed and r.status_code in (401, 403):
                bad.append((method, path, f"{granted} key refused", r.status_code, r.text[:100]))
            if not allowed and (r.status_code != 403 or "lacks" not in r.json()["detail"]):
                bad.append((method, path, f"{granted} key let through", r.status_code))
    assert not bad, bad


def test_get_routes_never_need_more_than_read_unless_admin_only(client):
    for method, path, scope in protected_routes(client.app):
        if method == "GET":
            assert scope in (READ, ADMIN), (path, scope)
        else:
            assert scope in (EVENTS, ADMIN, READ), (method, path, scope)
    scopes = {(m, p): s for m, p, s in protected_routes(client.app)}
    assert scopes[("POST", "/v1/events")] == EVENTS
    assert scopes[("POST", "/v1/catalog/items")] == ADMIN
    assert scopes[("GET", "/v1/stats")] == ADMIN
    assert scopes[("POST", "/v1/profiles")] == EVENTS and scopes[("DELETE", "/v1/profiles/zz-auth-check")] == ADMIN
    assert scopes[("PUT", "/v1/profiles/zz-auth-check/preferences")] == EVENTS
    assert scopes[("POST", "/v1/segments")] == ADMIN and scopes[("POST", "/v1/content")] == ADMIN
    assert scopes[("POST", "/v1/content/recommend")] == READ


def test_malformed_unknown_and_revoked_keys_get_401(client, api_key, key_store):
    path = "/v1/profiles/nobody-here/activity"
    for token in ("nonsense", "aura_000000000000_" + "A" * 43, ""):
        assert call(client, "GET", path, token=token).status_code == 401
    token = api_key(READ)
    assert call(client, "GET", path, token=token).status_code == 404  # authenticated, no such user
    assert call(client, "GET", path, token=token).status_code == 404  # now from the Redis cache
    revoked = api_key(READ)
    assert key_store.revoke(parse_token(revoked))  # revoked before first use: Cassandra says so
    r = call(client, "GET", path, token=revoked)
    assert r.status_code == 401  # the same text as an unknown key: nothing tells which ids exist or were revoked
    assert r.json()["detail"] == call(client, "GET", path, token="nonsense").json()["detail"] == UNAUTHORIZED
    assert not key_store.revoke("000000000000")  # unknown id


def test_revocation_invalidates_the_redis_cache_at_once(client, api_key, key_store, redis_client):
    from aura.apikeys import KeyStore
    from aura.keys import RedisKeys

    token = api_key(READ)
    key_id = parse_token(token)
    assert call(client, "GET", "/v1/profiles/x/activity", token=token).status_code == 404
    cached = RedisKeys(client.app.state.aura.settings.redis.prefix).api_key(key_id)
    assert redis_client.hget(cached, "revoked") == "0"
    store = KeyStore(client.app.state.aura.settings, key_store.session, redis_client)
    assert store.revoke(key_id)
    assert not redis_client.exists(cached)
    # the process admits the key from its lease for at most api_key_local_ttl_s (docs/api.md), then asks Redis
    ttl = client.app.state.aura.settings.auth.key_local_ttl_s
    started = time.monotonic()
    wait_for(lambda: call(client, "GET", "/v1/profiles/x/activity", token=token).status_code == 401,
             timeout=ttl + 5, interval=0.05, what="revocation seen by the API process")
    assert time.monotonic() - started < ttl + 5
    assert redis_client.hget(cached, "revoked") == "1"


def test_a_fast_key_is_admitted_from_a_local_lease_without_a_redis_call_per_request(isolated, api_key):
    """A key with a high rate takes a lease of rate x rate_limit_lease_s requests from Redis at once, so
    the next requests of the lease make no auth call to Redis; a slow key (lease of 1) makes one each."""
    s = isolated.replace(**{"api_key_local_ttl_s": 60.0})  # no lease expiry on a slow machine
    fast = api_key(READ, rate=1000.0, burst=2000)  # lease: 1000 x 0.05 s = 50 requests
    slow = api_key(READ, rate=10.0, burst=2000)  # lease: 10 x 0.05 s < 1 -> 1 request
    with TestClient(create_app(s)) as client:
        auth = client.app.state.aura.auth
        script, calls = auth.script, []

        async def counting(*args, **kwargs):
            calls.append(kwargs.get("keys"))
            return await script(*args, **kwargs)

        auth.script = counting
        for token, expected in ((fast, 0), (slow, 10)):
            assert call(client, "GET", "/v1/profiles/x/activity", token=token).status_code == 404
            before = len(calls)
            for _ in range(10):
                assert call(client, "GET", "/v1/profiles/x/activity", token=token).status_code == 404
            assert len(calls) - before == expected, (token[:17], calls[before:])


def test_rate_limit_answers_429_with_retry_after_and_recovers(client, api_key):
    token = api_key(READ, rate=1.0, burst=3)
    codes = [call(client, "GET", "/v1/profiles/x/activity", token=token).status_code for _ in range(5)]
    assert codes[:3] == [404, 404, 404] and codes[3:] == [429, 429]
    r = call(client, "GET", "/v1/profiles/x/activity", token=token)
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1 and "rate limit" in r.json()["detail"]
    time.sleep(1.1)  # one interval at 1/s
    assert call(client, "GET", "/v1/profiles/x/activity", token=token).status_code == 404
    other = api_key(READ, rate=1.0, burst=1)  # limits are per key
    assert call(client, "GET", "/v1/profiles/x/activity", token=other).status_code == 404


def test_the_limit_is_shared_by_every_api_process(isolated, api_key):
    token = api_key(READ, rate=0.5, burst=4)
    with TestClient(create_app(isolated)) as a, TestClient(create_app(isolated)) as b:
        codes = [call(c, "GET", "/v1/profiles/x/activity", token=token).status_code for c in (a, b, a, b, a, b)]
    assert codes == [404, 404, 404, 404, 429, 429]


def test_oversized_bodies_get_413_before_auth_and_routing(isolated, api_key):
    s = isolated.replace(**{"max_body_bytes": 1000})
    token = api_key(EVENTS)
    with TestClient(create_app(s), raise_server_exceptions=False) as c:
        big = b'{"pad": "' + b"x" * 2000 + b'"}'
        r = c.post("/v1/events", content=big, headers={"X-API-Key": token, "content-type": "application/json"})
        assert r.status_code == 413 and "larger than 1000" in r.json()["detail"]

        def chunks():  # no Content-Length: cut while reading
            yield b'{"pad": "'
            for _ in range(20):
                yield b"x" * 100
            yield b'"}'

        r = c.post("/v1/events", content=chunks(), headers={"X-API-Key": token, "content-type": "application/json"})
        assert r.status_code == 413 and "detail" in r.json()
        r = c.post("/v1/events", json={}, headers={"X-API-Key": token})
        assert r.status_code == 422  # small bodies pass on to validation


def test_cors_is_configurable(isolated, api_key):
    s = isolated.replace(**{"cors_origins": "https://shop.example, https://admin.example"})
    token = api_key(READ)
    with TestClient(create_app(s)) as c:
        pre = c.options("/v1/profiles/x/activity", headers={
            "Origin": "https://shop.example", "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "x-api-key"})
        assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == "https://shop.example"
        r = c.get("/v1/profiles/x/activity", headers={"Origin": "https://evil.example", "X-API-Key": token})
        assert "access-control-allow-origin" not in r.headers
        r = c.get("/v1/profiles/x/activity", headers={"Origin": "https://admin.example", "X-API-Key": token})
        assert r.headers["access-control-allow-origin"] == "https://admin.example"
        assert "X-Aura-Degraded" in r.headers["access-control-expose-headers"]
    with TestClient(create_app(isolated)) as c:  # default: no CORS headers at all
        r = c.get("/v1/health", headers={"Origin": "https://shop.example"})
        assert "access-control-allow-origin" not in r.headers


def test_auth_can_be_switched_off(isolated):
    s = isolated.replace(**{"auth_enabled": False})
    with TestClient(create_app(s)) as c:
        assert c.get("/v1/profiles/x/activity").status_code == 404
        assert c.get("/v1/stats").status_code == 200


def test_health_and_metrics_are_open_stats_are_admin(client, api_key):
    assert client.get("/v1/health").status_code in (200, 503)
    assert call(client, "GET", "/v1/profiles/x/activity", token=api_key(READ)).status_code == 404
    m = client.get("/metrics")
    assert m.status_code == 200 and m.headers["content-type"].startswith("text/plain")
    bucket = ('aura_http_request_duration_seconds_bucket{le="0.005",method="GET",'
              'route="/v1/profiles/{user_id}/activity"}')
    assert bucket in m.text
    assert 'aura_http_responses_total{method="GET",route="/v1/profiles/{user_id}/activity",status="4xx"}' in m.text
    assert "aura_deadletters" in m.text and "aura_breaker_open" in m.text
    assert call(client, "GET", "/v1/stats", token=api_key(READ)).status_code == 403
    st = call(client, "GET", "/v1/stats", token=api_key(ADMIN)).json()
    assert st["breakers"]["redis"]["state"] == "closed" and st["counters_stale"] is False


def test_metrics_can_require_admin(isolated, api_key):
    s = isolated.replace(**{"metrics_public": False})
    with TestClient(create_app(s)) as c:
        assert c.get("/metrics").status_code == 401
        assert c.get("/metrics", headers={"X-API-Key": api_key(READ)}).status_code == 403
        assert c.get("/metrics", headers={"X-API-Key": api_key(ADMIN)}).status_code == 200


def test_metrics_and_docs_need_admin_outside_development(isolated, api_key):
    s = isolated.replace(environment="production", admin_token="a-real-secret-" + "x" * 24)
    admin, read = {"X-API-Key": api_key(ADMIN)}, {"X-API-Key": api_key(READ)}
    with TestClient(create_app(s)) as c:
        for path in ("/metrics", "/openapi.json", "/docs", "/redoc"):
            assert c.get(path).status_code == 401, path
            assert c.get(path, headers=read).status_code == 403, path
            assert c.get(path, headers=admin).status_code == 200, path
        assert c.get("/openapi.json", headers=admin).json()["paths"]
        assert c.get("/docs/assets/swagger-ui.css").status_code == 200  # vendor files, open
    with TestClient(create_app(s.replace(metrics_public=True, docs_public=True))) as c:
        assert c.get("/metrics").status_code == 200 and c.get("/openapi.json").status_code == 200


def test_cli_creates_lists_and_revokes_keys(isolated, client):
    import os
    import subprocess
    import sys

    from aura.settings import REPO_ROOT, settings_env

    env = {**os.environ, **settings_env(isolated)}

    def aura(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "aura.cli", "keys", *args], cwd=REPO_ROOT, env=env,
                              capture_output=True, text=True, timeout=60)

    made = aura("create", "--scope", "read", "--scope", "events", "--name", "cli-test", "--rate", "50")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip().splitlines()[-1]
    key_id = parse_token(token)
    assert key_id is not None
    listed = aura("list")
    line = next(ln for ln in listed.stdout.splitlines() if ln.startswith(key_id))
    assert "active" in line and "events,read" in line and "cli-test" in line
    assert call(client, "GET", "/v1/profiles/x/activity", token=token).status_code == 404
    assert call(client, "GET", "/v1/stats", token=token).status_code == 403
    assert aura("revoke", key_id).returncode == 0
    assert call(client, "GET", "/v1/profiles/x/activity", token=token).status_code == 401  # the cache was dropped
    assert "revoked" in next(ln for ln in aura("list").stdout.splitlines() if ln.startswith(key_id))
    assert aura("revoke", "000000000000").returncode == 1
    assert aura("create", "--scope", "read", "--rate", "0").returncode == 2

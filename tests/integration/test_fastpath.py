"""The ASGI fast path (serving/fastpath.py) answers exactly as the FastAPI routes do.

Two apps over the same real stores, the API as it is and the same app without the fast path middleware
(``fastapi_only``: FastAPI's own routing, the oracle), get the same requests; status, body bytes and
every response header must be equal: success, 404s, 422s (path and query parameters), 401 (no key,
malformed, unknown, wrong scheme), 403 (wrong scope), 429 with Retry-After, CORS, degraded answers
(Redis down -> Cassandra; both down -> stale popular list and 503s), and the Prometheus latency label.
The fast path is also shown to have answered (it is counted), and to leave unknown paths, HEAD and
shadowed routes to FastAPI."""

from __future__ import annotations

import random
import re
import types
import uuid
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from aura.apikeys import parse_token
from aura.keys import RedisKeys
from aura.state import profile_codec
from aura.state.profiles import Profile
from serving import fastpath
from serving.app import create_app
from serving.metrics import REQUEST_LATENCY
from serving.routes import profiles as profile_routes
from serving.routes import recommendations as recs_routes
from tests.integration.test_degradation import free_port
from tests.integration.test_recs_serving import seed as seed_recs

pytestmark = [pytest.mark.integration]

ORIGIN = "https://shop.example"
FROZEN_S = 1_800_000_000.0  # trending and engagement decay with the clock: the same "now" for both apps
RANDOM_ID = re.compile(rb'("recommendation_id":"[^"]*:)[0-9a-f]{16}"')


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Paths the fast path answered (its ``answer`` wrapped); clocks of the routes frozen."""
    seen: list[str] = []
    real = fastpath.FastPath.answer

    async def answer(hot: Any, request: Any, state: Any, path_params: Any) -> Any:
        seen.append(request.url.path)
        return await real(hot, request, state, path_params)

    monkeypatch.setattr(fastpath.FastPath, "answer", staticmethod(answer))
    clock = types.SimpleNamespace(time=lambda: FROZEN_S)
    monkeypatch.setattr(recs_routes, "time", clock)
    monkeypatch.setattr(profile_routes, "time", clock)
    return seen


def fastapi_only(app: FastAPI) -> FastAPI:
    """``app`` without the fast path middleware, so that FastAPI's routing answers every request (call it
    before the app first starts: Starlette builds its middleware stack then)."""
    app.user_middleware = [m for m in app.user_middleware if m.cls is not fastpath.FastPath]
    return app


def exchange(client: TestClient, method: str, path: str, headers: dict[str, str] | None = None) -> tuple[Any, ...]:
    r = client.request(method, path, headers=headers or {})
    body = RANDOM_ID.sub(rb'\1<random>"', r.content)
    return r.status_code, body, sorted((k.lower(), v) for k, v in r.headers.multi_items())


def both(settings: Any, requests: list[tuple[str, str, dict[str, str]]], counted: list[str],
         prepare: Any = None) -> tuple[list[Any], list[Any], list[str]]:
    """The same requests through the app with and without the fast path."""
    out = []
    answered: list[str] = []
    for on in (True, False):
        counted.clear()
        app = create_app(settings) if on else fastapi_only(create_app(settings))
        with TestClient(app, raise_server_exceptions=False) as c:
            if prepare is not None:
                prepare(c)
            out.append([exchange(c, m, p, h) for m, p, h in requests])
        if on:
            answered = list(counted)
        else:
            assert counted == []  # the plain app has no fast path
    return out[0], out[1], answered


def assert_same(requests: list[Any], fast: list[Any], plain: list[Any]) -> None:
    for (m, p, h), a, b in zip(requests, fast, plain, strict=True):
        assert a == b, f"{m} {p} {h}: fast {a} != plain {b}"


def test_fast_path_answers_like_fastapi_with_the_stores_up(isolated, redis_client, api_key, key_store, counted):
    k = RedisKeys(isolated.redis.prefix)
    items = seed_recs(redis_client, k, random.Random(5))
    profile_codec.write_sync(redis_client, k, "u0", Profile(counts={"view": 5, "purchase": 1}, first_seen=1000,
                                                            last_seen=5000, recent=["i5", "i4"], version=1))
    redis_client.hset(k.user_attrs("u0"), mapping={"name": "Ann"})
    s = isolated.replace(**{"cors_origins": ORIGIN})
    read, events = api_key("read"), api_key("events")
    slow_fast, slow_plain = api_key("read", rate=1, burst=1), api_key("read", rate=1, burst=1)
    revoked = api_key("read")
    key_store.revoke(parse_token(revoked))
    ok = {"X-API-Key": read}
    hot = [
        "/v1/profiles/u0/activity", "/v1/profiles/u0", "/v1/profiles/nobody/activity", "/v1/profiles/nobody",
        f"/v1/profiles/{'x' * 300}/activity",
        "/v1/recommendations/users/u0", "/v1/recommendations/users/u1?limit=3&method=collaborative",
        "/v1/recommendations/users/u2?method=popular&limit=5", "/v1/recommendations/users/u2?method=trending",
        "/v1/recommendations/users/u3?method=content&exclude_seen=false&placement=homepage",
        "/v1/recommendations/users/u1?category=a&category=b&item_id=i7",
        "/v1/recommendations/users/newcomer?limit=4",
        "/v1/recommendations/users/u0?limit=0", "/v1/recommendations/users/u0?limit=abc&method=bogus",
        "/v1/recommendations/users/u0?exclude_seen=maybe", f"/v1/recommendations/users/u0?placement={'p' * 65}",
        f"/v1/recommendations/similar/{items[3]}", "/v1/recommendations/similar/unknown-item?limit=5",
        f"/v1/recommendations/similar/{items[4]}?limit=101", f"/v1/recommendations/also-bought/{items[5]}?limit=7",
        "/v1/recommendations/trending", "/v1/recommendations/trending?category=c&limit=3",
        "/v1/recommendations/trending?limit=500",
    ]
    requests = [("GET", p, ok) for p in hot]
    requests += [("GET", p, {**ok, "Origin": ORIGIN}) for p in hot[:3] + hot[5:6] + hot[12:13]]
    for p in ("/v1/profiles/u0/activity", "/v1/recommendations/users/u0", "/v1/recommendations/trending"):
        requests += [
            ("GET", p, {}),  # 401 missing
            ("GET", p, {"X-API-Key": "nonsense"}),  # 401 malformed
            ("GET", p, {"X-API-Key": read[:-2] + ("AA" if not read.endswith("AA") else "BB")}),  # 401 invalid
            ("GET", p, {"X-API-Key": revoked}),  # 401 revoked
            ("GET", p, {"Authorization": f"Basic {read}"}),  # not a bearer: 401 missing
            ("GET", p, {"Authorization": f"Bearer {read}"}),
            ("GET", p, {"X-API-Key": events}),  # 403
            ("GET", p, {"X-API-Key": events, "Origin": ORIGIN}),
        ]
    # not served by the fast path: other methods, unknown paths, a trailing slash
    requests += [("HEAD", "/v1/profiles/u0/activity", ok), ("GET", "/v1/profiles/u0/activity/", ok),
                 ("GET", "/v1/recommendations/nothing-here", ok), ("OPTIONS", "/v1/profiles/u0/activity",
                  {"Origin": ORIGIN, "Access-Control-Request-Method": "GET"}), ("GET", "/v1/segments", ok)]
    label = ("GET", "/v1/profiles/{user_id}/activity")
    before = _count(label)
    rate_limited: list[Any] = []

    def limited(c: TestClient) -> None:  # per app its own slow key: 200 then 429 + Retry-After
        token = slow_fast if not rate_limited else slow_plain
        rate_limited.append([exchange(c, "GET", "/v1/profiles/u0/activity", {"X-API-Key": token})
                             for _ in range(2)])

    fast, plain, answered = both(s, requests, counted, prepare=limited)
    assert_same(requests, fast, plain)
    statuses = {p: st for (_m, p, _h), (st, _b, _hd) in zip(requests, fast, strict=False)}
    assert statuses["/v1/profiles/u0/activity"] == 200 and statuses["/v1/profiles/nobody"] == 404
    assert statuses[f"/v1/recommendations/similar/{items[4]}?limit=101"] == 422
    assert {200, 401, 403, 404, 422} <= {st for st, _b, _h in fast}
    assert [[st for st, _b, _h in pair] for pair in rate_limited] == [[200, 429], [200, 429]]
    assert rate_limited[0][1][1:] == rate_limited[1][1][1:]  # same 429 body and headers (Retry-After)
    # the fast path answered every hot GET (auth failures included), the two rate-limited ones and the
    # redirect target of the trailing slash (FastAPI redirects it; the client follows), and nothing else
    n_hot = sum(1 for m, p, _h in requests if m == "GET" and not p.endswith("/") and "nothing" not in p
                and p != "/v1/segments")
    assert len(answered) == n_hot + 2 + 1, answered
    assert "/v1/segments" not in answered and "/v1/recommendations/nothing-here" not in answered
    # the latency histogram got the same route label from both apps (two counts per request)
    activity = re.compile(r"^/v1/profiles/[^/]+/activity$")
    per_app = sum(1 for m, p, _h in requests if m == "GET" and activity.match(p)) + 2 + 1  # limited, redirect
    assert _count(label) - before == 2 * per_app


def _count(label: tuple[str, str]) -> float:
    for metric in REQUEST_LATENCY.collect():
        for sample in metric.samples:
            if sample.name.endswith("_count") and (sample.labels["method"], sample.labels["route"]) == label:
                return sample.value
    return 0.0


def test_fast_path_degrades_like_fastapi(isolated, cassandra, api_key, counted, tmp_path):
    user = f"fp-{uuid.uuid4().hex[:8]}"
    cassandra.execute("INSERT INTO user_activity (user_id, counts, first_seen, last_seen, recent_items) "
                      "VALUES (%s, %s, %s, %s, %s)", (user, {"view": 2}, 1000, 2000, ["i2"]))
    read = api_key("read")
    dead_redis = {"redis_url": f"redis://127.0.0.1:{free_port()}/0", "api_redis_timeout_s": 0.2,
                  "breaker_reset_s": 1.0, "home": tmp_path}
    popular = [{"item_id": "p1", "score": 30.0}, {"item_id": "p2", "score": 20.0}, {"item_id": "p3", "score": 10.0}]

    def remember(c: TestClient) -> None:
        c.app.state.aura.popular.remember(popular)

    # Redis down, Cassandra up: keys validated in Cassandra, profile from Cassandra, recs stale-popular
    requests = [("GET", p, {"X-API-Key": read}) for p in (
        f"/v1/profiles/{user}/activity", "/v1/profiles/nobody/activity", f"/v1/profiles/{user}",
        f"/v1/recommendations/users/{user}?limit=2", "/v1/recommendations/similar/i1",
        "/v1/recommendations/trending", "/v1/recommendations/users/x?limit=0")]
    requests += [("GET", f"/v1/profiles/{user}/activity", {"X-API-Key": read[:-2] + "AA"})]
    fast, plain, answered = both(isolated.replace(**dead_redis), requests, counted, prepare=remember)
    assert_same(requests, fast, plain)
    assert fast[0][0] == 200 and b'"source":"cassandra"' in fast[0][1]
    assert fast[3][0] == 200 and ("x-aura-degraded", "stale-popular") in fast[3][2]
    assert fast[4][0] == 503 and ("x-aura-degraded", "redis-down") in fast[4][2]
    assert len(answered) == len(requests)

    # both down (auth off to reach the routes; and with auth: an unknown key is a 503)
    both_down = {**dead_redis, "cassandra_port": free_port(), "auth_enabled": False}
    requests = [("GET", p, {}) for p in (
        f"/v1/profiles/{user}/activity", f"/v1/recommendations/users/{user}?limit=2",
        "/v1/recommendations/users/u?method=popular", "/v1/recommendations/similar/i1",
        "/v1/recommendations/also-bought/i1", "/v1/recommendations/trending")]
    fast, plain, answered = both(isolated.replace(**both_down), requests, counted, prepare=remember)
    assert_same(requests, fast, plain)
    # Cassandra unreachable since start-up and Redis down: nothing to ask, so 503, never a false 404
    assert [st for st, _b, _h in fast] == [503, 200, 200, 503, 503, 503]
    assert all(st != 500 for st, _b, _h in fast)
    assert len(answered) == len(requests)
    requests = [("GET", "/v1/profiles/u/activity", {"X-API-Key": api_key("read")})]
    fast, plain, _ = both(isolated.replace(**{**both_down, "auth_enabled": True}), requests, counted)
    assert_same(requests, fast, plain)
    assert fast[0][0] == 503 and ("x-aura-degraded", "cassandra-down") in fast[0][2]


def test_shadowed_routes_and_overrides_fall_through(isolated, counted):
    """A route the app would match first wins, as in FastAPI; dependency overrides disable the fast path."""
    from fastapi import APIRouter

    app = create_app(isolated.replace(**{"auth_enabled": False}))
    shadow = APIRouter()

    @shadow.get("/v1/recommendations/trending")
    async def first() -> dict[str, str]:
        return {"shadow": "yes"}

    app.include_router(shadow)
    app.router.routes.insert(0, app.router.routes.pop())
    with TestClient(app) as c:
        assert c.get("/v1/recommendations/trending").json() == {"shadow": "yes"}
        assert counted == []
        c.app.dependency_overrides[lambda: None] = lambda: None
        c.get("/v1/profiles/u0/activity")
        assert counted == []
        c.app.dependency_overrides.clear()
        c.get("/v1/profiles/u0/activity")
        assert counted == ["/v1/profiles/u0/activity"]


def test_openapi_document_is_the_same_with_the_fast_path(isolated):
    on = create_app(isolated).openapi()
    off = fastapi_only(create_app(isolated)).openapi()
    assert on == off and "/v1/profiles/{user_id}/activity" in on["paths"]


def test_fast_path_refuses_unknown_query_parameters_like_fastapi(isolated, redis_client, api_key, counted):
    k = RedisKeys(isolated.redis.prefix)
    items = seed_recs(redis_client, k, random.Random(7))
    profile_codec.write_sync(redis_client, k, "u0", Profile(counts={"view": 1}, first_seen=1000, last_seen=2000,
                                                            version=1))
    ok = {"X-API-Key": api_key("read")}
    paths = ["/v1/profiles/u0?limt=3", "/v1/profiles/u0/activity?limit=5&x=1",
             "/v1/recommendations/users/u0?limt=5", "/v1/recommendations/users/u0?limit=abc&methd=popular",
             f"/v1/recommendations/similar/{items[1]}?limit=5&categroy=a",
             f"/v1/recommendations/also-bought/{items[2]}?zz=1&zz=2", "/v1/recommendations/trending?cat=a",
             f"/v1/profiles/{'x' * 300}/activity?zz=1"]
    requests = [("GET", p, ok) for p in paths]
    requests += [("GET", p, ok) for p in paths[:3]]  # again: the query memo must not let them through
    requests += [("GET", "/v1/recommendations/trending?limit=3", ok), ("GET", "/v1/recommendations/trending?limit=3",
                 ok), ("GET", "/v1/profiles/u0?zz=1", {})]  # known ones still answered; 401 before 422
    fast, plain, answered = both(isolated, requests, counted)
    assert_same(requests, fast, plain)
    assert [st for st, _b, _h in fast] == [422] * 11 + [200, 200, 401]
    for (_m, p, _h), (_st, body, _hd) in zip(requests[:8], fast[:8], strict=True):
        name = re.findall(r"[?&]([a-z]+)=", p)[-1] if "limit=abc" not in p else "methd"
        assert f'"loc":["query","{name}"]'.encode() in body, (p, body)
    assert b'"loc":["query","limit"]' not in fast[3][1]  # the unknown parameter is refused first, alone
    assert len(answered) == len(requests)

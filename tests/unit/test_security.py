"""API keys, scope policy, circuit breaker and fallbacks: pure logic, no services."""

from __future__ import annotations

import asyncio

import pytest
import redis.exceptions as rexc
from fastapi import APIRouter, Response

from aura.apikeys import (
    ApiKeyError,
    KeyRecord,
    check_scopes,
    covers,
    new_token,
    parse_cached,
    parse_token,
    token_hash,
)
from serving.degrade import (
    DEGRADED_HEADER,
    CircuitBreaker,
    DependencyUnavailable,
    PopularCache,
    read_through,
    stale_popular,
)
from serving.security import ADMIN, EVENTS, READ, require_scope, route_scope, scoped


def test_tokens_parse_to_their_key_id_and_only_the_hash_is_comparable():
    key_id, token = new_token()
    assert parse_token(token) == key_id
    assert len(token_hash(token)) == 64 and token_hash(token) != token_hash(token + "x")
    other_id, other = new_token()
    assert other_id != key_id and other != token
    for bad in ("", "aura", f"aura_{key_id}", token[:-1], token + "x", token.replace("aura_", "nope_"),
                f"aura_{key_id.upper()}_{token.split('_', 2)[2]}", "Bearer " + token):
        assert parse_token(bad) is None, bad


def test_admin_covers_every_scope_and_others_only_their_own():
    assert covers({ADMIN}, READ) and covers({ADMIN}, EVENTS) and covers({ADMIN}, ADMIN)
    assert covers({READ}, READ) and not covers({READ}, EVENTS) and not covers({READ}, ADMIN)
    assert covers({READ, EVENTS}, EVENTS) and not covers({EVENTS}, READ)
    assert not covers(set(), READ)


def test_unknown_or_empty_scopes_are_refused():
    assert check_scopes(["read", "events"]) == {"read", "events"}
    with pytest.raises(ApiKeyError):
        check_scopes([])
    with pytest.raises(ApiKeyError):
        check_scopes(["read", "root"])


def test_cached_record_round_trips():
    rec = KeyRecord("abcdef012345", "shop", "h" * 64, frozenset({"read", "events"}), 12.5, 30)
    back = parse_cached(rec.key_id, rec.cache_mapping())
    assert (back.key_hash, back.scopes, back.rate_per_s, back.burst, back.revoked) == (
        rec.key_hash, rec.scopes, 12.5, 30, False)
    revoked = KeyRecord("abcdef012345", "shop", "h" * 64, frozenset({"read"}), 1, 1, revoked_at=5)
    assert parse_cached(revoked.key_id, revoked.cache_mapping()).revoked


def test_route_scope_declared_beats_override_beats_method_default():
    r = APIRouter(prefix="/things")

    @r.get("/{x}")
    async def get_thing(x: str) -> dict:
        return {}

    @r.post("/{x}")
    async def write_thing(x: str) -> dict:
        return {}

    @r.post("/{x}/track", dependencies=[require_scope(EVENTS)])
    async def track(x: str) -> dict:
        return {}

    @r.post("/{x}/query", openapi_extra=scoped(READ))
    async def query(x: str) -> dict:
        return {}

    @r.delete("/{x}")
    async def erase(x: str) -> dict:
        return {}

    routes = {(next(iter(rt.methods)), rt.path): rt for rt in r.routes}
    overrides = {"DELETE /things/{x}": ADMIN}
    assert route_scope(routes["GET", "/things/{x}"], "GET", READ, EVENTS, overrides) == READ
    assert route_scope(routes["POST", "/things/{x}"], "POST", READ, EVENTS, overrides) == EVENTS
    assert route_scope(routes["POST", "/things/{x}/track"], "POST", READ, ADMIN, overrides) == EVENTS
    assert route_scope(routes["POST", "/things/{x}/query"], "POST", READ, ADMIN, overrides) == READ
    assert route_scope(routes["DELETE", "/things/{x}"], "DELETE", READ, EVENTS, overrides) == ADMIN


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_breaker_opens_after_consecutive_failures_and_half_opens_with_one_trial():
    clock = Clock()
    b = CircuitBreaker("redis", failures=3, reset_s=5.0, clock=clock)
    b.failure()
    b.success()  # a success resets the count
    b.failure()
    b.failure()
    assert b.state == "closed" and b.allow()
    b.failure()
    assert b.state == "open" and not b.allow() and b.rejected_total == 1
    assert 1 <= b.retry_after_s() <= 5
    clock.t += 5.0
    assert b.state == "half-open"
    assert b.allow()  # the trial
    assert not b.allow()  # only one trial at a time
    b.failure()  # trial failed: open again for a full period
    assert b.state == "open" and b.opened_total == 2
    clock.t += 5.0
    assert b.allow()
    b.success()
    assert b.state == "closed" and b.allow() and b.allow()


def run(coro):
    return asyncio.run(coro)


async def _value(v):
    return v


async def _redis_down():
    raise rexc.ConnectionError("refused")


def test_read_through_prefers_redis_then_cassandra_and_marks_degraded_answers():
    resp = Response()
    got = run(read_through(resp, lambda: _value({"a": 1}), lambda: _value({"a": 2})))
    assert (got.value, got.source) == ({"a": 1}, "redis") and DEGRADED_HEADER not in resp.headers
    got = run(read_through(resp, lambda: _value(None), lambda: _value({"a": 2})))
    assert (got.value, got.source) == ({"a": 2}, "cassandra") and DEGRADED_HEADER not in resp.headers
    got = run(read_through(resp, _redis_down, lambda: _value({"a": 2})))
    assert (got.value, got.source) == ({"a": 2}, "cassandra") and resp.headers[DEGRADED_HEADER] == "redis-down"


def test_read_through_raises_unavailable_when_no_store_answers():
    from cassandra.cluster import NoHostAvailable

    async def cassandra_down():
        raise NoHostAvailable("down", {})

    with pytest.raises(DependencyUnavailable) as err:
        run(read_through(Response(), _redis_down, cassandra_down))
    assert err.value.dependency == "redis+cassandra"
    with pytest.raises(DependencyUnavailable):
        run(read_through(Response(), _redis_down))


def test_popular_cache_survives_a_restart_and_marks_stale_answers(tmp_path):
    cache = PopularCache(path=tmp_path / "popular.json", snapshot_every_s=0)
    cache.remember([{"item_id": "a"}, {"item_id": "b"}, {"item_id": "c"}])
    cache.remember([{"item_id": "z"}], key="shoes")
    again = PopularCache(path=tmp_path / "popular.json")
    again.load()
    resp = Response()
    assert stale_popular(again, resp, limit=2) == [{"item_id": "a"}, {"item_id": "b"}]
    assert resp.headers[DEGRADED_HEADER] == "stale-popular"
    assert again.get("shoes") == [{"item_id": "z"}]
    assert again.get("unknown-category") == again.get("")  # falls back to the global list
    assert PopularCache().get() == []

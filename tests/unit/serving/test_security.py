"""API keys and the scope policy of routes (serving/security.py): pure logic, no services."""

from __future__ import annotations

import pytest
from fastapi import APIRouter

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

"""The campaign audience estimate against the real Redis, through the API: a rule audience is the
rule evaluated on every user with a profile or identity attributes under the test's own Redis
prefix (the shared Redis holds many other keys), with one pipeline of reads per SCAN page; a
``scan`` smaller than the population gives a share with a 95% interval; the time budget ends a
scan early."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis.asyncio.client as aioclient

from aura.keys import RedisKeys
from aura.state import profile_codec
from aura.state.experiments import wilson_interval
from aura.state.profiles import Profile

pytestmark = [pytest.mark.integration]

RULE = {"any": [{"field": "profile.ltv", "op": "gte", "value": 100},
                {"field": "profile.country", "op": "equals", "value": "DE"}]}
TEMPLATE = {"subject": "Hello", "body": "Hi {{ user.first_name | default('there') }}"}


def seed(r: Any, keys: RedisKeys) -> tuple[int, int]:
    """110 users under the test's prefix: with a profile only, identity attributes only, or both; 44
    satisfy RULE (ltv >= 100 on the profile, or country DE in the attributes). Returns (users, matched)."""
    users: list[tuple[float | None, str | None]] = (
        [(250.0, None)] * 16 + [(20.0, None)] * 24  # profile only: 16 match
        + [(None, "DE")] * 12 + [(None, "FR")] * 18  # attributes only: 12 match
        + [(250.0, "FR")] * 8 + [(20.0, "DE")] * 4 + [(250.0, "DE")] * 4 + [(20.0, "FR")] * 24)  # both: 16
    pipe = r.pipeline(transaction=False)
    matched = 0
    for i, (ltv, country) in enumerate(users):
        user = f"u{i:03d}"
        if ltv is not None:
            profile_codec.write_sync(pipe, keys, user, Profile(ltv=ltv, orders=1, version=1))
        if country is not None:
            pipe.hset(keys.user_attrs(user), mapping={"x:country": json.dumps(country),
                                                      "x:email": json.dumps(f"{user}@example.test")})
        matched += (ltv or 0) >= 100 or country == "DE"
    pipe.execute()
    return len(users), matched


@pytest.fixture
def client(isolated: Any, api_key: Any, redis_client: Any) -> Iterator[Any]:
    """The API with a generous scan budget: a full scan of the shared Redis must not stop on time
    while other work loads the machine (the budget's own test sets a tiny one)."""
    from fastapi.testclient import TestClient

    from serving.app import create_app

    headers = {"Authorization": f"Bearer {api_key('admin', name='audience')}"}
    with TestClient(create_app(isolated.replace(campaign_audience_scan_s=120.0)), headers=headers) as c:
        yield c


@pytest.fixture
def campaign(client: Any) -> Iterator[Any]:
    """Create draft campaigns with an audience; deleted afterwards."""
    made: list[str] = []

    def create(cid: str, audience: dict) -> str:
        r = client.post("/v1/campaigns", json={"id": cid, "channel": "email", "audience": audience,
                                               "trigger": {"type": "event", "event_type": "view"},
                                               "template": TEMPLATE})
        assert r.status_code == 201, r.text
        made.append(cid)
        return cid

    yield create
    for cid in made:
        client.delete(f"/v1/campaigns/{cid}")


@pytest.fixture
def commands(monkeypatch: pytest.MonkeyPatch) -> list[list[tuple[str, str]]]:
    """The async Redis client's round trips while the test runs: each a list of (command, first key)."""
    trips: list[list[tuple[str, str]]] = []
    real_execute, real_command = aioclient.Pipeline.execute, aioclient.Redis.execute_command

    def name(args: tuple) -> tuple[str, str]:
        return str(args[0]).upper(), str(args[1]) if len(args) > 1 else ""

    async def execute(self: Any, *a: Any, **kw: Any) -> Any:
        trips.append([name(args) for args, _opts in self.command_stack])
        return await real_execute(self, *a, **kw)

    async def execute_command(self: Any, *a: Any, **kw: Any) -> Any:
        trips.append([name(a)])
        return await real_command(self, *a, **kw)

    monkeypatch.setattr(aioclient.Pipeline, "execute", execute)
    monkeypatch.setattr(aioclient.Redis, "execute_command", execute_command)
    return trips


def test_a_rule_audience_is_counted_exactly_in_one_pipeline_per_scan_page(client, campaign, isolated, redis_client,
                                                                          commands):
    keys = RedisKeys(isolated.redis.prefix)
    total, matched = seed(redis_client, keys)
    cid = campaign(f"{isolated.redis.prefix}-rule", {"type": "rule", "condition": RULE})
    commands.clear()
    r = client.get(f"/v1/campaigns/{cid}/audience")
    assert r.status_code == 200, r.text
    out = r.json()
    assert (out["type"], out["size"], out["scanned"], out["exact"], out["stopped"]) == ("rule", matched, total,
                                                                                       True, None)
    assert out["share"] == out["share_low"] == out["share_high"] == pytest.approx(matched / total)
    assert "exact" in out["note"]
    # reads of the users' state and attributes only inside pipelines, never one round trip per user,
    # and no more pipelines than SCAN pages
    state_key, attrs_key = keys.user_state("")[:-1], keys.user_attrs("")[:-len("}:attrs")]

    def user_reads(trip: list[tuple[str, str]]) -> int:
        return sum(1 for c, key in trip if (c, key[:len(state_key)]) == ("GET", state_key)
                   or (c, key[:len(attrs_key)]) == ("HGETALL", attrs_key))

    singles = [t for t in commands if len(t) == 1]
    assert sum(map(user_reads, singles)) == 0
    pages = sum(1 for t in singles if t[0][0] == "SCAN")
    pipelines = [t for t in commands if len(t) > 1 and user_reads(t)]
    assert 1 <= len(pipelines) <= pages
    assert sum(map(user_reads, pipelines)) == 2 * total

    everyone = campaign(f"{isolated.redis.prefix}-all", {"type": "everyone"})
    out = client.get(f"/v1/campaigns/{everyone}/audience").json()
    assert (out["size"], out["scanned"], out["exact"], out["share"]) == (total, total, True, 1.0)
    listed = campaign(f"{isolated.redis.prefix}-list", {"type": "users", "users": ["a", "b"]})
    out = client.get(f"/v1/campaigns/{listed}/audience").json()
    assert (out["size"], out["exact"]) == (2, True)


def test_a_scan_smaller_than_the_population_gives_a_share_with_an_interval(client, campaign, isolated, redis_client):
    total, matched = seed(redis_client, RedisKeys(isolated.redis.prefix))
    cid = campaign(f"{isolated.redis.prefix}-rule", {"type": "rule", "condition": RULE})
    r = client.get(f"/v1/campaigns/{cid}/audience", params={"scan": 100})
    assert r.status_code == 200, r.text
    out = r.json()
    assert (out["scanned"], out["exact"], out["stopped"]) == (100, False, "scan")
    # 100 of the 110 users are scanned, so the matched ones among them are between matched - 10 and
    # matched, whichever 100 SCAN returns; the interval of each such count holds the true share
    # (checked here for all of them: the test cannot depend on SCAN's order)
    assert all(lo <= matched / total <= hi for lo, hi in (wilson_interval(m, 100)
                                                           for m in range(matched - (total - 100), matched + 1)))
    assert matched - (total - 100) <= out["size"] <= matched
    assert out["share"] == pytest.approx(out["size"] / 100)
    assert (out["share_low"], out["share_high"]) == pytest.approx(wilson_interval(out["size"], 100))
    assert out["share_low"] <= matched / total <= out["share_high"]
    assert "Wilson" in out["note"] and "100" in out["note"]
    assert client.get(f"/v1/campaigns/{cid}/audience", params={"scan": 99}).status_code == 422
    assert client.get(f"/v1/campaigns/{cid}/audience", params={"scan": 200_001}).status_code == 422
    assert client.get(f"/v1/campaigns/{isolated.redis.prefix}-none/audience").status_code == 404


def test_the_time_budget_ends_a_scan_early(isolated, api_key, redis_client):
    from fastapi.testclient import TestClient

    from serving.app import create_app

    total, _matched = seed(redis_client, RedisKeys(isolated.redis.prefix))
    # other keys under the prefix, so that one SCAN page cannot cover the keyspace even on a fresh Redis
    pipe = redis_client.pipeline(transaction=False)
    for i in range(5000):
        pipe.set(f"{isolated.redis.prefix}:filler:{i}", "x")
    pipe.execute()
    cid = f"{isolated.redis.prefix}-rule"
    headers = {"Authorization": f"Bearer {api_key('admin', name='audience')}"}
    with TestClient(create_app(isolated.replace(campaign_audience_scan_s=0.0)), headers=headers) as c:
        assert c.post("/v1/campaigns", json={"id": cid, "channel": "email", "template": TEMPLATE,
                                             "audience": {"type": "rule", "condition": RULE},
                                             "trigger": {"type": "event", "event_type": "view"}}).status_code == 201
        try:
            out = c.get(f"/v1/campaigns/{cid}/audience").json()
        finally:
            c.delete(f"/v1/campaigns/{cid}")
    # one SCAN page (1,000 keys examined), then the budget is spent: the scan cannot have covered them
    assert (out["exact"], out["stopped"]) == (False, "time")
    assert out["scanned"] < total
    assert "time budget" in out["note"]

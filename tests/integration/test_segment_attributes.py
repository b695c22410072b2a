"""Segments over identity attributes against the real stack: a segment defined through the API over
``attr.plan`` takes existing users in through the backfill (users known only by identity events
included), a user enters and leaves as its attribute changes with no behavior event, a behavior
batch evaluates attribute rules with the stored attributes, the counts over time follow; and the
identity agent's re-evaluation is exactly once across a crash at either of its steps (replays rewrite
the membership, ``HISTORY_LUA`` counts it once)."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest

from aura import bootstrap
from aura.keys import RedisKeys
from aura.producer import EventProducer
from aura.state import profile_codec
from aura.state.profiles import ProfileConfig
from schemas.events import validate_identity
from streams import identity
from streams.identity import IdentityStore
from streams.runtime import Resources
from tests.conftest import wait_for

pytestmark = [pytest.mark.integration]


def purchase(user: str, n: int, price: float) -> dict:
    return {"event_id": f"{user}-p{n}", "event_type": "purchase", "user_id": user,
            "event_time": int(time.time() * 1000),
            "order": {"order_id": f"{user}-o{n}", "lines": [{"item_id": f"i{n}", "quantity": 1, "unit_price": price}]}}


def members(client: Any, name: str) -> set[str]:
    r = client.get(f"/v1/segments/{name}/members", params={"count": 1000})
    assert r.status_code == 200, r.text
    return set(r.json()["members"])


def applied(client: Any, written: Any) -> bool:
    assert written.status_code == 202, written.text
    r = client.get(written.json()["status_url"])
    assert r.status_code == 200, r.text
    return r.json()["applied"]


def test_attribute_segment_backfill_live_entry_and_exit(isolated, worker_factory, api_client):
    worker_factory()
    producer = EventProducer(isolated, bootstrap.kafka_producer(isolated))
    tag = uuid.uuid4().hex[:6]
    only_attrs, buyer, silver, fresh = f"oa-{tag}", f"buyer-{tag}", f"silver-{tag}", f"fresh-{tag}"
    # existing users before the segment exists: one known only by its identity (no behavior), one
    # with behavior and the attribute, one with another plan
    writes = [api_client.post("/v1/profiles", json={"user_id": only_attrs, "attributes": {"plan": "gold"}}),
              api_client.post("/v1/profiles", json={"user_id": silver, "attributes": {"plan": "silver"}})]
    producer.send(purchase(buyer, 0, 50.0))
    assert producer.flush().failed == 0
    writes.append(api_client.patch(f"/v1/profiles/{buyer}", json={"attributes": {"plan": "gold", "seats": 12}}))
    wait_for(lambda: all(applied(api_client, w) for w in writes)
             and api_client.get(f"/v1/profiles/{buyer}").json().get("orders") == 1, what="the existing users")

    gold, big = f"gold_{tag}", f"gold_teams_{tag}"
    r = api_client.post("/v1/segments", json={"id": gold, "conditions": [["attr.plan", "equals", "gold"]]})
    assert r.status_code == 201, r.text
    assert r.json()["conditions"] == [["attr.plan", "==", "gold"]]
    r = api_client.post("/v1/segments", json={"id": big, "conditions": [
        {"field": "attr.plan", "op": "in", "value": ["gold", "platinum"]}, ["attr.seats", "gte", 10],
        ["orders", ">=", 1]]})
    assert r.status_code == 201, r.text

    def done(name: str) -> dict | None:
        doc = api_client.get(f"/v1/segments/{name}").json()
        return doc if (doc.get("backfill") or {}).get("state") == "done" else None

    doc = wait_for(lambda: done(gold), timeout=90, what="the backfill")
    assert doc["members"] == 2 and doc["backfill"]["scanned"] >= 3
    assert members(api_client, gold) == {only_attrs, buyer}
    wait_for(lambda: done(big), timeout=90, what="the second backfill")
    assert members(api_client, big) == {buyer}
    assert gold in api_client.get(f"/v1/profiles/{only_attrs}/segments").json()["segments"]

    # an identity change alone: the user enters, then leaves, with no behavior event
    w = api_client.post("/v1/profiles", json={"user_id": fresh, "attributes": {"plan": "gold", "seats": 40}})
    assert w.status_code == 202, w.text
    wait_for(lambda: fresh in members(api_client, gold), what="the user entering on its attribute")
    assert fresh not in members(api_client, big)  # no order yet
    # a behavior batch evaluates the attribute rules with the stored attributes
    producer.send(purchase(fresh, 0, 20.0))
    assert producer.flush().failed == 0
    wait_for(lambda: fresh in members(api_client, big), what="the user entering on behavior plus attributes")
    assert fresh in members(api_client, gold)  # the fold kept the attribute segment

    assert api_client.patch(f"/v1/profiles/{fresh}", json={"attributes": {"plan": "free"}}).status_code == 202
    wait_for(lambda: fresh not in members(api_client, gold) and fresh not in members(api_client, big),
             what="the user leaving on its attribute")
    assert api_client.patch(f"/v1/profiles/{only_attrs}", json={"attributes": {"plan": None}}).status_code == 202
    wait_for(lambda: only_attrs not in members(api_client, gold), what="the user leaving on an unset attribute")
    assert members(api_client, gold) == {buyer}

    # the counts over time saw every change once: 3 joined (2 backfilled, 1 live), 2 left
    r = api_client.get(f"/v1/segments/{gold}/history", params={"timeframe": "2d", "grain": "hour"})
    assert r.status_code == 200, r.text
    buckets = r.json()["buckets"]
    assert sum(b["joined"] for b in buckets) == 3 and sum(b["left"] for b in buckets) == 2
    assert buckets[-1]["members"] == 1


@pytest.mark.parametrize(("cond", "loc", "named"), [
    (["attr.", "==", "x"], "field", "attr."),
    (["attr.plan", "~=", "gold"], "op", None),
    (["orders", "contains", 1], "op", "attr."),
    (["attr.plan", "in", "gold"], "value", "attr.plan"),
    (["attr.plan", ">", True], "value", "attr.plan"),
    (["attr.plan", "==", {"tier": 1}], "value", "attr.plan"),
    (["attr.plan", "exists", "yes"], "value", "attr.plan"),
])
def test_bad_attribute_conditions_are_refused_with_the_field(isolated, api_client, cond, loc, named):
    r = api_client.post("/v1/segments", json={"id": "attr_bad", "conditions": [cond]})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"][0]
    assert detail["loc"] == ["body", "conditions", 0, loc]
    if named:
        assert named in detail["msg"]


def identity_event(user: str, n: int, **attributes: Any) -> Any:
    now = int(time.time() * 1000)
    return validate_identity({"event_id": f"{user}-{n}", "event_type": "update", "user_id": user,
                              "event_time": now, "attributes": attributes}, now)


class Crash(Exception):
    """A worker dying at a chosen step."""


async def test_identity_reevaluation_is_exactly_once_across_crashes(isolated, redis_client, cassandra,
                                                                   monkeypatch):
    s = isolated.replace(segment_rules=json.dumps({"gold": [["attr.plan", "==", "gold"]]}))
    keys = RedisKeys(s.redis.prefix)
    redis = bootstrap.redis_async(s)
    store = IdentityStore(Resources(s, redis, cassandra, keys, durable=None), ProfileConfig.from_settings(s))
    user = f"u-{uuid.uuid4().hex[:6]}"
    history = keys.segment_history("gold")

    def counted(kind: str) -> int:
        return sum(int(v) for f, v in redis_client.hgetall(history).items() if f.endswith(":" + kind))

    real_resegment, real_reconcile = identity.resegment_users, store.profiles.segments.reconcile
    try:
        # 1. dies after the attributes are written, before the re-evaluation
        async def dies(*_a: Any, **_k: Any) -> int:
            raise Crash

        monkeypatch.setattr(identity, "resegment_users", dies)
        with pytest.raises(Crash):
            await store.apply([(identity_event(user, 1, plan="gold"), 0, 5)])
        assert json.loads(redis_client.hget(keys.user_attrs(user), "x:plan")) == "gold"
        assert not redis_client.sismember(keys.segment_members("gold"), user)
        monkeypatch.setattr(identity, "resegment_users", real_resegment)
        for _replay in range(2):  # the redelivered batch, twice
            await store.apply([(identity_event(user, 1, plan="gold"), 0, 5)])
            assert redis_client.smembers(keys.segment_members("gold")) == {user}
            assert (counted("j"), counted("l")) == (1, 0)
        assert profile_codec.read_sync(redis_client, keys, user).segments == ["gold"]
        rows = cassandra.execute(f"SELECT user_id FROM {s.cassandra.keyspace}.segment_members WHERE segment = 'gold'")
        assert user in {row.user_id for row in rows}

        # 2. dies after the profile is written, before the member set follows
        async def reconcile_dies(*_a: Any, **_k: Any) -> None:
            raise Crash

        monkeypatch.setattr(store.profiles.segments, "reconcile", reconcile_dies)
        with pytest.raises(Crash):
            await store.apply([(identity_event(user, 2, plan="silver"), 0, 6)])
        assert profile_codec.read_sync(redis_client, keys, user).segments == []
        assert redis_client.smembers(keys.segment_members("gold")) == {user}  # the set is behind
        monkeypatch.setattr(store.profiles.segments, "reconcile", real_reconcile)
        for _replay in range(2):
            await store.apply([(identity_event(user, 2, plan="silver"), 0, 6)])
            assert not redis_client.smembers(keys.segment_members("gold"))
            assert (counted("j"), counted("l")) == (1, 1)

        # an event without a change of segments writes nothing; a new one moves the user once
        await store.apply([(identity_event(user, 3, plan="bronze"), 0, 7),
                           (identity_event(user, 4, plan="gold"), 0, 8)])
        assert redis_client.smembers(keys.segment_members("gold")) == {user}
        assert (counted("j"), counted("l")) == (2, 1)
    finally:
        await redis.aclose()


async def test_a_behavior_batch_reads_attributes_in_its_one_state_read(isolated, redis_client, cassandra,
                                                                      redis_round_trips):
    from schemas.events import Behavior
    from streams.intake import Accepted
    from streams.profiles import ProfileStore

    keys = RedisKeys(isolated.redis.prefix)
    redis = bootstrap.redis_async(isolated)
    users = [f"rt{i}-{uuid.uuid4().hex[:6]}" for i in range(3)]
    redis_client.hset(keys.user_attrs(users[0]), mapping={"x:plan": json.dumps("gold"), "x:seats": "12"})
    redis_client.hset(keys.user_attrs(users[1]), mapping={"x:plan": json.dumps("gold")})
    now = int(time.time() * 1000)
    batch = [Accepted(Behavior(event_id=f"{u}-{n}", event_type="view", user_id=u, item_id="i1", event_time=now),
                      0, 10 * i + n) for i, u in enumerate(users) for n in range(2)]
    rules = {"gold": [["attr.plan", "==", "gold"]], "team": [["attr.seats", ">=", 10], ["count.view", ">=", 2]]}
    try:
        store = ProfileStore(redis, cassandra, keys, ProfileConfig(rules=rules))
        redis_round_trips.clear()
        states, _facts = await store.apply(batch, lambda _i: None)
        # the first round trip reads every user's state and the attributes the rules test (GET + HMGET)
        assert redis_round_trips[0] == 2 * len(users)
        assert {u: p.segments for u, p in states.items()} == {users[0]: ["gold", "team"], users[1]: ["gold"],
                                                              users[2]: []}
        assert redis_client.smembers(keys.segment_members("gold")) == {users[0], users[1]}

        plain = ProfileStore(redis, cassandra, keys, ProfileConfig(rules={"buyer": [["orders", ">=", 1]]}))
        redis_round_trips.clear()
        await plain.apply([Accepted(Behavior(event_id="x", event_type="view", user_id=users[2], item_id="i1",
                                             event_time=now), 0, 99)], lambda _i: None)
        assert redis_round_trips[0] == 1  # no rule tests attributes: none are read
    finally:
        await redis.aclose()

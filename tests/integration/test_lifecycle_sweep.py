"""The idle-user sweep (streams/lifecycle.py) against the real Redis and Cassandra, with small
thresholds: users who send no events reach at-risk and churned, segment sets follow, a second sweep
changes nothing, an event brings the user back; and the worker's timer does it on its own."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from aura import bootstrap
from aura.keys import RedisKeys
from aura.producer import EventProducer
from aura.state import profile_codec
from aura.state.profiles import ProfileConfig
from schemas.events import Behavior
from streams import lifecycle
from streams.intake import Accepted
from streams.profiles import ProfileStore
from tests.conftest import wait_for

pytestmark = [pytest.mark.integration]

HOUR = 3600 * 1000
RULES = json.dumps({"risk": [["stage", "==", "at-risk"]], "gone": [["stage", "==", "churned"]],
                    "buyer": [["orders", ">=", 1]]})


def small(s):
    """At-risk after 1 hour without events, churned after 3 hours."""
    return s.replace(**{"lifecycle_at_risk_days": 1 / 24, "lifecycle_churn_days": 3 / 24,
                                "segment_rules": RULES})


def view(user: str, t: int, off: int, etype: str = "view") -> Accepted:
    raw = {"order": {"lines": [{"item_id": "i1", "quantity": 1, "unit_price": 10.0}]}} if etype == "purchase" else {}
    b = Behavior(event_id=f"{user}-{off}", event_type=etype, user_id=user, item_id="i1", event_time=t,
                 revenue=10.0 if etype == "purchase" else 0.0, raw=raw)
    return Accepted(b, 0, off)


async def test_sweep_moves_idle_users_and_their_segments(isolated, redis_client, cassandra):
    s = small(isolated)
    keys = RedisKeys(s.redis.prefix)
    redis = bootstrap.redis_async(s)
    cfg = ProfileConfig.from_settings(s)
    store = ProfileStore(redis, cassandra, keys, cfg)
    tag = uuid.uuid4().hex[:6]
    fresh, risky, gone = f"fresh-{tag}", f"risky-{tag}", f"gone-{tag}"
    now = int(time.time() * 1000)
    try:
        await store.apply([view(fresh, now - 10 * 60_000, 1), view(risky, now - 2 * HOUR, 2, "purchase"),
                           view(gone, now - 4 * HOUR, 3)], lambda _i: None)
        for u in (fresh, risky, gone):
            assert profile_codec.read_sync(redis_client, keys, u).idle == ""
        assert redis_client.smembers(keys.segment_members("buyer")) == {risky}
        assert not redis_client.smembers(keys.segment_members("risk"))

        r = await lifecycle.sweep(store, now, batch=2)  # batches smaller than the users: several SCAN rounds
        assert (r.scanned, r.changed, r.conflicts) == (3, 2, 0)
        got = {u: profile_codec.read_sync(redis_client, keys, u) for u in (fresh, risky, gone)}
        assert (got[fresh].idle, got[risky].idle, got[gone].idle) == ("", "at-risk", "churned")
        assert got[risky].segments == ["buyer", "risk"] and got[gone].segments == ["gone"]
        assert redis_client.smembers(keys.segment_members("risk")) == {risky}
        assert redis_client.smembers(keys.segment_members("gone")) == {gone}
        assert redis_client.smembers(keys.segment_members("buyer")) == {risky}
        rows = cassandra.execute(f"SELECT user_id FROM {s.cassandra.keyspace}.segment_members WHERE segment = 'gone'")
        assert gone in {row.user_id for row in rows}
        doc = cassandra.execute(f"SELECT doc FROM {s.cassandra.keyspace}.user_profile WHERE user_id = %s",
                                (gone,)).one()
        assert json.loads(doc.doc)["idle"] == "churned"

        # idempotent: the same sweep again changes nothing; later, at-risk becomes churned
        again = await lifecycle.sweep(store, now, batch=100)
        assert (again.scanned, again.changed) == (3, 0)
        assert profile_codec.read_sync(redis_client, keys, risky) == got[risky]
        later = await lifecycle.sweep(store, now + 2 * HOUR, batch=100)
        assert later.changed == 2  # risky -> churned, fresh -> at-risk
        assert redis_client.smembers(keys.segment_members("gone")) == {gone, risky}
        assert redis_client.smembers(keys.segment_members("risk")) == {fresh}

        # an event brings the churned user back: idle cleared, the fold's own stage, segments follow
        await store.apply([view(gone, now, 4)], lambda _i: None)
        back = profile_codec.read_sync(redis_client, keys, gone)
        assert back.idle == "" and back.stage == "reactivated" and back.segments == []
        assert redis_client.smembers(keys.segment_members("gone")) == {risky}
    finally:
        for seg in ("risk", "gone", "buyer"):
            for u in (fresh, risky, gone):
                cassandra.execute(f"DELETE FROM {s.cassandra.keyspace}.segment_members WHERE segment = %s "
                                  "AND user_id = %s", (seg, u))
        await redis.aclose()


def test_the_worker_sweeps_users_that_send_nothing(isolated, worker_factory, redis_client):
    s = small(isolated).replace(**{"lifecycle_sweep_interval_s": 1.0})
    keys = RedisKeys(s.redis.prefix)
    worker_factory(s)
    prod = EventProducer(s, bootstrap.kafka_producer(s))
    user = f"idle-{uuid.uuid4().hex[:6]}"
    prod.send({"event_id": f"{user}-1", "event_type": "view", "user_id": user, "item_id": "i1",
               "event_time": int(time.time() * 1000) - 4 * HOUR})
    assert prod.flush().failed == 0
    # the user's only event is 4 hours old: the fold says "new", the sweep (every second) says churned
    wait_for(lambda: user in redis_client.smembers(keys.segment_members("gone")), timeout=60,
             what="the idle user in the churned segment")
    p = profile_codec.read_sync(redis_client, keys, user)
    assert p.stage == "new" and p.idle == "churned" and p.segments == ["gone"]

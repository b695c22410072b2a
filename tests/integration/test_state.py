"""Profiles, identity (attributes, preferences, merge, erase), segments, analytics routes and the
aggregate topics, through a real worker, Kafka, Redis, Cassandra and the API."""

from __future__ import annotations

import io
import time
import uuid
from datetime import UTC, datetime

import pytest
from confluent_kafka import Consumer

from aura import bootstrap, layout
from aura.keys import RedisKeys
from aura.producer import EventProducer
from streams.aggregates import tail
from tests.conftest import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


def test_profile_merge_erase_segments_analytics_and_aggregates(isolated, worker_factory, api_client, cassandra,
                                                               redis_client):
    s = isolated.replace(**{"agg_publish_interval_s": 1.0})
    worker_factory(s)
    prod = EventProducer(s, bootstrap.kafka_producer(s))
    tag = uuid.uuid4().hex[:6]
    known, anon = f"k-{tag}", f"a-{tag}"
    now = int(time.time() * 1000) - 60_000
    n = 0

    def behave(user, etype, item=None, dt=0, **extra):
        nonlocal n
        n += 1
        prod.send({"event_id": f"{tag}-{n}", "event_type": etype, "user_id": user, "item_id": item,
                   "event_time": now + dt, **extra})

    ctx = {"placement": "homepage", "session_id": "s1"}
    behave(anon, "impression", None, 0, items=["i1", "i2"], context=ctx, recommendation_id="rec1",
           experiment_id="X", variant_id="B")
    behave(anon, "recommendation_click", "i1", 1, context=ctx, recommendation_id="rec1", experiment_id="X",
           variant_id="B")
    dev = {"device": "Mobile", "channel": "web"}  # counted lower-case, per funnel step (conversion)
    behave(anon, "view", "i1", 2, context={"page": "product", "session_id": "s1", **dev})
    behave(anon, "add_to_cart", "i1", 3, context={"page": "product", "session_id": "s1", **dev})
    behave(known, "view", "i2", -100_000)  # earlier than the anonymous session
    prod.send_identity({"event_id": f"{tag}-id1", "event_type": "create", "user_id": known, "event_time": now,
                        "attributes": {"name": "Kim", "tier": 2}})
    prod.send_identity({"event_id": f"{tag}-id2", "event_type": "preferences", "user_id": known,
                        "event_time": now + 1, "preferences": {"categories": {"books": 1.0},
                                                               "channels": {"email": True}}})
    assert prod.flush().failed == 0

    def profile(u):
        r = api_client.get(f"/v1/profiles/{u}")
        return r.json() if r.status_code == 200 else None

    wait_for(lambda: (profile(anon) or {}).get("counts", {}).get("add_to_cart") == 1, what="anonymous profile")
    wait_for(lambda: (profile(known) or {}).get("preferences"), what="known profile with preferences")

    # merge the anonymous history into the known user; later events of the anonymous id follow
    prod.send_identity({"event_id": f"{tag}-id3", "event_type": "merge", "user_id": known, "anonymous_id": anon,
                        "event_time": now + 5})
    assert prod.flush().failed == 0
    wait_for(lambda: api_client.get(f"/v1/profiles/{anon}").status_code == 404, what="anonymous id merged away")
    behave(anon, "purchase", "i1", 6, context={"page": "checkout", "session_id": "s1", **dev},
           order={"order_id": f"o-{tag}", "currency": "USD",
                  "lines": [{"item_id": "i1", "quantity": 2, "unit_price": 300.0}]})
    prod.send_raw(known.encode(), b"\x01not avro", layout.topic(s, layout.IDENTITY))
    assert prod.flush().failed == 0
    doc = wait_for(lambda: (p := profile(known)) and p["orders"] == 1 and p, what="purchase on the known user")
    assert doc["counts"] == {"impression": 1, "recommendation_click": 1, "view": 2, "add_to_cart": 1, "purchase": 1}
    assert doc["lifetime_value"] == 600.0
    assert doc["attributes"] == {"name": "Kim", "tier": 2}
    assert doc["preferences"]["categories"] == {"books": 1.0}
    assert doc["recent_items"][:2] == ["i1", "i2"]
    assert doc["sessions"] == 2 and doc["lifecycle"] == "new"
    assert "vip" in doc["segments"] and "buyer" in doc["segments"]
    assert 0 < doc["engagement"] <= 100
    assert doc["affinities"] == {"price:250+": pytest.approx(5.0, rel=1e-3)}  # no catalog: price from the order
    members = api_client.get("/v1/segments/vip/members").json()
    assert known in members["members"] and anon not in members["members"]
    assert api_client.get("/v1/segments/nope/members").status_code == 404

    # analytics over the last two hours
    q = {"grain": "hour", "from": now - 3_600_000, "to": now + 3_600_000}
    rev = api_client.get("/v1/analytics/revenue", params=q).json()
    assert (rev["revenue"], rev["orders"], rev["average_order_value"]) == (600.0, 1, 600.0)
    att = api_client.get("/v1/analytics/attribution", params=q).json()
    assert att["attributed_revenue"] == 600.0 and att["by_placement"] == {"homepage": 600.0}
    assert att["by_variant"][0].items() >= {"experiment_id": "X", "variant_id": "B", "orders": 1,
                                             "revenue": 600.0}.items()
    funnel = api_client.get("/v1/analytics/funnel", params=q).json()["steps"]
    assert [(st["name"], st["events"], st["users"]) for st in funnel] == [
        ("view", 2, 2), ("add_to_cart", 1, 1), ("purchase", 1, 1)]
    pl = api_client.get("/v1/analytics/placements", params=q).json()["placements"]
    assert pl == [{"placement": "homepage", "impressions": 1, "clicks": 1, "ctr": 1.0}]
    items = {r["item_id"]: r for r in api_client.get("/v1/analytics/items", params=q).json()["items"]}
    assert items["i1"]["views"] == 1 and items["i1"]["clicks"] == 1 and items["i1"]["units"] == 2
    eng = api_client.get("/v1/analytics/engagement", params=q).json()
    assert eng["events"]["view"] == 2 and eng["active_users"] == 2
    paths = api_client.get("/v1/analytics/journeys", params={**q, "grain": "day"}).json()["journeys"]
    assert {"path": ["homepage", "product", "checkout"], "sessions": 1} in paths
    assert api_client.get("/v1/analytics/revenue", params={**q, "from": q["to"]}).status_code == 422
    conv = api_client.get("/v1/analytics/conversion", params=q).json()
    assert [(st["name"], st["users"]) for st in conv["steps"]] == [("view", 2), ("add_to_cart", 1), ("purchase", 1)]
    assert conv["overall"] == 0.5
    assert conv["by_device"] == {"mobile": {"view": 1, "add_to_cart": 1, "purchase": 1, "conversion": 1.0}}
    assert conv["by_channel"] == {"web": {"view": 1, "add_to_cart": 1, "purchase": 1, "conversion": 1.0}}
    assert conv["by_placement"] == [{"placement": "homepage", "impressions": 1, "clicks": 1, "ctr": 1.0,
                                     "attributed_orders": 1, "attributed_revenue": 600.0, "conversion": 1.0}]
    assert conv["by_experiment"][0].items() >= {"experiment_id": "X", "variant_id": "B", "orders": 1,
                                                 "clicks": 1, "conversion": 1.0}.items()
    # the same window as a timeframe, and with ISO dates
    iso = {"grain": "hour", "from": datetime.fromtimestamp((now - 3_600_000) / 1000, UTC).isoformat(),
           "to": datetime.fromtimestamp((now + 3_600_000) / 1000, UTC).isoformat()}
    for other in ({"grain": "hour", "timeframe": "2h", "to": now + 3_600_000}, iso):
        again = api_client.get("/v1/analytics/conversion", params=other)
        assert again.status_code == 200, again.text
        assert again.json()["steps"] == conv["steps"] and again.json()["by_placement"] == conv["by_placement"]
    assert api_client.get("/v1/analytics/revenue", params={"timeframe": "30d"}).json()["grain"] == "hour"
    assert api_client.get("/v1/analytics/revenue", params={"timeframe": "200d"}).json()["grain"] == "day"
    for bad in ({"from": "yesterday"}, {"timeframe": "30x"}, {"timeframe": "2d", "from": now}):
        assert api_client.get("/v1/analytics/conversion", params=bad).status_code == 422, bad

    # the aggregate topics and the durable snapshot
    def published():
        out = io.StringIO()
        latest = tail(s, "revenue", once=True, out=out, idle_s=1.0)
        return [r for r in latest.values() if r["revenue"] == 600.0 and r["experiment_id"] is None]

    recs = wait_for(published, timeout=60, interval=1.0, what="agg.revenue record")
    assert recs[0]["attributed_revenue"] == 600.0 and recs[0]["orders"] == 1
    hour = (now // 3_600_000) * 3_600_000
    row = wait_for(lambda: cassandra.execute(
        f"SELECT value FROM {s.cassandra.keyspace}.analytics_totals WHERE grain = 'hour' AND period = %s "
        "AND bucket = %s AND metric = 'rev'", (hour, hour)).one(), what="durable analytics snapshot")
    assert row.value >= 600.0  # the shared test keyspace: other tests may add to the same hour

    # Redis lost the user: the API answers the same profile from Cassandra
    keys = RedisKeys(s.redis.prefix)
    redis_client.delete(keys.user_state(known), keys.user_attrs(known))
    cold = api_client.get(f"/v1/profiles/{known}").json()
    assert cold["source"] == "cassandra"
    assert cold["counts"] == doc["counts"] and cold["lifetime_value"] == 600.0 and cold["segments"] == doc["segments"]
    assert cold["recent_items"] == doc["recent_items"] and cold["sessions"] == 2

    # erase: gone from Redis, Cassandra and the segments, with a tombstone on the identity topic
    prod.send_identity({"event_id": f"{tag}-id4", "event_type": "erase", "user_id": known, "event_time": now + 7})
    assert prod.flush().failed == 0
    wait_for(lambda: api_client.get(f"/v1/profiles/{known}").status_code == 404, what="erased")
    assert known not in redis_client.smembers(RedisKeys(s.redis.prefix).segment_members("vip"))
    assert cassandra.execute(f"SELECT doc FROM {s.cassandra.keyspace}.user_profile WHERE user_id = %s",
                             (known,)).one() is None
    assert cassandra.execute(f"SELECT user_id FROM {s.cassandra.keyspace}.segment_members WHERE segment = 'vip' "
                             "AND user_id = %s", (known,)).one() is None
    c = Consumer({"bootstrap.servers": s.kafka.bootstrap, "group.id": f"t-{tag}", "auto.offset.reset": "earliest"})
    c.subscribe([layout.topic(s, layout.IDENTITY)])
    tombstone = None
    deadline = time.monotonic() + 30
    while tombstone is None and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error() and m.key() == known.encode() and m.value() is None:
            tombstone = m
    c.close()
    assert tombstone is not None
    assert int(redis_client.hget(f"{s.redis.prefix}:metrics:deadletter", "bad_frame") or 0) == 1


def test_old_events_are_counted_in_their_bucket_and_analytics_fall_back_to_cassandra(
        isolated, worker_factory, api_client, redis_client, cassandra):
    s = isolated.replace(**{"agg_publish_interval_s": 1.0})
    worker_factory(s)
    prod = EventProducer(s, bootstrap.kafka_producer(s))
    tag = uuid.uuid4().hex[:8]
    # an hour ~100-300 days ago that no other test uses: the Cassandra snapshot is this test's alone
    hour = (int(time.time() * 1000) // 3_600_000 - 2400 - int(tag, 16) % 4800) * 3_600_000
    user = f"old-{tag}"
    for i, etype in enumerate(["view", "add_to_cart", "purchase"]):
        extra = {"order": {"order_id": f"o-{tag}", "lines": [{"item_id": "i1", "quantity": 1, "unit_price": 42.5}]}} \
            if etype == "purchase" else {}
        prod.send({"event_id": f"{tag}-{i}", "event_type": etype, "user_id": user, "item_id": "i1",
                   "event_time": hour + 60_000 * i, **extra})
    assert prod.flush().failed == 0
    q = {"grain": "hour", "from": hour, "to": hour + 3_600_000}
    hot = wait_for(lambda: (r := api_client.get("/v1/analytics/revenue", params=q).json())["orders"] == 1 and r,
                   what="revenue of the old hour")
    assert hot["source"] == "redis" and hot["revenue"] == 42.5

    wait_for(lambda: cassandra.execute(
        f"SELECT value FROM {s.cassandra.keyspace}.analytics_totals WHERE grain = 'hour' AND period = %s "
        "AND bucket = %s AND metric = 'orders'", (hour, hour)).one(), timeout=60, what="the durable snapshot")
    for k in redis_client.scan_iter(f"{s.redis.prefix}:an:*", count=1000):
        if ":hour:" in k:
            redis_client.delete(k)
    got = api_client.get("/v1/analytics/revenue", params=q).json()
    assert got["source"] == "cassandra" and got["orders"] == 1
    assert got["revenue"] == 42.5 and got["average_order_value"] == 42.5
    funnel = api_client.get("/v1/analytics/funnel", params=q).json()
    assert funnel["source"] == "cassandra"
    assert [st["events"] for st in funnel["steps"]] == [1, 1, 1]

    # minute buckets: three of them in one day's partition, read back by one range query
    day = hour - hour % 86_400_000
    wait_for(lambda: cassandra.execute(
        f"SELECT value FROM {s.cassandra.keyspace}.analytics_totals WHERE grain = 'minute' AND period = %s "
        "AND bucket = %s AND metric = 'orders'", (day, hour + 120_000)).one(), timeout=60, what="minute snapshot")
    for k in redis_client.scan_iter(f"{s.redis.prefix}:an:*", count=1000):
        if ":minute:" in k:
            redis_client.delete(k)
    mq = {"grain": "minute", "from": hour, "to": hour + 180_000}
    got = api_client.get("/v1/analytics/revenue", params=mq).json()
    assert got["source"] == "cassandra" and got["orders"] == 1 and got["revenue"] == 42.5
    funnel = api_client.get("/v1/analytics/funnel", params=mq).json()
    assert funnel["source"] == "cassandra" and [st["events"] for st in funnel["steps"]] == [1, 1, 1]

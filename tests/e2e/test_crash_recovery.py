"""Correct under failure: replay N events, SIGKILL the worker at random points several times,
restart, and compare every profile, segment set and analytics counter with a recomputation from
the raw events on the topic (a pure reference fold, event by event): equal.
"""

from __future__ import annotations

import json
import math
import random
import signal
import time
import uuid
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from aura import bootstrap, layout
from aura.demo import Storefront
from aura.keys import RedisKeys
from aura.producer import EventProducer
from aura.settings import Settings
from aura.state import profile_codec
from aura.state.profiles import Profile, ProfileConfig
from schemas.codec import codec
from streams import analytics, profiles
from streams.intake import RawRecord, split
from tests.conftest import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow]


# ---------------------------------------------------------------------------------------------
# Helpers shared with test_scale_out.py


def produce_storefront(s: Settings, n: int, seed: int, users: int = 300) -> int:
    """``n`` demo events (event times in the last hour) plus a few client retries (same event_id)."""
    producer = EventProducer(s, bootstrap.kafka_producer(s))
    shop = Storefront(seed=seed, n_users=users, n_items=200, user_prefix=f"c{uuid.uuid4().hex[:4]}-")
    start = int(time.time() * 1000) - 3600 * 1000
    sent = 0
    retries = []
    for ev in shop.events(start):
        if ev["event_time"] > start + 3500 * 1000:
            ev["event_time"] = start + 3500 * 1000
        producer.send(ev)
        sent += 1
        if sent % 97 == 0:
            retries.append(dict(ev))
        if sent >= n:
            break
    for ev in retries:  # the same event again: dropped as a duplicate
        producer.send(ev)
    assert producer.flush(60).failed == 0
    return sent + len(retries)


def read_topic(s: Settings) -> list[RawRecord]:
    """Every record of the behavior topic, in (partition, offset) order."""
    topic = layout.topic(s, layout.BEHAVIOR)
    c = Consumer({"bootstrap.servers": s.kafka.bootstrap, "group.id": f"ref-{uuid.uuid4()}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in range(s.kafka.topic_partitions)}
    c.assign([TopicPartition(topic, p, 0) for p in range(s.kafka.topic_partitions)])
    out: list[RawRecord] = []
    got = {p: 0 for p in ends}
    deadline = time.monotonic() + 60
    while any(got[p] < ends[p] for p in ends) and time.monotonic() < deadline:
        for m in c.consume(1000, 0.5):
            if m.error():
                continue
            out.append(RawRecord(m.topic(), m.partition(), m.offset(), m.key(), m.value()))
            got[m.partition()] = m.offset() + 1
    c.close()
    assert all(got[p] >= ends[p] for p in ends), f"could not read the topic: {got} vs {ends}"
    return sorted(out, key=lambda r: (r.partition, r.offset))


def lag(s: Settings) -> int:
    """Records of the behavior topic not yet committed by the worker group."""
    topic = layout.topic(s, layout.BEHAVIOR)
    c = Consumer({"bootstrap.servers": s.kafka.bootstrap, "group.id": s.kafka.consumer_group,
                  "enable.auto.commit": False})
    parts = [TopicPartition(topic, p) for p in range(s.kafka.topic_partitions)]
    committed = c.committed(parts, timeout=10)
    total = 0
    for tp in committed:
        high = c.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=10)[1]
        total += high - max(tp.offset, 0)
    c.close()
    return total


def reference(s: Settings, records: list[RawRecord]) -> tuple[dict[str, Profile], dict[int, analytics.Contribution]]:
    """The state the worker must hold: the pure folds applied one event at a time."""
    now = int(time.time() * 1000)
    accepted, _dead = split(records, codec("behavior_event"), now)
    seen: set[str] = set()
    cfg = ProfileConfig.from_settings(s)
    users: dict[str, Profile] = {}
    facts = []
    for a in accepted:  # (partition, offset) order; duplicates of an event_id keep the first record
        if a.event.event_id in seen:
            continue
        seen.add(a.event.event_id)
        p = users.setdefault(a.event.user_id, Profile())
        facts += profiles.fold_user(p, [a], cfg, lambda _i: None)
    return users, analytics.fold(facts, {})


def assert_state_equals_reference(s: Settings, redis: Any, cassandra: Any, records: list[RawRecord]) -> int:
    """Compare every profile, segment set and analytics counter; returns the number of users checked."""
    keys = RedisKeys(s.redis.prefix)
    users, contributions = reference(s, records)
    cfg = ProfileConfig.from_settings(s)
    # profiles: Redis (exact: same fold, same order; the stored form is lossless, profile_codec.pack)
    for u, p in users.items():
        got = profile_codec.read_sync(redis, keys, u)
        assert got is not None, f"no profile of {u}"
        got.version = p.version  # how many writes it took depends on the batching, not the state
        assert got == p, f"profile of {u} differs from the reference"
    # profiles: Cassandra rows hold the same absolute values
    for u, p in users.items():
        row = cassandra.execute(f"SELECT counts, recent_items FROM {s.cassandra.keyspace}.user_activity "
                                "WHERE user_id = %s", (u,)).one()
        assert dict(row.counts) == p.counts and list(row.recent_items or []) == p.recent, u
        doc = cassandra.execute(f"SELECT doc FROM {s.cassandra.keyspace}.user_profile WHERE user_id = %s",
                                (u,)).one()
        assert doc is not None and json.loads(doc.doc) == profile_codec.durable_doc(p), f"user_profile row of {u}"
    # segments: the member sets are exactly the users whose profile says so
    for name in cfg.rules:
        expected = {u for u, p in users.items() if name in p.segments}
        assert redis.smembers(keys.segment_members(name)) == expected, f"segment {name}"
        rows = cassandra.execute(f"SELECT user_id FROM {s.cassandra.keyspace}.segment_members WHERE segment = %s",
                                 (name,))
        assert {r.user_id for r in rows if r.user_id in users} == expected, f"segment {name} in Cassandra"
    # analytics: every bucket of every partition, every metric; HLLs against a reference HLL
    for part, c in contributions.items():
        assert int(redis.get(keys.analytics_fence(part))) == c.offset
        for (grain, b), metrics in c.deltas.items():
            got = redis.hgetall(keys.analytics_bucket(part, grain, b))
            want = {m: v for m, v in metrics.items() if v}
            got_nonzero = {m: float(v) for m, v in got.items() if float(v) != 0}
            assert set(got_nonzero) == set(want), f"metrics of {grain}:{b} p{part}"
            for m, v in want.items():
                assert math.isclose(got_nonzero[m], v, rel_tol=1e-9, abs_tol=1e-6), (grain, b, part, m)
        for (grain, b, what), members in c.users.items():
            tmp = f"{s.redis.prefix}:reftmp:{uuid.uuid4().hex}"
            redis.pfadd(tmp, *members)
            assert redis.pfcount(keys.analytics_hll(part, grain, b, what)) == redis.pfcount(tmp), (grain, b, what)
            redis.delete(tmp)
    return len(users)


def wait_drained(s: Settings, workers: list[Any], timeout: float = 240) -> None:
    def drained() -> bool:
        for w in workers:
            assert w.proc.poll() is None, f"worker died:\n{w.tail()}"
        return lag(s) == 0

    wait_for(drained, timeout=timeout, interval=1.0, what="consumer lag 0")
    time.sleep(2.0)  # the batch whose offsets were just committed has written its state


# ---------------------------------------------------------------------------------------------


def test_sigkill_at_random_points_then_state_equals_reference_fold(isolated, worker_factory, redis_client,
                                                                    cassandra):
    s = isolated.replace(**{"batch_max": 500, "batch_catchup_max": 1000, "kafka_session_timeout_s": 10.0})
    n = produce_storefront(s, 20_000, seed=11)
    rng = random.Random(4)
    mid_stream_kills = 0
    before = lag(s)
    for _ in range(6):
        w = worker_factory(s)
        # once the worker has committed something, kill it at a random point soon after
        wait_for(lambda: w.proc.poll() is not None or lag(s) < before, timeout=120, interval=0.2,  # noqa: B023
                 what="the worker to make progress")
        time.sleep(rng.uniform(0.0, 1.5))
        assert w.proc.poll() is None, w.tail()
        w.proc.send_signal(signal.SIGKILL)
        w.proc.wait()
        after = lag(s)
        if 0 < after < before:  # killed after some progress, before the end
            mid_stream_kills += 1
        before = after
        if after == 0 or mid_stream_kills >= 3:
            break
    assert mid_stream_kills >= 2, "the worker was not killed mid-stream: make the stream longer"
    final = worker_factory(s)
    wait_drained(s, [final])
    records = read_topic(s)
    assert len(records) == n
    checked = assert_state_equals_reference(s, redis_client, cassandra, records)
    assert checked > 100
    # the comparison itself can fail: one counter counted twice is caught
    keys = RedisKeys(s.redis.prefix)
    some = next(k for k in redis_client.scan_iter(keys.analytics_bucket(0, "minute", 0)[:-1] + "*") if ":hll:" not in k)
    redis_client.hincrby(some, "ev", 1)
    with pytest.raises(AssertionError):
        assert_state_equals_reference(s, redis_client, cassandra, records)

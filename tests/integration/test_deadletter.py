"""Hostile records on the real behavior topic with a running worker: each one lands on the
dead-letter topic with its reason, source topic/partition/offset and raw bytes, the worker keeps
going, and the Redis counters count dead letters (per reason) and duplicates."""

from __future__ import annotations

import random
import time
import uuid

import pytest
from confluent_kafka import Consumer

from aura import bootstrap, layout
from aura.keys import RedisKeys
from aura.state import profile_codec
from schemas.codec import MAGIC, codec
from streams.intake import MAX_DEAD_BYTES
from tests.conftest import wait_for

pytestmark = [pytest.mark.integration]


def test_bad_records_are_dead_lettered_with_source_and_counted(isolated, worker_factory, redis_client):
    worker_factory()
    keys = RedisKeys(isolated.redis.prefix)
    source = layout.topic(isolated, layout.BEHAVIOR)
    user = f"user-{uuid.uuid4().hex[:8]}"
    now = int(time.time() * 1000)
    c = codec("behavior_event")

    def ev(**over) -> bytes:
        return c.encode({"event_id": f"{user}-{uuid.uuid4().hex[:6]}", "event_type": "view", "user_id": user,
                         "item_id": "i1", "event_time": now, **over})

    rng = random.Random(3)
    good = ev(event_id=f"{user}-good")
    bad = {
        "truncated": (ev()[:-4], "undecodable"),
        "random bytes": (bytes(rng.getrandbits(8) for _ in range(80)), "bad_frame"),
        "unknown fingerprint": (MAGIC + b"\x5a" * 8 + ev()[10:], "unknown_schema"),
        "another schema": (codec("catalog_item").encode({"event_id": "c", "event_type": "delete", "item_id": "i",
                                                          "event_time": now}), "unknown_schema"),
        "unknown type": (ev(event_type="teleport"), "unknown_event_type"),
        "missing event id": (ev(event_id=""), "bad_event_id"),
        "missing user": (ev(user_id=None), "missing_user"),
        "far future": (ev(event_time=now + 7 * 86400_000), "event_time_in_future"),
        "far past": (ev(event_time=now - 5 * 365 * 86400_000), "event_time_too_old"),
        "non-utf8": (MAGIC + c.fingerprint + b"\x06\xff\xfe\xfd" + ev()[13:], "undecodable"),
        "oversized": (MAGIC + c.fingerprint + b"\x00" * 1_100_000, "oversized"),
        "json": (b'{"event_id": "x", "event_type": "view"}', "bad_frame"),
    }
    delivered: dict[bytes, tuple[int, int]] = {}

    def on_delivery(err, msg):
        assert err is None, err
        delivered[msg.value()] = (msg.partition(), msg.offset())

    producer = bootstrap.kafka_producer(isolated)
    producer.produce(source, key=user.encode(), value=good, on_delivery=on_delivery)
    for value, _reason in bad.values():
        producer.produce(source, key=user.encode(), value=value, on_delivery=on_delivery)
    producer.produce(source, key=user.encode(), value=good, on_delivery=on_delivery)  # a client retry
    producer.produce(source, key=user.encode(), value=ev(event_id=f"{user}-after"), on_delivery=on_delivery)
    assert producer.flush(30) == 0

    # the worker kept going: the good events before and after the bad ones were applied once
    def counts():
        intake = redis_client.hgetall(keys.intake_count())
        return intake if int(intake.get("accepted", 0)) >= 2 and int(intake.get("duplicate", 0)) >= 1 else None

    intake = wait_for(counts, timeout=60, what="intake counters")
    assert intake["accepted"] == "2" and intake["duplicate"] == "1"
    activity = wait_for(lambda: profile_codec.read_sync(redis_client, keys, user), what="user activity")
    assert activity.counts["view"] == 2

    consumer = Consumer({"bootstrap.servers": isolated.kafka.bootstrap, "group.id": f"dl-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest", "fetch.message.max.bytes": 2_000_000})
    consumer.subscribe([layout.topic(isolated, layout.DEADLETTER)])
    letters = []
    deadline = time.monotonic() + 60
    while len(letters) < len(bad) and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and not msg.error():
            letters.append((msg.key(), codec("dead_letter").decode(msg.value())))
    consumer.close()
    assert len(letters) == len(bad)

    by_offset = {d["source_offset"]: (key, d) for key, d in letters}
    for name, (value, reason) in bad.items():
        partition, offset = delivered[value]
        key, d = by_offset[offset]
        assert d["reason"] == reason, name
        assert (d["source_topic"], d["source_partition"]) == (source, partition), name
        assert key == user.encode() and d["key"] == user.encode(), name
        assert abs(d["dead_at"].timestamp() * 1000 - now) < 600_000, name
        if name == "oversized":
            assert d["value"] == value[:MAX_DEAD_BYTES] and "truncated" in d["detail"]
        else:
            assert d["value"] == value, name

    dead_counts = redis_client.hgetall(keys.deadletter_count())
    expected: dict[str, int] = {}
    for _value, reason in bad.values():
        expected[reason] = expected.get(reason, 0) + 1
    assert {k: int(v) for k, v in dead_counts.items()} == expected

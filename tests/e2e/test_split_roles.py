"""The worker's roles split over two consumer groups (``aura worker --split``): one process runs
profiles + analytics, another the recommenders and decisions. Each group reads every partition at
its own pace; the state equals the reference fold, and the intake's counts and dead letters are
written once (by the profiles group), not once per group."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Consumer, TopicPartition

from aura import bootstrap, layout
from aura.keys import RedisKeys
from aura.producer import EventProducer
from schemas.codec import codec
from streams.intake import split
from tests.conftest import wait_for
from tests.e2e.test_crash_recovery import assert_state_equals_reference, lag, produce_storefront, read_topic

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow]


def topic_size(s, spec) -> int:  # noqa: ANN001
    topic = layout.topic(s, spec)
    c = Consumer({"bootstrap.servers": s.kafka.bootstrap, "group.id": "size-probe"})
    try:
        return sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                   - c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[0]
                   for p in range(spec.partitions or s.kafka.topic_partitions))
    finally:
        c.close()


def test_split_roles_each_fold_every_event_and_the_intake_is_counted_once(isolated, worker_factory,
                                                                           redis_client, cassandra):
    s = isolated.replace(**{"batch_max": 500, "batch_catchup_max": 1000})
    roles = {r: s.replace(**{"worker_roles": r}) for r in layout.SPLIT_ROLES}
    groups = {r: rs.replace(**{"consumer_group": layout.worker_group(rs)}) for r, rs in roles.items()}
    assert len({g.kafka.consumer_group for g in groups.values()}) == len(layout.SPLIT_ROLES)
    for r, rs in roles.items():
        worker_factory(rs, name=r.replace(",", "+"))
    n = produce_storefront(s, 3_000, seed=31)
    producer = EventProducer(s, bootstrap.kafka_producer(s))
    producer.send_raw(b"u-bad", b"\x00not avro at all")  # one dead letter, written once
    assert producer.flush(30).failed == 0

    wait_for(lambda: all(lag(g) == 0 for g in groups.values()), timeout=240, interval=1.0,
             what="every role group drained")
    wait_for(lambda: topic_size(s, layout.DEADLETTER) >= 1, timeout=30, what="the dead letter")

    records = read_topic(s)
    assert len(records) == n + 1
    assert_state_equals_reference(s, redis_client, cassandra, records)
    keys = RedisKeys(s.redis.prefix)
    accepted, dead = split(records, codec("behavior_event"), int(time.time() * 1000))
    distinct = len({a.event.event_id for a in accepted})
    counts = redis_client.hgetall(keys.intake_count())
    assert int(counts["accepted"]) == distinct
    assert int(counts["duplicate"]) == len(accepted) - distinct
    assert sum(int(v) for v in redis_client.hgetall(keys.deadletter_count()).values()) == len(dead) == 1
    assert topic_size(s, layout.DEADLETTER) == 1
    # the other group folded the same events: every item of the stream is in the popularity set
    items = {a.event.item_id for a in accepted if a.event.item_id}
    assert set(redis_client.zrange(keys.recs_popular(), 0, -1)) == items

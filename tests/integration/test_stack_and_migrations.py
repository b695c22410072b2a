"""The shared stack answers, and migrations shape Kafka and Cassandra idempotently."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka.admin import ConfigResource

from aura import layout
from aura.bootstrap import kafka_admin, redis_sync
from aura.keys import RedisKeys
from infra import stack as local_stack
from infra.migrate import migrate

pytestmark = [pytest.mark.integration]


def test_every_service_answers(stack):
    report = local_stack.status(stack)
    assert {name: info["answers"] for name, info in report.items()} == {"kafka": True, "cassandra": True,
                                                                          "redis": True, "mail": True}


def test_up_on_a_running_stack_starts_nothing(stack):
    before = {n: local_stack.status(stack)[n]["pid"] for n in local_stack.SERVICES}
    local_stack.up(stack)
    assert {n: local_stack.status(stack)[n]["pid"] for n in local_stack.SERVICES} == before


def test_migrations_create_topics_and_tables_once(stack, cassandra):
    s = stack.replace(**{"topic_prefix": f"m{uuid.uuid4().hex[:8]}",
                                 "cassandra_keyspace": f"mig_{uuid.uuid4().hex[:8]}"})
    try:
        first = migrate(s)
        assert first and first == sorted(first)
        assert migrate(s) == []  # nothing pending the second time
        tables = {r.table_name for r in cassandra.execute(
            "SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s", (s.cassandra.keyspace,))}
        assert {layout.Tables.MIGRATIONS, layout.Tables.USER_ACTIVITY} <= tables
        admin = kafka_admin(s)
        md = admin.list_topics(timeout=10)
        for spec in layout.ALL_TOPICS:
            name = layout.topic(s, spec)
            assert name in md.topics, name
            assert len(md.topics[name].partitions) == (spec.partitions or s.kafka.topic_partitions)
        resources = [ConfigResource("topic", layout.topic(s, spec)) for spec in (layout.CATALOG, layout.BEHAVIOR)]
        configs = {r.name: f.result() for r, f in admin.describe_configs(resources).items()}
        assert configs[layout.topic(s, layout.CATALOG)]["cleanup.policy"].value == "compact"
        assert configs[layout.topic(s, layout.BEHAVIOR)]["cleanup.policy"].value == "delete"
    finally:
        cassandra.execute(f"DROP KEYSPACE IF EXISTS {s.cassandra.keyspace}", timeout=60)
        created = [t for t in kafka_admin(s).list_topics(timeout=10).topics if t.startswith(f"{s.kafka.topic_prefix}.")]
        kafka_admin(s).delete_topics(created)


def test_analytics_snapshots_move_to_period_partitions_with_their_write_times(stack, cassandra):
    s = stack.replace(**{"topic_prefix": f"m{uuid.uuid4().hex[:8]}",
                         "cassandra_keyspace": f"mig_{uuid.uuid4().hex[:8]}"})
    ks = s.cassandra.keyspace
    try:
        migrate(s)
        # a keyspace as it was before the move: the old table with rows, the move not yet applied
        cassandra.execute(f"CREATE TABLE {ks}.{layout.Tables.ANALYTICS_COUNTERS} (grain text, bucket timestamp, "
                          "metric text, value double, PRIMARY KEY ((grain, bucket), metric))", timeout=60)
        day = 20_000 * 86_400_000
        old = [("minute", day + 60_000, "ev", 3.0, 111), ("minute", day + 120_000, "u:active", 2.0, 112),
               ("minute", day - 60_000, "ev", 1.0, 113), ("hour", day + 3_600_000, "rev", 42.5, 114),
               ("week", day, "ev", 7.0, 115)]  # a grain no code writes: not copied (and logged)
        for grain, bucket, metric, value, stamp in old:
            cassandra.execute(f"INSERT INTO {ks}.{layout.Tables.ANALYTICS_COUNTERS} (grain, bucket, metric, value) "
                              "VALUES (%s, %s, %s, %s) USING TIMESTAMP %s", (grain, bucket, metric, value, stamp))
        cassandra.execute(f"DELETE FROM {ks}.{layout.Tables.MIGRATIONS} WHERE version = 19")
        assert migrate(s) == [19]
        got = {(r.grain, r.period, r.bucket, r.metric): (r.value, r.stamp) for r in cassandra.execute(
            f"SELECT grain, toUnixTimestamp(period) AS period, toUnixTimestamp(bucket) AS bucket, metric, value, "
            f"WRITETIME(value) AS stamp FROM {ks}.{layout.Tables.ANALYTICS_TOTALS}")}
        assert got == {("minute", day, day + 60_000, "ev"): (3.0, 111),
                       ("minute", day, day + 120_000, "u:active"): (2.0, 112),
                       ("minute", day - 86_400_000, day - 60_000, "ev"): (1.0, 113),
                       ("hour", day + 3_600_000, day + 3_600_000, "rev"): (42.5, 114)}
        tables = {r.table_name for r in cassandra.execute(
            "SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s", (ks,))}
        assert layout.Tables.ANALYTICS_COUNTERS not in tables
        # an older snapshot written after the move does not overwrite the copied one
        cassandra.execute(f"INSERT INTO {ks}.{layout.Tables.ANALYTICS_TOTALS} (grain, period, bucket, metric, value) "
                          "VALUES ('minute', %s, %s, 'ev', 0.0) USING TIMESTAMP 100", (day, day + 60_000))
        kept = cassandra.execute(f"SELECT value FROM {ks}.{layout.Tables.ANALYTICS_TOTALS} WHERE grain = 'minute' "
                                 "AND period = %s AND bucket = %s AND metric = 'ev'", (day, day + 60_000)).one()
        assert kept.value == 3.0
    finally:
        cassandra.execute(f"DROP KEYSPACE IF EXISTS {ks}", timeout=60)
        created = [t for t in kafka_admin(s).list_topics(timeout=10).topics if t.startswith(f"{s.kafka.topic_prefix}.")]
        kafka_admin(s).delete_topics(created)


def test_the_old_mf_candidate_sets_are_dropped_and_nothing_else(stack, cassandra):
    tag = f"m{uuid.uuid4().hex[:8]}"
    s = stack.replace(**{"topic_prefix": tag, "redis_prefix": tag, "cassandra_keyspace": f"mig_{tag}"})
    k = RedisKeys(tag)
    redis_client = redis_sync(s)
    try:
        migrate(s)
        old = [f"{tag}:recs:user:{{{u}}}:mf" for u in ("a", "b:c", "d*e")]  # as earlier versions wrote them
        for key in old:
            redis_client.zadd(key, {"i1": 0.5, "i2": 0.25})
        kept = {k.recs_user_batch("a", "mf"): "zset", k.recs_user_cands("a", "mf"): "hash",
                k.recs_user_state("a"): "hash", f"{tag}x:recs:user:{{a}}:mf": "zset"}  # another prefix
        for key, kind in kept.items():
            if kind == "zset":
                redis_client.zadd(key, {"i1": 1.0})
            else:
                redis_client.hset(key, "f", "1")
        cassandra.execute(f"DELETE FROM {s.cassandra.keyspace}.{layout.Tables.MIGRATIONS} WHERE version = 20")
        assert migrate(s) == [20]
        assert redis_client.exists(*old) == 0
        assert redis_client.exists(*kept) == len(kept)
    finally:
        cassandra.execute(f"DROP KEYSPACE IF EXISTS {s.cassandra.keyspace}", timeout=60)
        created = [t for t in kafka_admin(s).list_topics(timeout=10).topics if t.startswith(f"{s.kafka.topic_prefix}.")]
        kafka_admin(s).delete_topics(created)
        for key in redis_client.scan_iter(match=f"{tag}*", count=1000):
            redis_client.delete(key)
        redis_client.close()

"""Scale-out: two workers in one consumer group split the partitions; when one dies (SIGKILL) the
other takes its partitions over, and the state equals the reference fold of every event."""

from __future__ import annotations

import signal
import time

import pytest

from aura import bootstrap, layout
from tests.conftest import wait_for
from tests.e2e.test_crash_recovery import assert_state_equals_reference, produce_storefront, read_topic, wait_drained

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow]


def assignments(s) -> dict[str, set[int]]:
    """Consumer group member -> behavior partitions assigned."""
    admin = bootstrap.kafka_admin(s)
    desc = admin.describe_consumer_groups([s.kafka.consumer_group])[s.kafka.consumer_group].result(timeout=10)
    topic = layout.topic(s, layout.BEHAVIOR)
    return {m.member_id: {tp.partition for tp in m.assignment.topic_partitions if tp.topic == topic}
            for m in desc.members}


def test_two_workers_split_partitions_and_one_takes_over_when_the_other_dies(isolated, worker_factory,
                                                                                redis_client, cassandra):
    s = isolated.replace(**{"batch_max": 500, "batch_catchup_max": 1000, "kafka_session_timeout_s": 10.0})
    a = worker_factory(s, name="a")
    b = worker_factory(s, name="b")

    def split_between_two():
        got = assignments(s)
        parts = [p for p in got.values() if p]
        return got if len(parts) == 2 and set().union(*parts) == set(range(s.kafka.topic_partitions)) else None

    wait_for(split_between_two, timeout=90, interval=1.0, what="both workers to own behavior partitions")
    produce_storefront(s, 6_000, seed=21)
    time.sleep(2.0)
    a.proc.send_signal(signal.SIGKILL)
    a.proc.wait()
    produce_storefront(s, 6_000, seed=22)

    def b_owns_all():
        got = assignments(s)
        return len(got) == 1 and next(iter(got.values())) == set(range(s.kafka.topic_partitions))

    wait_for(b_owns_all, timeout=90, interval=1.0, what="the survivor to own every partition")
    wait_drained(s, [b])
    assert_state_equals_reference(s, redis_client, cassandra, read_topic(s))

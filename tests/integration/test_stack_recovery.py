"""`aura stack` lifecycle on a private stack (own ports and data dir, shared Maven cache):
`up` twice is harmless, `kill -9` of Kafka or Cassandra is recovered by `up` with data intact, and
`down` leaves no process behind. It never touches the shared stack other tests use."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Consumer, Producer

from aura.bootstrap import cassandra_session
from aura.settings import REPO_ROOT, Settings
from infra import stack as local_stack

pytestmark = [pytest.mark.integration, pytest.mark.recovery, pytest.mark.slow]


@pytest.fixture
def private(tmp_path, stack: Settings):  # noqa: ARG001 - `stack` ensures the Maven cache is warm
    s = Settings().replace(
        home=tmp_path / "aura", maven_repo=REPO_ROOT / ".aura" / "m2",
        kafka_bootstrap="127.0.0.1:19092", kafka_controller_port=19093,
        cassandra_port=19042, cassandra_storage_port=17000, redis_url="redis://127.0.0.1:16379/0",
        cassandra_keyspace="recovery", topic_partitions=2, campaign_smtp_port=12525,
    )
    yield s
    local_stack.down(s)


def _consume_all(s: Settings, topic: str, expected: int) -> list[bytes]:
    c = Consumer({"bootstrap.servers": s.kafka.bootstrap, "group.id": f"r-{uuid.uuid4()}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    values: list[bytes] = []
    for _ in range(120):
        msg = c.poll(0.5)
        if msg is not None and not msg.error():
            values.append(msg.value())
        if len(values) >= expected:
            break
    c.close()
    return values


def test_up_is_idempotent_kill9_recovers_with_data_and_down_leaves_nothing(private: Settings):
    s = private
    first = local_stack.up(s)
    assert set(first) == {"kafka", "cassandra", "redis", "mail"}
    pids = {n: local_stack.read_pid(local_stack.Paths(s.home, s.stack.maven_repo), n) for n in local_stack.SERVICES}
    assert all(pids.values())
    # a second `up` starts nothing new
    local_stack.up(s)
    paths = local_stack.Paths(s.home, s.stack.maven_repo)
    assert {n: local_stack.read_pid(paths, n) for n in local_stack.SERVICES} == pids

    # durable data in Kafka and Cassandra
    producer = Producer({"bootstrap.servers": s.kafka.bootstrap, "acks": "all"})
    values = [f"v{i}".encode() for i in range(50)]
    for v in values:
        producer.produce("recovery-topic", value=v)
    assert producer.flush(30) == 0
    session = cassandra_session(s, keyspace=False)
    session.execute("CREATE KEYSPACE recovery WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}")
    session.execute("CREATE TABLE recovery.kv (k text PRIMARY KEY, v text)")
    for i in range(20):
        session.execute("INSERT INTO recovery.kv (k, v) VALUES (%s, %s)", (f"k{i}", f"v{i}"))
    session.cluster.shutdown()

    # crash both JVMs, then `up` again
    local_stack.kill(s, "kafka")
    local_stack.kill(s, "cassandra")
    assert not local_stack.status(s)["kafka"]["answers"]
    timings = local_stack.up(s)
    assert set(timings) == {"kafka", "cassandra", "redis", "mail"}

    assert sorted(_consume_all(s, "recovery-topic", len(values))) == sorted(values)
    session = cassandra_session(s, keyspace=False)
    rows = {r.k: r.v for r in session.execute("SELECT k, v FROM recovery.kv")}
    session.cluster.shutdown()
    assert rows == {f"k{i}": f"v{i}" for i in range(20)}

    # down leaves no process behind
    new_pids = {n: local_stack.read_pid(local_stack.Paths(s.home, s.stack.maven_repo), n) for n in local_stack.SERVICES}
    local_stack.down(s)
    for name, pid in new_pids.items():
        assert pid is not None and not local_stack.pid_alive(pid), name
    assert not any(local_stack.status(s)[n]["answers"] for n in local_stack.SERVICES)

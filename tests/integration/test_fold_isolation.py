"""One bad event, or one user's unreadable state, never stops the behavior lane: with a real worker,
raw Kafka records carrying numbers the system cannot hold are dead-lettered by the intake, an event
whose fold fails (its user's stored state is corrupt) is dead-lettered as ``fold_failed``, and every
other user's events of the same batches are folded."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Consumer

from aura import bootstrap, layout
from aura.keys import RedisKeys
from aura.state import profile_codec
from schemas.codec import codec
from tests.conftest import wait_for

pytestmark = [pytest.mark.integration]


def dead_letters(settings, n: int, timeout: float = 60.0) -> list[dict]:
    consumer = Consumer({"bootstrap.servers": settings.kafka.bootstrap, "group.id": f"dl-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([layout.topic(settings, layout.DEADLETTER)])
    out: list[dict] = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and not msg.error():
            out.append(codec("dead_letter").decode(msg.value()))
    consumer.close()
    return out


def test_a_fold_failure_is_dead_lettered_and_the_batch_goes_on(isolated, worker_factory, redis_client):
    keys = RedisKeys(isolated.redis.prefix)
    tag = uuid.uuid4().hex[:6]
    poisoned, good = f"poisoned-{tag}", [f"good-{tag}-{i}" for i in range(5)]
    redis_client.set(keys.user_state(poisoned), b"\x00\x00\x00\x01not msgpack at all")  # unreadable state
    source = layout.topic(isolated, layout.BEHAVIOR)
    c = codec("behavior_event")
    now = int(time.time() * 1000)
    producer = bootstrap.kafka_producer(isolated)

    def send(user: str, n: int, **over) -> None:
        rec = {"event_id": f"{user}-{n}", "event_type": "view", "user_id": user, "item_id": "i1",
               "event_time": now + n, **over}
        producer.produce(source, key=user.encode(), value=c.encode(rec))

    for n in range(3):
        for u in good:
            send(u, n)
        send(poisoned, n)
    # numbers Avro can carry and the system cannot hold, straight onto the topic
    send(good[0], 10, event_type="rating", value=float("nan"))
    send(good[0], 11, event_type="rating", value=float("inf"))
    send(good[0], 12, event_type="purchase", item_id=None, order={
        "order_id": "o1", "currency": "EUR", "lines": [{"item_id": "i1", "quantity": 1, "unit_price": 1e300}]})
    assert producer.flush(30) == 0
    worker_factory()

    def views(u: str) -> int:
        p = profile_codec.read_sync(redis_client, keys, u)
        return p.counts.get("view", 0) if p is not None else 0

    for u in good:
        wait_for(lambda u=u: views(u) == 3, timeout=60, what=f"the 3 views of {u}")
    letters = dead_letters(isolated, 6)
    reasons = sorted(d["reason"] for d in letters)
    assert reasons == ["bad_line_item", "bad_value", "bad_value", "fold_failed", "fold_failed", "fold_failed"], reasons
    failed = [d for d in letters if d["reason"] == "fold_failed"]
    assert {d["key"] for d in failed} == {poisoned.encode()}
    assert all("profiles" in d["detail"] for d in failed), failed[0]["detail"]
    counted = wait_for(lambda: redis_client.hgetall(keys.deadletter_count()).get("fold_failed"), what="counts")
    assert int(counted) == 3


def test_dead_letters_are_tailed_and_replayed_exactly_once_after_a_fix(isolated, worker_factory, redis_client):
    import os
    import subprocess
    import sys

    from aura.settings import REPO_ROOT, settings_env

    keys = RedisKeys(isolated.redis.prefix)
    user = f"fixme-{uuid.uuid4().hex[:6]}"
    redis_client.set(keys.user_state(user), b"\x00\x00\x00\x01corrupt")
    source = layout.topic(isolated, layout.BEHAVIOR)
    c = codec("behavior_event")
    now = int(time.time() * 1000)
    producer = bootstrap.kafka_producer(isolated)
    for n in range(2):
        producer.produce(source, key=user.encode(), value=c.encode({
            "event_id": f"{user}-{n}", "event_type": "view", "user_id": user, "item_id": "i1", "event_time": now + n}))
    producer.produce(source, key=b"x", value=b"\x01garbage")
    assert producer.flush(30) == 0
    worker_factory()
    assert len(dead_letters(isolated, 3)) == 3
    env = {**os.environ, **settings_env(isolated)}

    def aura(*args: str) -> str:
        out = subprocess.run([sys.executable, "-m", "aura.cli", "deadletter", *args], cwd=REPO_ROOT, env=env,
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        return out.stdout + out.stderr

    tail = aura("tail")
    assert tail.count("fold_failed") == 2 and "bad_frame" in tail and f"user_id='{user}'" in tail, tail
    assert f"{source}[" in tail and "3 dead letters" in tail
    redis_client.delete(keys.user_state(user))  # the fix: the corrupt state is gone
    out = aura("replay", "--reason", "fold_failed")
    assert "replayed 2" in out, out

    def views() -> int:
        p = profile_codec.read_sync(redis_client, keys, user)
        return p.counts.get("view", 0) if p is not None else 0

    wait_for(lambda: views() == 2, timeout=60, what="the replayed views folded")
    again = aura("replay", "--reason", "fold_failed")
    assert "replayed 0" in again and "already replayed 2" in again, again
    intake = wait_for(lambda: redis_client.hgetall(keys.intake_count()), what="intake counts")
    assert views() == 2 and int(intake["accepted"]) == 4  # 2 first sightings + 2 replays


def test_an_identity_event_that_cannot_be_applied_is_dead_lettered_and_the_batch_goes_on(
        isolated, worker_factory, redis_client):
    keys = RedisKeys(isolated.redis.prefix)
    tag = uuid.uuid4().hex[:6]
    poisoned, good = f"poisoned-{tag}", [f"good-{tag}-{i}" for i in range(4)]
    redis_client.set(keys.user_attrs(poisoned), "not a hash")  # every read of its attributes fails (WRONGTYPE)
    source = layout.topic(isolated, layout.IDENTITY)
    c = codec("identity_event")
    now = int(time.time() * 1000)
    producer = bootstrap.kafka_producer(isolated)

    def send(user: str, n: int) -> None:
        producer.produce(source, key=user.encode(), value=c.encode({
            "event_id": f"{user}-{n}", "event_type": "update", "user_id": user, "event_time": now + n,
            "attributes": {"tier": n}, "context": {}, "properties": {}}))

    for n in range(2):
        for u in good:
            send(u, n)
        send(poisoned, n)
    assert producer.flush(30) == 0
    worker_factory()
    for u in good:
        wait_for(lambda u=u: redis_client.hget(keys.user_attrs(u), "x:tier") == "1", timeout=60,
                 what=f"the attributes of {u}")
    letters = dead_letters(isolated, 2)
    assert sorted(d["reason"] for d in letters) == ["fold_failed", "fold_failed"], letters
    assert {d["key"] for d in letters} == {poisoned.encode()}
    assert all(d["detail"].startswith("identity: ResponseError") for d in letters), letters[0]["detail"]
    counted = wait_for(lambda: redis_client.hgetall(keys.deadletter_count()).get("fold_failed"), what="counts")
    assert int(counted) == 2
    assert redis_client.get(keys.user_attrs(poisoned)) == "not a hash"  # nothing half-written

"""Event in through Kafka, answer out through the API: the first vertical slice."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Consumer

from aura import bootstrap, layout
from aura.producer import EventProducer
from schemas.codec import codec
from tests.conftest import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def test_behavior_event_reaches_profile_api_and_bad_records_are_dead_lettered(
        isolated, worker_factory, api_client, cassandra):
    worker_factory()
    producer = EventProducer(isolated, bootstrap.kafka_producer(isolated))
    user = f"user-{uuid.uuid4().hex[:8]}"
    now = int(time.time() * 1000)
    for i, (etype, item) in enumerate([("view", "i1"), ("click", "i2"), ("view", "i3"), ("add_to_cart", "i2")]):
        producer.send({"event_id": f"{user}-{i}", "event_type": etype, "user_id": user, "item_id": item,
                       "event_time": now + i})
    # the same event_id again (a client retry): must not count twice
    producer.send({"event_id": f"{user}-0", "event_type": "view", "user_id": user, "item_id": "i1",
                   "event_time": now})
    # bad input straight onto the topic: garbage bytes, and a valid frame with an unknown type
    producer.send_raw(user.encode(), b"\x00garbage")
    bad_type = codec("behavior_event").encode({"event_id": "x", "event_type": "teleport", "user_id": user,
                                               "event_time": now})
    producer.send_raw(user.encode(), bad_type)
    assert producer.flush().failed == 0

    def activity():
        r = api_client.get(f"/v1/profiles/{user}/activity")
        return r.json() if r.status_code == 200 and sum(r.json()["counts"].values()) >= 4 else None

    doc = wait_for(activity, timeout=30, what="the user's activity in the API")
    assert doc["counts"] == {"view": 2, "click": 1, "add_to_cart": 1}
    assert doc["recent_items"] == ["i2", "i3", "i1"]
    assert doc["first_seen"] == now and doc["last_seen"] == now + 3
    assert doc["source"] == "redis"

    # the durable row in Cassandra holds the same absolute state
    row = wait_for(lambda: cassandra.execute(
        "SELECT counts, recent_items FROM user_activity WHERE user_id = %s", (user,)).one(), what="cassandra row")
    assert dict(row.counts) == {"view": 2, "click": 1, "add_to_cart": 1}

    # both bad records are on the dead-letter topic with their reasons and raw bytes
    consumer = Consumer({"bootstrap.servers": isolated.kafka.bootstrap, "group.id": f"dl-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([layout.topic(isolated, layout.DEADLETTER)])
    dead = []
    deadline = time.monotonic() + 30
    while len(dead) < 2 and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and not msg.error():
            dead.append(codec("dead_letter").decode(msg.value()))
    consumer.close()
    assert sorted(d["reason"] for d in dead) == ["bad_frame", "unknown_event_type"]
    assert {d["value"] for d in dead} == {b"\x00garbage", bad_type}
    assert all(d["source_topic"] == layout.topic(isolated, layout.BEHAVIOR) for d in dead)

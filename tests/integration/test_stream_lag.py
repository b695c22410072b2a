"""``GET /v1/stats/lag`` reads the worker group's lag from Kafka: zero once a running worker has
folded what was sent, and exactly the events sent while no worker runs after it stops."""

from __future__ import annotations

import time
import uuid

import pytest

from aura import bootstrap, layout
from aura.producer import EventProducer
from tests.conftest import wait_for

pytestmark = [pytest.mark.integration]


def _send(producer: EventProducer, n: int) -> None:
    now = int(time.time() * 1000)
    for i in range(n):
        user = f"lag-{uuid.uuid4().hex[:8]}"
        producer.send({"event_id": f"{user}-{i}", "event_type": "view", "user_id": user, "item_id": f"i{i % 7}",
                       "event_time": now + i})
    assert producer.flush().failed == 0


def test_lag_of_the_worker_group(isolated, worker_factory, api_client):
    group = layout.worker_group(isolated)
    assert api_client.get("/v1/stats/lag").json()["groups"] == []  # no worker has committed yet
    worker = worker_factory()
    producer = EventProducer(isolated, bootstrap.kafka_producer(isolated))
    _send(producer, 40)

    def caught_up() -> dict | None:
        doc = api_client.get("/v1/stats/lag").json()
        mine = [g for g in doc["groups"] if g["group"] == group]
        behavior = mine[0]["topics"].get(layout.BEHAVIOR.name) if mine else None
        return mine[0] if behavior and behavior["lag"] == 0 and mine[0]["lag"] == 0 else None

    g = wait_for(caught_up, timeout=120, interval=0.5, what="the worker group at lag 0")
    assert g["topics"][layout.BEHAVIOR.name]["partitions"] == isolated.kafka.topic_partitions

    worker.stop()  # commits what it folded; what is sent from now on waits in Kafka
    _send(producer, 25)

    def behind() -> dict | None:
        doc = api_client.get("/v1/stats/lag").json()
        mine = [g for g in doc["groups"] if g["group"] == group]
        return mine[0] if mine and mine[0]["topics"][layout.BEHAVIOR.name]["lag"] == 25 else None

    g = wait_for(behind, timeout=30, interval=0.5, what="a lag of the 25 events sent while stopped")
    assert g["lag"] >= 25


def test_lag_needs_an_admin_key(isolated, api_client, api_key):
    r = api_client.get("/v1/stats/lag", headers={"Authorization": f"Bearer {api_key('read')}"})
    assert r.status_code == 403, r.text

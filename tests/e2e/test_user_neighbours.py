"""User neighbours through the real pipeline: behavior events through Kafka into a worker that runs
streams/neighbours.py in the behavior fan-out (``recs_user_neighbours``), then the API's hybrid
with a ``users`` weight serves what users like you did lately."""

from __future__ import annotations

import json
import time

import pytest

from aura import bootstrap
from aura.layout import RedisKeys
from aura.producer import EventProducer
from tests.conftest import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow]


def test_users_like_you_are_kept_by_the_stream_and_served(isolated, worker_factory, api_client, redis_client):
    s = isolated.model_copy(update={"recs_user_neighbours": True})
    worker_factory(s)
    producer = EventProducer(isolated, bootstrap.kafka_producer(isolated))
    k = RedisKeys(isolated.redis_prefix)
    now = int(time.time() * 1000)
    # a and b watch x then their own favourites; c watches x: a and b become c's neighbours
    events = [("a", "x"), ("a", "ya"), ("b", "x"), ("b", "yb"), ("z", "other"), ("c", "x")]
    for n, (user, item) in enumerate(events):
        producer.send({"event_id": f"{isolated.topic_prefix}-{n}", "event_type": "view", "user_id": user,
                       "item_id": item, "event_time": now + n})
    assert producer.flush().failed == 0
    nbrs = wait_for(lambda: redis_client.zrange(k.recs_user_nbrs("c"), 0, -1) or None
                    if {"a", "b"} <= set(redis_client.zrange(k.recs_user_nbrs("c"), 0, -1)) else None,
                    timeout=60, what="a and b as c's neighbours")
    assert set(nbrs) == {"a", "b"}  # not z (other item), never c itself
    redis_client.hset(k.recs_placement("nbrs"), "weights", json.dumps({"users": 1.0}))
    r = api_client.post("/v1/recommendations/generate", json={"user_id": "c", "limit": 5,
                                                               "context": {"placement": "nbrs"}})
    assert r.status_code == 200, r.text
    items = [x["item_id"] for x in r.json()["items"]]
    assert set(items) == {"ya", "yb"}  # x is seen; "other" is not a neighbour's
    assert all(x["sources"] == ["users"] for x in r.json()["items"])

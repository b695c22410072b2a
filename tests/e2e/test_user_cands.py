"""Per-user candidate pools kept by a real worker (``AURA_RECS_USER_CANDS=true``, the default): behavior
events in through Kafka, the API's first request for u0 (no pool: it marks u0 as wanting one), the
worker's user step and its pool timer, the API's hybrid list read from the pool and equal to the whole
ranking; the user's next event re-ranks the pool (the item just seen leaves it); u1, who never asked,
gets no pool."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from aura import bootstrap
from aura.keys import RedisKeys
from aura.producer import EventProducer
from aura.ranking.reader import Recommender
from aura.ranking.request import Request
from aura.state.pools import pool_ids
from tests.conftest import wait_for
from tests.e2e.test_recommendations import CATALOG, catalog_event

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow]


def test_worker_keeps_pools_the_api_serves(isolated, worker_factory, api_client, redis_client):
    s = isolated.replace(**{"recs_user_cands": True, "recs_user_cands_interval_s": 0.1,
                                    "recs_publish_interval_s": 0.3})
    worker_factory(s)
    k = RedisKeys(isolated.redis.prefix)
    producer = EventProducer(isolated, bootstrap.kafka_producer(isolated))
    now = int(time.time() * 1000)
    for item, (title, cats, stock) in CATALOG.items():
        producer.send_catalog(catalog_event(item, title, cats, stock, now))
    events = [(f"u{u}", "view", i) for u in range(1, 6) for i in ("i1", "i2", "i3")] + [("u0", "view", "i1")]
    for n, (user, etype, item) in enumerate(events):
        producer.send({"event_id": f"{isolated.kafka.topic_prefix}-{n}", "event_type": etype, "user_id": user,
                       "item_id": item, "event_time": now + n})
    assert producer.flush().failed == 0

    def pool_current(user: str) -> bool:
        off = redis_client.hget(k.recs_user_state(user), "_off")
        return off is not None and redis_client.hget(k.recs_user_cands(user, "default"), "off") == off

    async def both(user: str) -> tuple[Any, Any]:
        r = bootstrap.redis_async(isolated)
        try:
            rec = Recommender(r, k)
            return await rec.from_precomputed(Request(user)), await rec.compute(Request(user))
        finally:
            await r.aclose()

    nudges = [0]

    def settled() -> Any:
        """A pool does not see the neighbour lists republished after it was ranked (by design): nudge u0
        with an impression (moves the fence, changes no list) until the pool, re-ranked after the lists
        settled, equals the whole ranking."""
        nudges[0] += 1
        producer.send({"event_id": f"{isolated.kafka.topic_prefix}-nudge-{nudges[0]}", "event_type": "impression",
                       "user_id": "u0", "items": ["i5"], "event_time": now + 1000 + nudges[0]})
        assert producer.flush().failed == 0
        wait_for(lambda: pool_current("u0"), timeout=30, what="u0's pool ranked from u0's state")
        pooled, whole = asyncio.run(both("u0"))
        return pooled if pooled is not None and pooled.items and pooled.items == whole.items else None

    wait_for(lambda: "i2" in redis_client.zrange(k.recs_item_similar("i1", "cooc"), 0, -1), timeout=60,
             what="i2 among i1's published neighbours")
    assert api_client.get("/v1/recommendations/users/u0?limit=10").status_code == 200  # u0 asks (pools on demand)
    pooled = wait_for(settled, timeout=90, what="u0's pool equal to the whole ranking")
    body = api_client.get("/v1/recommendations/users/u0?limit=10").json()
    assert [x["item_id"] for x in body["items"]] == [i for i, _s, _w in pooled.items]
    assert "i2" in [x["item_id"] for x in body["items"]] and "i1" not in [x["item_id"] for x in body["items"]]
    assert "cooc" in dict((i, w) for i, _s, w in pooled.items)["i2"]

    # u0 views i2: the next batch re-ranks u0's pool, i2 (now seen) leaves it
    producer.send({"event_id": f"{isolated.kafka.topic_prefix}-next", "event_type": "view", "user_id": "u0",
                   "item_id": "i2", "event_time": now + 100})
    assert producer.flush().failed == 0
    wait_for(lambda: pool_current("u0") and "i2" not in pool_ids(redis_client.hgetall(k.recs_user_cands("u0",
                                                                                                    "default"))),
             timeout=30, what="u0's pool re-ranked without i2")
    assert "i2" not in [x["item_id"] for x in api_client.get("/v1/recommendations/users/u0").json()["items"]]
    pooled = wait_for(settled, timeout=90, what="u0's new pool equal to the whole ranking")
    assert "i2" not in [i for i, _s, _w in pooled.items]
    # u1 had events and never asked: no pool (the worker did not rank one)
    assert redis_client.hget(k.recs_user_state("u1"), "_off") is not None
    assert not redis_client.exists(k.recs_user_cands("u1", "default"))

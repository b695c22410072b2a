"""A deleted catalog item leaves every list the API serves, with a real worker: global and
per-category trending (both routes), popular and hybrid recommendations, and it does not come back
when interactions with it arrive after the delete."""

from __future__ import annotations

import time
import uuid

import pytest

from aura.keys import RedisKeys
from tests.conftest import wait_for

pytestmark = [pytest.mark.integration]


def test_a_deleted_item_leaves_trending_popular_and_served_lists(isolated, worker_factory, api_client, redis_client):
    keys = RedisKeys(isolated.redis.prefix)
    tag = uuid.uuid4().hex[:6]
    cat = f"cat-{tag}"
    items = [f"sku-{tag}-{n}" for n in range(4)]
    gone = items[0]
    now = int(time.time() * 1000)
    upserts = [{"event_id": f"{i}-u", "event_type": "upsert", "item_id": i, "event_time": now,
                "item": {"title": f"Item {i}", "categories": [cat], "price": 10.0, "text": "a thing"}} for i in items]
    assert api_client.post("/v1/catalog/items", json=upserts).status_code == 202
    worker_factory()
    wait_for(lambda: redis_client.scard(keys.recs_catalog_ids()) >= len(items), timeout=60, what="the catalog")

    def views(round_: int, targets: list[str]) -> None:
        evs = [{"event_id": f"v-{tag}-{round_}-{u}-{i}", "event_type": "view", "user_id": f"u-{tag}-{u}",
                "item_id": i, "event_time": int(time.time() * 1000)} for u in range(3) for i in targets]
        assert api_client.post("/v1/events/batch", json=evs).status_code == 202

    views(0, items + [gone, gone])  # the item to delete is the most viewed
    trending = {"global": "/v1/recommendations/trending?limit=50",
                "category": f"/v1/recommendations/trending?category={cat}&limit=50",
                "content": f"/v1/content/trending/items?category={cat}&limit=50"}

    def listed(path: str) -> list[str]:
        r = api_client.get(path)
        assert r.status_code == 200, r.text
        return [x["item_id"] for x in r.json()["items"]]

    for name, path in trending.items():
        wait_for(lambda path=path: gone in listed(path), timeout=60, what=f"{gone} trending ({name})")
    wait_for(lambda: redis_client.zscore(keys.recs_popular(), gone) is not None, what="popular")

    deleted = {"event_id": f"{gone}-d", "event_type": "delete", "item_id": gone, "event_time": now + 1}
    assert api_client.post("/v1/catalog/items", json=deleted).status_code == 202
    wait_for(lambda: redis_client.hget(keys.recs_item_meta(gone), "deleted") == "1", timeout=60,
             what="the delete folded")
    views(1, [gone, items[1]])  # interactions after the delete (a stale page, a late event)
    wait_for(lambda: all(items[1] in listed(p) for p in trending.values()), what="the later views folded")
    for name, path in trending.items():
        got = listed(path)
        assert gone not in got and set(items[1:]) <= set(got), (name, got)
    for method in ("popular", "trending", "hybrid"):
        r = api_client.get(f"/v1/recommendations/users/u-{tag}-9?method={method}&limit=50")
        assert r.status_code == 200 and gone not in [x["item_id"] for x in r.json()["items"]], (method, r.text)
    perf = api_client.get(f"/v1/content/{gone}/performance").json()
    assert perf["popularity_rank"] is None and perf["trending_rank"] is None, perf
    # an item moved to another category leaves the first one's trending list and joins the other's
    moved = {**upserts[3], "event_id": f"{items[3]}-m", "event_time": now + 2,
             "item": {**upserts[3]["item"], "categories": [f"{cat}-b"]}}
    assert api_client.post("/v1/catalog/items", json=moved).status_code == 202
    wait_for(lambda: items[3] not in listed(trending["category"]), timeout=60, what="left the category")
    assert items[3] in listed(f"/v1/recommendations/trending?category={cat}-b&limit=50")

"""Content through the API against the real stack: the seed's create form, list and search with
cursor paging, and content recommendations that honour a category filter (only items of the
category) and the user's explicit preferences."""

from __future__ import annotations

import time

import pytest

from aura import bootstrap
from aura.producer import EventProducer
from tests.conftest import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

TOPICS = ["seo search ranking", "seo links ranking", "seo content ranking", "search marketing budget",
          "email marketing budget", "email newsletter design"]


def test_create_list_search_and_category_filtered_recommendations(isolated, worker_factory, api_client):
    worker_factory(isolated.replace(**{"recs_content_rebuild_s": 0.2}))
    for n, words in enumerate(TOPICS):
        r = api_client.post("/v1/content", json={
            "item_id": f"c{n}", "title": f"Post {n}: {words}", "category": "blog" if n % 2 == 0 else "guide",
            "tags": words.split()[:1], "content": f"All about {words}.", "metadata": {"author": "Kim"}})
        assert r.status_code == 202, r.text
    generated = api_client.post("/v1/content", json={"title": "Untitled draft", "category": "draft"})
    assert generated.status_code == 202 and len(generated.json()["item_id"]) == 32

    def listing(**params):
        r = api_client.get("/v1/content", params=params)
        assert r.status_code == 200, r.text
        return r.json()

    wait_for(lambda: len(listing(limit=200)["items"]) == 7, what="the items in the catalog")
    assert api_client.post("/v1/content", json={"item_id": "c0", "title": "again"}).status_code == 409
    doc = api_client.get("/v1/content/c0").json()
    assert doc["categories"] == ["blog"] and doc["text"] == "All about seo search ranking."
    assert doc["metadata"] == {"author": "Kim"}

    # paging: every item exactly once, whatever the page size
    seen, cursor = [], 0
    for _ in range(20):
        page = listing(limit=2, cursor=cursor)
        seen += [d["item_id"] for d in page["items"]]
        cursor = page["next_cursor"]
        if cursor == 0:
            break
    assert sorted(seen) == sorted([f"c{n}" for n in range(6)] + [generated.json()["item_id"]])
    assert {d["item_id"] for d in listing(category="guide", limit=50)["items"]} == {"c1", "c3", "c5"}
    assert {d["item_id"] for d in listing(q="SEO ranking", limit=50)["items"]} == {"c0", "c1", "c2"}
    assert {d["item_id"] for d in listing(tag="email", limit=50)["items"]} == {"c4", "c5"}

    # a reader of seo posts: content recommendations, only in the asked category
    producer = EventProducer(isolated, bootstrap.kafka_producer(isolated))
    now = int(time.time() * 1000)
    for n, item in enumerate(["c0", "c3"]):
        producer.send({"event_id": f"reader-{n}", "event_type": "view", "user_id": "reader", "item_id": item,
                       "event_time": now + n})
    assert producer.flush().failed == 0

    def recs(category=None):
        body = {"userId": "reader", "limit": 10, **({"category": category} if category else {})}
        r = api_client.post("/v1/content/recommend", json=body)
        assert r.status_code == 200, r.text
        return [i["item_id"] for i in r.json()["items"]]

    everything = wait_for(lambda: (got := recs()) and {"c1", "c2"} <= set(got) and got, timeout=60,
                          what="content recommendations")
    assert set(everything) & {"c5", "c4"}  # other categories are proposed without a filter
    blog = recs("blog")
    assert blog and set(blog) <= {"c2", "c4"}
    via_get = api_client.get("/v1/content/recommend/reader", params={"category": "guide"}).json()["items"]
    assert via_get and {i["item_id"] for i in via_get} <= {"c1", "c5"}

"""The seed's "Complete Personalization Flow" against Aura's /v1 API on the real stack: create a
profile, track behavior, set preferences, generate hybrid recommendations that honour them, and
evaluate personalization for the home page on mobile, and create a welcome campaign that mails the
user (delivered to the local stack's SMTP server) and counts it in the campaign's performance."""

from __future__ import annotations

import uuid

import pytest

from aura.state import maildir
from tests.conftest import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

CATALOG = {"prod_456": ("electronics", 300.0), "e1": ("electronics", 120.0), "e2": ("electronics", 250.0),
           "e3": ("electronics", 900.0), "e4": ("electronics", 45.0), "b1": ("books", 20.0), "b2": ("books", 25.0)}


def test_complete_personalization_flow(isolated, worker_factory, api_client):
    worker_factory(isolated.replace(**{"recs_publish_interval_s": 0.3, "recs_content_rebuild_s": 0.2,
                                       "campaign_tick_s": 0.05}))
    for item, (cat, price) in CATALOG.items():
        r = api_client.put(f"/v1/content/{item}", json={"title": f"{cat} {item}", "categories": [cat],
                                                         "price": price, "brand": "Acme"})
        assert r.status_code == 202, r.text
    # other shoppers who viewed prod_456 also viewed the rest of the catalog
    tag = uuid.uuid4().hex[:6]
    events = []
    for n in range(12):
        for k, item in enumerate(["prod_456", "e1", "e2", "e3", "e4", "b1", "b2"]):
            events.append({"event_id": f"{tag}-{n}-{k}", "event_type": "view", "user_id": f"shopper-{tag}-{n}",
                           "item_id": item, "event_time": 1_790_000_000_000 + 1000 * n + k})
    assert api_client.post("/v1/events/batch", json=events).status_code == 202

    # 1. create the user profile (the seed's body)
    john = f"john_{tag}"
    address = f"{john}@example.com"
    r = api_client.post("/v1/profiles", json={"email": address, "userId": john,
                                              "attributes": {"name": "John Doe", "location": "US"}})
    assert r.status_code == 202, r.text
    profile = r.json()

    # 2. track behavior (the seed's body, no event id or time needed)
    r = api_client.post(f"/v1/profiles/{profile['user_id']}/behavior", json={"action": "view", "itemId": "prod_456"})
    assert r.status_code == 202, r.text

    # 3. update preferences (the seed's body), then block an item and a category
    r = api_client.post(f"/v1/profiles/{john}/preferences", json={"categories": ["electronics"],
                                                                  "priceRange": {"min": 50, "max": 500}})
    assert r.status_code == 202, r.text
    r = api_client.put(f"/v1/profiles/{john}/preferences", json={"categories": {"electronics": 1, "books": -1},
                                                                 "blockedItems": ["e1"]})
    assert r.status_code == 202, r.text
    wait_for(lambda: api_client.get(r.json()["status_url"]).json()["applied"], what="the preferences applied")
    prefs = api_client.get(f"/v1/profiles/{john}/preferences").json()["preferences"]
    assert prefs["price_range"] == {"min": 50.0, "max": 500.0} and prefs["blocked_items"] == ["e1"]

    # 4. generate personalized recommendations (the seed's body)
    def generate():
        r = api_client.post("/v1/recommendations/generate", json={"userId": john, "method": "hybrid", "limit": 10})
        assert r.status_code == 200, r.text
        doc = r.json()
        # personal (not cold start: John's view reached his recommender state) and from co-occurrence
        return doc if doc["strategy"] == "hybrid" and {"e2", "e4"} <= {i["item_id"] for i in doc["items"]} else None

    recs = wait_for(generate, timeout=90, what="hybrid recommendations from co-occurrence")
    served = [i["item_id"] for i in recs["items"]]
    assert "prod_456" not in served  # seen
    assert "e1" not in served  # blocked
    assert not {"b1", "b2"} & set(served)  # a category weighed -1
    assert recs["recommendation_id"]

    # 5. personalize web content: a rule on an identity attribute and the device
    rule = {"id": f"us-mobile-{tag}", "priority": 10, "channels": ["web", "mobile"],
            "conditions": {"all": [{"field": "profile.location", "op": "equals", "value": "US"},
                                   {"field": "context.device", "op": "equals", "value": "mobile"}]},
            "content": {"banner": "us-mobile-deals"}}
    assert api_client.post("/v1/personalization/rules", json=rule).status_code == 201
    try:  # (rules are stored in the keyspace every test shares: other tests' rules may match too)
        r = api_client.post("/v1/personalization/evaluate", json={
            "user_id": john, "context": {"page": "homepage", "device": "mobile"}, "all_matches": True})
        assert r.status_code == 200, r.text
        mine = [m for m in r.json()["matches"] if m["rule_id"] == rule["id"]]
        assert mine and mine[0]["content"] == {"banner": "us-mobile-deals"}
        desktop = api_client.post("/v1/personalization/evaluate", json={
            "user_id": john, "context": {"page": "homepage", "device": "desktop"}, "all_matches": True})
        assert rule["id"] not in [m["rule_id"] for m in desktop.json()["matches"]]
    finally:
        api_client.delete(f"/v1/personalization/rules/{rule['id']}")

    # the seed's engagement score
    score = api_client.get(f"/v1/profiles/{john}/engagement").json()
    assert score["engagement"] > 0 and score["lifecycle"] == "new"

    # 6. create a campaign (the seed's welcome email), activate it and send it to the user
    cid = f"welcome-{tag}"
    r = api_client.post("/v1/campaigns", json={
        "id": cid, "name": "Welcome Campaign", "channel": "email", "trigger": {"type": "api"},
        "audience": {"type": "users", "users": [john]},
        "template": {"subject": "Welcome {{ user.name | default('there') }}", "body": "Glad you are here"}})
    assert r.status_code == 201, r.text
    try:
        assert api_client.post(f"/v1/campaigns/{cid}/activate").json()["status"] == "running"
        r = api_client.post(f"/v1/campaigns/{cid}/trigger", json={"user_id": john, "occurrence_id": "signup"})
        assert r.status_code == 202, r.text
        mails = wait_for(lambda: maildir.list_messages(maildir.root(isolated), limit=1000, to=address),
                         timeout=60, what="the welcome email")
        assert mails[0]["subject"] == "Welcome John Doe"
        perf = wait_for(lambda: (p := api_client.get(f"/v1/campaigns/{cid}/performance").json())["counts"]
                        .get("sent") and p, timeout=30, what="the send counted")
        assert perf["counts"]["sent"] == 1
    finally:
        api_client.post(f"/v1/campaigns/{cid}/complete")
        api_client.delete(f"/v1/campaigns/{cid}")

"""Profile writes over REST against the real stack: create, patch, preferences (merge and replace),
erase; each answer's status URL turns applied once the worker folded the event, and the profile
read shows the change."""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import wait_for

pytestmark = [pytest.mark.integration]


def applied(client, written: dict) -> bool:
    r = client.get(written["status_url"])
    assert r.status_code == 200, r.text
    return r.json()["applied"]


def test_create_patch_preferences_erase_through_rest(isolated, worker_factory, api_client):
    worker_factory()
    user = f"john-{uuid.uuid4().hex[:8]}"
    # the seed's create body (camelCase user id, email at the top)
    r = api_client.post("/v1/profiles", json={"userId": user, "email": "john@example.com",
                                              "attributes": {"name": "John Doe", "location": "US"}})
    assert r.status_code == 202, r.text
    created = r.json()
    assert created["user_id"] == user and created["event_type"] == "create"
    assert r.headers["Location"] == created["status_url"]
    wait_for(lambda: applied(api_client, created), what="the create applied")
    doc = api_client.get(f"/v1/profiles/{user}").json()
    assert doc["attributes"] == {"name": "John Doe", "location": "US", "email": "john@example.com"}

    # a second create of the same id is refused: attributes change with PATCH
    assert api_client.post("/v1/profiles", json={"user_id": user}).status_code == 409

    patched = api_client.patch(f"/v1/profiles/{user}", json={"attributes": {"location": None, "tier": "gold"}})
    assert patched.status_code == 202, patched.text
    # the seed's preferences body merges (POST); lists weigh 1
    merged = api_client.post(f"/v1/profiles/{user}/preferences", json={
        "categories": ["electronics", "books"], "priceRange": {"min": 10, "max": 100}, "brands": ["Apple"],
        "blockedItems": ["i9"], "channels": {"email": True, "sms": False}, "locale": "en-US"})
    assert merged.status_code == 202, merged.text
    wait_for(lambda: applied(api_client, merged.json()), what="the preferences applied")
    doc = api_client.get(f"/v1/profiles/{user}").json()
    assert doc["attributes"] == {"name": "John Doe", "tier": "gold", "email": "john@example.com"}
    assert doc["preferences"] == {
        "categories": {"electronics": 1.0, "books": 1.0}, "brands": {"Apple": 1.0},
        "price_range": {"min": 10.0, "max": 100.0}, "blocked_items": ["i9"],
        "channels": {"email": True, "sms": False}, "locale": "en-US"}

    # PUT: the sections sent replace the stored ones (empty clears), the others are kept
    put = api_client.put(f"/v1/profiles/{user}/preferences", json={
        "categories": {"toys": -1.0, "books": 0.5}, "blocked_items": []})
    assert put.status_code == 202, put.text
    wait_for(lambda: applied(api_client, put.json()), what="the put applied")
    prefs = api_client.get(f"/v1/profiles/{user}/preferences").json()["preferences"]
    assert prefs["categories"] == {"toys": -1.0, "books": 0.5}
    assert "blocked_items" not in prefs
    assert prefs["brands"] == {"Apple": 1.0} and prefs["channels"] == {"email": True, "sms": False}

    erased = api_client.delete(f"/v1/profiles/{user}")
    assert erased.status_code == 202 and erased.json()["change"].endswith("-erase")
    wait_for(lambda: applied(api_client, erased.json()), what="the erase applied")
    assert api_client.get(f"/v1/profiles/{user}").status_code == 404


def test_generated_ids_idempotency_and_bad_input(isolated, api_client):
    r = api_client.post("/v1/profiles", json={"attributes": {"plan": "free"}}, headers={"Idempotency-Key": "k-1"})
    again = api_client.post("/v1/profiles", json={"attributes": {"plan": "free"}}, headers={"Idempotency-Key": "k-1"})
    assert r.status_code == again.status_code == 202
    assert r.json()["user_id"] == again.json()["user_id"] and r.json()["event_id"] == again.json()["event_id"]
    other = api_client.post("/v1/profiles", json={})
    assert other.status_code == 202 and other.json()["user_id"] != r.json()["user_id"]

    bad = [
        ("post", "/v1/profiles", {"attributes": {"x": "y" * 70_000}}),
        ("post", "/v1/profiles", {"attributes": {"": 1}}),
        ("post", "/v1/profiles", {"email": "not-an-email"}),
        ("post", "/v1/profiles", {"user_id": "u", "unknown": 1}),
        ("patch", "/v1/profiles/u1", {"attributes": {}}),
        ("put", "/v1/profiles/u1/preferences", {}),
        ("put", "/v1/profiles/u1/preferences", {"categories": {"a": 2}}),
        ("put", "/v1/profiles/u1/preferences", {"priceRange": {"min": 50, "max": 10}}),
        ("put", "/v1/profiles/u1/preferences", {"price_range": {"min": -1}}),
        ("put", "/v1/profiles/u1/preferences", {"channels": {"pigeon": True}}),
        ("put", "/v1/profiles/u1/preferences", {"locale": "x" * 100}),
    ]
    for method, path, body in bad:
        resp = getattr(api_client, method)(path, json=body)
        assert resp.status_code == 422, (method, path, body, resp.text)
    r = api_client.put("/v1/profiles/u1/preferences", json={"priceRange": {"min": 50, "max": 10}})
    assert r.json()["detail"][0]["loc"][-1] in ("price_range", "priceRange")
    assert api_client.get("/v1/profiles/u1/changes/x-1").status_code == 422


def test_user_ids_any_unicode_are_percent_encoded_in_the_status_url(isolated, api_client):
    user = "ünï cø de\u2028x"
    r = api_client.patch(f"/v1/profiles/{__import__('urllib.parse').parse.quote(user, safe='')}",
                         json={"attributes": {"a": 1}})
    assert r.status_code == 202, r.text
    assert r.json()["user_id"] == user and r.headers["Location"].isascii()
    assert api_client.get(r.json()["status_url"]).json()["user_id"] == user

"""Profile search against the real stack: profiles created through the API and events, visible in
the indexed copy (polled until there), searched by every filter and their combinations, paged by the
signed cursor without duplicates or misses, bad filters and forged cursors refused, attribute
changes moving a user between numeric ranges, and an erase removing the user from the index.

The keyspace is shared by every test of the session: each search carries the test's own ``run``
attribute, so only this test's users can match."""

from __future__ import annotations

import time
import uuid

import pytest

from tests.conftest import wait_for

pytestmark = [pytest.mark.integration]
DAY = 24 * 3600 * 1000


def test_search_profiles_by_every_filter_with_cursor_paging(isolated, worker_factory, api_client):
    worker_factory()
    tag = uuid.uuid4().hex[:8]
    run = f"run:{tag}"
    users = [f"ps{tag}-{n:02d}" for n in range(12)]
    for n, u in enumerate(users):
        r = api_client.post("/v1/profiles", json={"user_id": u, "attributes": {
            "run": tag, "country": "US" if n % 2 else "FR", "age": 20 + n, "vip": n == 3,
            "tier": f"t{n % 3}", "zip": "0213" + str(n % 2)}})
        assert r.status_code == 202, r.text
    now = int(time.time() * 1000)

    def event(u: str, etype: str, at: int, **extra) -> dict:
        return {"event_id": uuid.uuid4().hex, "event_type": etype, "user_id": u, "item_id": "i1", "event_time": at,
                **extra}

    buyers, at_risk, churned = users[:3], users[3:6], users[6:8]
    events = [event(u, "purchase", now, item_id=None, order={
        "order_id": f"{u}-o", "lines": [{"item_id": "i1", "quantity": 1, "unit_price": 5}]}) for u in buyers]
    events += [event(u, "view", now - 20 * DAY) for u in at_risk]
    events += [event(u, "view", now - 40 * DAY) for u in churned]
    assert api_client.post("/v1/events/batch", json=events).status_code == 202

    def search(**params) -> list[str]:
        """Every page of a search; each page within its limit, and the user ids in page order."""
        out: list[str] = []
        cursor = None
        for _ in range(1000):
            r = api_client.get("/v1/profiles", params={**params, **({"cursor": cursor} if cursor else {})})
            assert r.status_code == 200, r.text
            page = r.json()
            assert len(page["profiles"]) <= params.get("limit", 50) and page["index_delay_ms"] > 0
            out += [p["user_id"] for p in page["profiles"]]
            cursor = page["next_cursor"]
            if cursor is None:
                return out
        raise AssertionError("the paging did not end")

    def ids(**params) -> set[str]:
        found = search(**params)
        assert len(found) == len(set(found)), f"duplicates: {found}"
        return set(found)

    wait_for(lambda: ids(attribute=run) == set(users) and ids(attribute=run, segment="buyer") == set(buyers)
             and len(ids(attribute=run, active_before=now)) == 5, timeout=60, what="every user in the index")

    # attribute equality: strings, numbers by value, booleans, numbers spelt as text
    assert ids(attribute=[run, "country:US"]) == set(users[1::2])
    assert ids(attribute=[run, "country:US", "age:23.0"]) == {users[3]}
    assert ids(attribute=[run, "vip:TRUE"]) == {users[3]}
    assert ids(attribute=[run, "tier:t1"]) == {u for n, u in enumerate(users) if n % 3 == 1}
    assert ids(attribute=[run, "zip:02131"]) == set(users[1::2]) == ids(attribute=[run, "zip:2131"])
    assert ids(attribute=[run, "country:us"]) == set()  # strings compare exactly
    # one numeric range, alone or with the other filters
    assert ids(attribute=run, attribute_min="age:25", attribute_max="age:28") == set(users[5:9])
    assert ids(attribute=run, attribute_min="age:21.5") == set(users[2:])
    assert ids(attribute=run, attribute_max="age:21", segment="buyer") == set(users[:2])
    # activity and lifecycle (as of now)
    assert ids(attribute=run, active_since=now - 1000) == set(buyers)
    assert ids(attribute=run, active_since=now - 30 * DAY, active_before=now - DAY) == set(at_risk)
    assert ids(attribute=run, lifecycle="at-risk") == set(at_risk)
    assert ids(attribute=run, lifecycle="churned") == set(churned)
    assert ids(attribute=run, lifecycle="new") == set(buyers)
    assert ids(attribute=run, lifecycle="active") == set()
    assert ids(attribute=run, lifecycle="churned", attribute_min="age:27") == {users[7]}

    # paging: every page size gives each match exactly once
    for limit in (1, 2, 5, 500):
        found = search(attribute=run, limit=limit)
        assert sorted(found) == users, (limit, found)
    page = api_client.get("/v1/profiles", params={"attribute": run, "limit": 3}).json()
    summary = {p["user_id"]: p for p in page["profiles"]}
    some = next(iter(summary.values()))
    assert some["attributes"]["run"] == tag and some["lifecycle"] in ("new", "at-risk", "churned", "unknown")

    # a forged cursor, or one of another search, is a 400; bad filters are a 422 naming the parameter
    cursor = page["next_cursor"]
    forged = cursor[:-3] + ("AAA" if cursor[-3:] != "AAA" else "BBB")
    for params in ({"attribute": run, "cursor": forged}, {"attribute": [run, "country:US"], "cursor": cursor},
                   {"attribute": run, "cursor": "not-a-cursor"}):
        r = api_client.get("/v1/profiles", params=params)
        assert r.status_code == 400, (params, r.text)
    for params, name in (({"attribute": "nocolon"}, "attribute"), ({"lifecycle": "sleepy"}, "lifecycle"),
                         ({"attribute_min": "age:abc"}, "attribute_min"),
                         ({"attribute_min": "age:1", "attribute_max": "ltv:2"}, "attribute_max"),
                         ({"active_since": "yesterday-ish"}, "active_since"), ({"limit": 501}, "limit"),
                         ({"colour": "red"}, "colour")):
        r = api_client.get("/v1/profiles", params=params)
        assert r.status_code == 422, (params, r.text)
        assert name in r.text, (params, r.text)

    # an attribute change moves the user between numeric ranges (its old numeric row is gone)
    assert api_client.patch(f"/v1/profiles/{users[0]}", json={"attributes": {"age": 99}}).status_code == 202
    wait_for(lambda: ids(attribute=run, attribute_min="age:90") == {users[0]}, timeout=60,
             what="the new age indexed")
    assert users[0] not in ids(attribute=run, attribute_max="age:25")
    # an erase removes the user from every search
    assert api_client.delete(f"/v1/profiles/{users[1]}").status_code == 202
    # (an erase scans the shared Redis for the user's keys: slow on a loaded machine)
    wait_for(lambda: users[1] not in ids(attribute=run), timeout=120, interval=0.5,
             what="the erased user gone from the index")
    assert ids(attribute=run, segment="buyer") == {users[0], users[2]}

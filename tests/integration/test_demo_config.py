"""The demo creates the configuration its traffic refers to, through the stores the API reads: the
running experiment of its impressions, a rule, a managed segment, a strategy bandit; twice is harmless."""

from __future__ import annotations

import asyncio

import pytest

from aura import bootstrap, demo
from aura.keys import keys_for

pytestmark = [pytest.mark.integration]


def test_demo_configuration_is_served_by_the_api(isolated, cassandra, api_client):
    async def configure():
        r = bootstrap.redis_async(isolated)
        try:
            return await demo.configure(r, keys_for(isolated), cassandra)
        finally:
            await r.aclose()

    ids = {doc["id"] for _k, _t, _c, doc in demo.DEMO_CONFIG}
    first = asyncio.run(configure())
    # the keyspace is shared by tests: a document left by an earlier run is kept (created only when absent)
    assert {c.split(":", 1)[1] for c in first} <= ids
    assert asyncio.run(configure()) == []
    exp = api_client.get("/v1/experiments/exp-homepage").json()
    assert exp["status"] == "running" and [v["id"] for v in exp["variants"]] == ["A", "B"]
    assign = api_client.post("/v1/experiments/exp-homepage/assign", json={"user_id": "u1"}).json()
    assert assign["variant"] in ("A", "B")
    assert any(r["id"] == "demo-us-mobile" for r in api_client.get("/v1/personalization/rules").json()["rules"])
    assert api_client.get("/v1/segments/demo_cart_abandoners").json()["source"] == "api"
    assert api_client.get("/v1/bandits/strategy.search_results").status_code == 200

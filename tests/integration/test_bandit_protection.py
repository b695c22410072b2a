"""Learned bandit state is protected (real Redis and Cassandra): a state that became non-finite is
never served (choices come from the prior), the stream quarantines a fold that would make it
non-finite and keeps the last good state, and an admin reset clears both."""

from __future__ import annotations

import asyncio
import json
import uuid

import numpy as np
import pytest

from aura import bootstrap
from aura.keys import RedisKeys
from aura.state.bandits import BanditState, healthy, new_state, validate_bandit
from streams import bandits as stream_bandits
from streams.bandits import BanditStore, DecisionFact
from streams.experiments import Source

pytestmark = [pytest.mark.integration]


def test_a_non_finite_state_is_not_served_and_an_admin_reset_clears_it(api_client, redis_client, isolated, api_key):
    bid = f"prot-{uuid.uuid4().hex[:8]}"
    cfg_doc = {"id": bid, "policy": "linucb", "arms": ["a", "b"], "features": ["visits"]}
    assert api_client.post("/v1/bandits", json=cfg_doc).status_code == 201
    keys = RedisKeys(isolated.redis.prefix)
    st = new_state(validate_bandit(cfg_doc))
    st.arm("a").A[0, 0] = float("nan")
    st.arm("b").b[1] = float("inf")
    redis_client.hset(keys.bandit_state(bid), mapping={"state": json.dumps(st.to_json()), "ver": "3",
                                                       "_off:t:0": "17", "quarantine": '{"reason": "test"}'})
    read = {"X-API-Key": api_key("read")}
    for _ in range(5):
        r = api_client.post(f"/v1/bandits/{bid}/choose", json={"user_id": "u1", "context": {"visits": 3}},
                            headers=read)
        assert r.status_code == 200 and r.json()["arm"] in {"a", "b"}, r.text
    assert api_client.get(f"/v1/bandits/{bid}").json()["quarantine"] == {"reason": "test"}
    assert api_client.post(f"/v1/bandits/{bid}/reset", headers=read).status_code == 403
    r = api_client.post(f"/v1/bandits/{bid}/reset")
    assert r.status_code == 200 and r.json()["state_version"] == 4, r.text
    stored = redis_client.hgetall(keys.bandit_state(bid))
    assert "quarantine" not in stored and stored["_off:t:0"] == "17"  # fences kept: nothing is re-folded
    assert healthy(BanditState.from_json(json.loads(stored["state"])))
    assert api_client.get(f"/v1/bandits/{bid}").json()["quarantine"] is None


def test_the_stream_quarantines_a_fold_that_would_make_the_state_non_finite(isolated, cassandra, redis_client,
                                                                            monkeypatch):
    bid = f"quar-{uuid.uuid4().hex[:8]}"
    cfg = validate_bandit({"id": bid, "policy": "linucb", "arms": ["a", "b"], "features": ["visits"]})
    keys = RedisKeys(isolated.redis.prefix)
    src = Source("t.decisions", 0, 0)

    def fact(n: int) -> DecisionFact:
        return DecisionFact(bid, f"{bid}:d{n}", "a", {"visits": 2.0}, 1, Source(src.topic, 0, n))

    async def run() -> None:
        redis = bootstrap.redis_async(isolated)
        store = BanditStore(redis, cassandra, keys, 3600)
        await store.apply({bid: cfg}, [fact(1)], [])
        good = json.loads(redis_client.hget(keys.bandit_state(bid), "state"))
        real = stream_bandits.update_pull

        def broken(c, state, arm, x=None):  # a model bug: the update produces a non-finite matrix
            real(c, state, arm, x)
            state.arms[arm].A[1, 1] = np.inf

        monkeypatch.setattr(stream_bandits, "update_pull", broken)
        await store.apply({bid: cfg}, [fact(2)], [])
        stored = redis_client.hgetall(keys.bandit_state(bid))
        assert json.loads(stored["state"]) == good  # the last good state, still served
        assert json.loads(stored["quarantine"])["reason"] == "non_finite_state"
        assert stored["_off:t.decisions:0"] == "2"  # the event was consumed, not retried forever
        await redis.aclose()

    asyncio.run(run())

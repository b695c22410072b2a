"""Models trained on a time window and evaluated on a later one, against the real Cassandra: each
trainable type (EASE, item-kNN, popularity) registers a version with HR@10, NDCG@10 and coverage,
through the job and through the API; the collaborative models beat popularity on data with structure."""

from __future__ import annotations

import random
import uuid

import pytest

from aura.models.registry import Registry
from jobs.train import run
from tests.conftest import wait_for

pytestmark = [pytest.mark.integration]

# a window before 2000 that no other test (nor an earlier run of this one) writes interactions in
T0 = 10**6 * (uuid.uuid4().int % 900_000 + 1000)


def seed_interactions(cassandra, ks: str, tag: str) -> None:
    """Two taste groups over 40 items; every user shows 4 items of their group before T0 + 50_000 and
    2 more of it after."""
    rng = random.Random(5)
    st = cassandra.prepare(f"INSERT INTO {ks}.interactions (user_id, event_time, item_id, event_id, event_type, "
                           "weight) VALUES (?, ?, ?, ?, 'view', 1.0)")
    for u in range(60):
        group = [f"{tag}-i{j}" for j in range(20)] if u % 2 else [f"{tag}-i{j}" for j in range(20, 40)]
        items = rng.sample(group, 6)
        for n, item in enumerate(items):
            t = T0 + (n * 10_000 if n < 4 else 50_000 + n * 1000)
            cassandra.execute(st, (f"{tag}-u{u}", t, item, f"{tag}-{u}-{n}"))


def test_trainable_types_are_evaluated_on_a_later_window(isolated, cassandra, api_client):
    tag = uuid.uuid4().hex[:6]
    seed_interactions(cassandra, isolated.cassandra.keyspace, tag)
    window = (T0, T0 + 50_000, T0 + 100_000)
    got = {}
    for kind, cfg in [("ease", {"lambda": 10.0}), ("item_knn", {"neighbours": 20}), ("popularity", {})]:
        got[kind] = run(isolated, cassandra, f"{kind}-{tag}", kind, cfg, *window)["metrics"]
    for m in got.values():
        assert m["users"] == 60 and m["train_interactions"] == 240
        assert 0 <= m["ndcg@10"] <= m["hr@10"] <= 1 and 0 < m["coverage@10"] <= 1
    assert got["item_knn"]["hr@10"] > got["popularity"]["hr@10"]
    assert got["ease"]["hr@10"] > got["popularity"]["hr@10"]
    v = Registry(cassandra, isolated).get(f"item_knn-{tag}")
    assert (v.status, v.type, v.config["neighbours"]) == ("ready", "item_knn", 20)

    # through the API: a job, then the version with its metrics
    r = api_client.post(f"/v1/models/knn-api-{tag}/train", json={
        "type": "item_knn", "config": {"neighbours": 10}, "train_from": window[0], "train_to": window[1],
        "eval_to": window[2]})
    assert r.status_code == 202, r.text

    def ready():
        resp = api_client.get(f"/v1/models/knn-api-{tag}/versions")
        vs = resp.json() if resp.status_code == 200 else []
        return vs if vs and vs[0]["status"] in ("ready", "failed") else None

    vs = wait_for(ready, timeout=120, interval=0.5, what="the training job")
    assert vs[0]["status"] == "ready" and vs[0]["metrics"]["hr@10"] > 0
    bad = api_client.post(f"/v1/models/x-{tag}/train", json={"type": "online_mf", "train_from": 1, "train_to": 2,
                                                               "eval_to": 3})
    assert bad.status_code == 422
    assert api_client.post(f"/v1/models/x-{tag}/train", json={"type": "item_knn", "train_from": 5, "train_to": 2,
                                                               "eval_to": 3}).status_code == 422

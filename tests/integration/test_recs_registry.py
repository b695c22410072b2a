"""The EASE batch job over the real Cassandra history (stopped mid-way and resumed from its
checkpoint), publishing to Redis and the model registry; the registry routes (list, predict,
activate, validation)."""

from __future__ import annotations

import uuid

import pytest

from aura.keys import RedisKeys
from aura.models.registry import Registry
from jobs import ease
from jobs.checkpoint import Checkpoint

pytestmark = [pytest.mark.integration]


def test_ease_job_resumes_from_its_checkpoint_and_publishes(isolated, cassandra, redis_client, api_client):
    tag = uuid.uuid4().hex[:8]
    since = 1000  # the shared test keyspace holds other tests' interactions: learn from this window only
    users = {f"{tag}-u{k}": [f"{tag}-i{(k + j) % 5}" for j in range(3)] for k in range(6)}
    for u, items in users.items():
        for t, i in enumerate(items):
            cassandra.execute("INSERT INTO interactions (user_id, event_time, item_id, event_id, event_type, weight) "
                              "VALUES (%s, %s, %s, %s, 'view', 1.0)", (u, since + t, i, f"{u}-{t}"))
    job_id = f"test-{tag}"
    first = ease.run(isolated, cassandra, redis_client, job_id=job_id, lam=1.0, chunk=2, stop_after="fit",
                     window=(since, since + 3))
    assert first == {"job_id": job_id, "stopped_after": "fit"}
    reg = Registry(cassandra, isolated)
    ck = Checkpoint(isolated.home / "jobs" / isolated.cassandra.keyspace, job_id)
    assert ck.state["loaded"] and (ck.dir / "B.npy").exists()
    version = int(ck.state["version"])
    assert reg.get("ease", version).status == "training"

    done = ease.run(isolated, cassandra, redis_client, job_id=job_id, lam=1.0, chunk=2, window=(since, since + 3))
    assert done["version"] == version and done["interactions"] >= 18
    mv = reg.get("ease", version)
    assert mv.status == "ready" and "hr@10" in mv.metrics and mv.window_start is not None
    keys = RedisKeys(isolated.redis.prefix)
    u0 = f"{tag}-u0"
    batch = redis_client.zrange(keys.recs_user_batch(u0, "ease"), 0, -1)
    assert batch and not set(batch) & set(users[u0])
    assert redis_client.zcard(keys.recs_item_similar(f"{tag}-i0", "ease")) > 0

    _, model = reg.load("ease", version)
    assert f"{tag}-i0" in model.ids and model.B.shape == (len(model.ids), len(model.ids))

    r = api_client.post("/v1/models/ease/predict", json={"history": users[u0], "version": version, "k": 2})
    assert r.status_code == 200, r.text
    predicted = [x["item_id"] for x in r.json()["items"]]
    # five items, three of them in the history: two to predict, none of them seen
    assert len(predicted) == 2 and not set(predicted) & set(users[u0])

    r = api_client.post(f"/v1/models/ease/versions/{version}/activate",
                        json={"placement": f"p-{tag}", "weights": {"ease": 1.0, "cooc": 0.5}})
    assert r.status_code == 200, r.text
    assert redis_client.hget(keys.recs_placement(f"p-{tag}"), "model_id") == "ease"
    listed = api_client.get("/v1/models").json()
    assert any(m["model_id"] == "ease" for m in listed["models"]) and f"p-{tag}" in listed["placements"]
    assert reg.get("ease", version).status == "active"

    # the served list names the active model, so its CTR is tracked per model
    r = api_client.post("/v1/recommendations/generate", json={"user_id": u0, "context": {"placement": f"p-{tag}"}})
    assert r.json()["recommendation_id"].startswith(f"hybrid+ease:{version}:")

    bad = api_client.post(f"/v1/models/ease/versions/{version}/activate",
                          json={"placement": "x", "weights": {"bogus": 1.0}})
    assert bad.status_code == 422
    assert api_client.post("/v1/models/online_mf/train", json={"type": "online_mf"}).status_code == 422
    assert api_client.post("/v1/models/ease/predict", json={"version": 9999}).status_code == 404

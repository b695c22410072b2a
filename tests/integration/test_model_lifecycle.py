"""Models managed through the API against the real Cassandra and Redis: create a model of each
trainable type with validated hyperparameters (a 422 names the field), train on a time window (the job
publishes the version's lists and reports progress; resumable after a stop), compare versions, activate
per placement (the ranking then serves that version's lists, whatever its type), roll back, and edit a
placement's weights without training."""

from __future__ import annotations

import random
import uuid

import pytest

from aura.keys import RedisKeys
from aura.models.registry import Registry, lists_name
from jobs.checkpoint import Checkpoint
from jobs.train import run
from tests.conftest import wait_for

pytestmark = [pytest.mark.integration]

T0 = 10**6 * (uuid.uuid4().int % 900_000 + 1000)  # a window no other test writes in
WINDOW = (T0, T0 + 50_000, T0 + 100_000)


def seed(cassandra, ks: str, tag: str) -> None:
    """Two taste groups over 40 items (the catalog says which: "red"/"blue" titles and categories);
    4 items of the group before T0 + 50_000, 2 more after."""
    rng = random.Random(11)
    st = cassandra.prepare(f"INSERT INTO {ks}.interactions (user_id, event_time, item_id, event_id, event_type, "
                           "weight) VALUES (?, ?, ?, ?, 'view', 1.0)")
    cat = cassandra.prepare(f"INSERT INTO {ks}.catalog_items (item_id, title, categories, tags, text, available, "
                            "deleted) VALUES (?, ?, ?, ?, ?, true, false)")
    for j in range(40):
        colour = "red" if j < 20 else "blue"
        cassandra.execute(cat, (f"{tag}-i{j}", f"{colour} thing {j}", [colour], [f"{colour}ish"], f"a {colour} item"))
    for u in range(60):
        group = [f"{tag}-i{j}" for j in range(20)] if u % 2 else [f"{tag}-i{j}" for j in range(20, 40)]
        for n, item in enumerate(rng.sample(group, 6)):
            t = T0 + (n * 10_000 if n < 4 else 50_000 + n * 1000)
            cassandra.execute(st, (f"{tag}-u{u}", t, item, f"{tag}-{u}-{n}"))


def test_create_train_compare_activate_rollback(isolated, cassandra, redis_client, api_client):
    tag = uuid.uuid4().hex[:6]
    seed(cassandra, isolated.cassandra.keyspace, tag)
    keys = RedisKeys(isolated.redis.prefix)

    # create: validated hyperparameters, a 422 naming the field, 409 on a taken id
    bad = [({"type": "als", "config": {"factors": 0}}, ["body", "config", "factors"]),
           ({"type": "als", "config": {"depth": 3}}, ["body", "config", "depth"]),
           ({"type": "bpr", "config": {"learning_rate": "fast"}}, ["body", "config", "learning_rate"]),
           ({"type": "online_mf"}, ["body", "type"]), ({"type": "nope"}, ["body", "type"])]
    for body, loc in bad:
        r = api_client.post("/v1/models", json={"model_id": f"bad-{tag}", **body})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == loc, (body, r.text)
    specs = {"ease": {"lambda": 10.0}, "item_knn": {"neighbours": 20}, "popularity": {},
             "als": {"factors": 8, "iterations": 10, "regularization": 0.1},
             "bpr": {"factors": 8, "iterations": 60}, "content_similarity": {"neighbours": 10}}
    for kind, cfg in specs.items():
        r = api_client.post("/v1/models", json={"model_id": f"{kind}-{tag}", "type": kind, "config": cfg})
        assert r.status_code == 201, r.text
        assert r.json()["config"]["k_users"] == 200  # defaults filled
    assert api_client.post("/v1/models", json={"model_id": f"als-{tag}", "type": "als"}).status_code == 409
    types = api_client.get("/v1/models/hyperparameters").json()["types"]
    assert types["als"]["factors"]["min"] == 2 and "learning_rate" in types["bpr"]

    # train every type on the window (the job itself; the API path is below): evaluated and published
    got = {}
    for kind, cfg in specs.items():
        got[kind] = run(isolated, cassandra, f"{kind}-{tag}", kind, cfg, *WINDOW, redis=redis_client)
    for kind, out in got.items():
        m = out["metrics"]
        assert m["users"] == 60 and 0 <= m["ndcg@10"] <= m["hr@10"] <= 1 and 0 < m["coverage@10"] <= 1, kind
        assert out["lists"] == lists_name(f"{kind}-{tag}", 1)
    for kind in ("ease", "item_knn", "als", "content_similarity"):  # the group structure is learnt
        assert got[kind]["metrics"]["hr@10"] > got["popularity"]["metrics"]["hr@10"], (kind, got)
    u1 = f"{tag}-u1"  # odd users: group i0..i19

    def top(kind: str) -> list[str]:  # the published list's head in the ranking's order (score, then id)
        scored = redis_client.zrange(keys.recs_user_batch(u1, lists_name(f"{kind}-{tag}", 1)), 0, -1, withscores=True)
        return [i for i, _s in sorted(scored, key=lambda t: (-t[1], t[0]))[:10]]

    als_list, knn_list = top("als"), top("item_knn")
    assert als_list and knn_list and als_list != knn_list
    assert redis_client.zcard(keys.recs_item_similar(f"{tag}-i0", lists_name(f"content_similarity-{tag}", 1))) > 0
    mv = Registry(cassandra, isolated).get(f"bpr-{tag}")
    assert mv.progress["stage"] == "done" and mv.status == "ready"

    # compare versions: a second ALS version with other hyperparameters, side by side
    run(isolated, cassandra, f"als-{tag}", "als", {"factors": 4, "iterations": 2}, *WINDOW, redis=redis_client)
    cmp = api_client.get(f"/v1/models/als-{tag}/compare").json()
    assert [v["version"] for v in cmp["versions"]] == [2, 1] and cmp["versions"][0]["config"]["factors"] == 4
    assert set(cmp["best"]) == {"hr@10", "ndcg@10", "coverage@10"}
    assert api_client.get(f"/v1/models/als-{tag}/compare?versions=1,7").status_code == 404

    # activate per placement: the ranking serves the activated version's lists (its ``ease`` source)
    placement = f"p-{tag}"

    def served() -> list[str]:
        r = api_client.post("/v1/recommendations/generate", json={"user_id": u1, "limit": 10,
                                                                   "context": {"placement": placement}})
        assert r.status_code == 200, r.text
        return [x["item_id"] for x in r.json()["items"]]

    def activate(kind: str, version: int = 1) -> None:
        r = api_client.post(f"/v1/models/{kind}-{tag}/versions/{version}/activate",
                            json={"placement": placement, "weights": {"ease": 1.0}})
        assert r.status_code == 200, r.text

    activate("item_knn")
    wait_for(lambda: served() == knn_list, timeout=30, interval=0.3, what="the item-kNN lists served")
    activate("als")
    wait_for(lambda: served() == als_list, timeout=30, interval=0.3, what="the ALS lists served")
    assert Registry(cassandra, isolated).get(f"als-{tag}", 1).status == "active"

    # roll back: item-kNN again; a second rollback has nothing earlier
    r = api_client.post(f"/v1/models/placements/{placement}/rollback")
    assert r.status_code == 200 and r.json()["serving"]["model_id"] == f"item_knn-{tag}", r.text
    wait_for(lambda: served() == knn_list, timeout=30, interval=0.3, what="the rolled-back lists served")
    assert api_client.post(f"/v1/models/placements/{placement}/rollback").status_code == 422
    hist = api_client.get(f"/v1/models/placements/{placement}").json()["history"]
    assert [h["action"] for h in hist] == ["rolled_back", "activate"]
    assert Registry(cassandra, isolated).get(f"als-{tag}", 1).status == "ready"

    # weights without training: only the popular list now (and a 422 naming an unknown source)
    redis_client.zadd(keys.recs_popular(), {f"{tag}-pop": 1.0})
    r = api_client.put(f"/v1/models/placements/{placement}/weights", json={"weights": {"popular": 1.0}})
    assert r.status_code == 200, r.text
    wait_for(lambda: f"{tag}-pop" in served(), timeout=30, interval=0.3, what="the popular-only weights")
    r = api_client.put(f"/v1/models/placements/{placement}/weights", json={"weights": {"users": 0.3}})
    assert r.status_code == 200 and "AURA_RECS_USER_NEIGHBOURS" in r.json()["warnings"][0]  # off here
    r = api_client.put(f"/v1/models/placements/{placement}/weights", json={"weights": {"nope": 1.0}})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "weights", "nope"]


def test_training_through_the_api_reports_progress_and_resumes(isolated, cassandra, redis_client, api_client):
    tag = uuid.uuid4().hex[:6]
    seed(cassandra, isolated.cassandra.keyspace, tag)
    assert api_client.post("/v1/models", json={"model_id": f"als-{tag}", "type": "als",
                                                "config": {"factors": 8, "iterations": 5}}).status_code == 201
    # the job stops after fitting (a crash): its version is still training, and a resume finishes it
    job = f"resume-{tag}"
    assert run(isolated, cassandra, f"als-{tag}", "als", {"factors": 8, "iterations": 5}, *WINDOW, job_id=job,
               redis=redis_client, stop_after="fit") == {"job_id": job, "stopped_after": "fit"}
    doc = api_client.get(f"/v1/models/als-{tag}").json()
    assert doc["definition"]["type"] == "als" and doc["versions"][0]["status"] == "training"
    assert doc["versions"][0]["progress"] == {"job_id": job, "stage": "fit", "done": 5, "total": 5}
    assert (Checkpoint(isolated.home / "jobs" / isolated.cassandra.keyspace, job).dir / "model.bin").exists()
    r = api_client.post(f"/v1/models/als-{tag}/train", json={"train_from": WINDOW[0], "train_to": WINDOW[1],
                                                              "eval_to": WINDOW[2], "resume": job})
    assert r.status_code == 202, r.text

    def finished():
        v = api_client.get(f"/v1/models/als-{tag}").json()["versions"]
        return v if v[0]["status"] in ("ready", "failed") else None

    vs = wait_for(finished, timeout=180, interval=0.5, what="the resumed job")
    assert len(vs) == 1 and vs[0]["status"] == "ready" and vs[0]["metrics"]["hr@10"] > 0, vs
    assert vs[0]["lists"] == lists_name(f"als-{tag}", 1) and vs[0]["progress"]["stage"] == "done"
    # the created type is the default; another type or a bad hyperparameter is refused, naming the field
    r = api_client.post(f"/v1/models/als-{tag}/train", json={"type": "bpr", "train_from": 1, "train_to": 2,
                                                              "eval_to": 3})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "type"]
    r = api_client.post(f"/v1/models/als-{tag}/train", json={"config": {"alpha": -1}, "train_from": 1,
                                                              "train_to": 2, "eval_to": 3})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "config", "alpha"]

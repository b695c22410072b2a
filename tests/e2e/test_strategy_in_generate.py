"""Real-time optimization in one call: a placement that names a strategy bandit (``PUT
/v1/strategies/{placement}``) gets its method picked by the bandit inside ``POST
/v1/recommendations/generate``; the decision is recorded (the worker counts the pulls) and the served
list's recommendation_id is the decision id, so a click on it rewards the chosen strategy. A request
naming its method, or a placement naming no bandit (even if a ``strategy.<placement>`` bandit exists),
is served as asked without any decision."""

from __future__ import annotations

import time
import uuid

import pytest

from aura import bootstrap
from aura.producer import EventProducer
from tests.conftest import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def test_generate_picks_the_strategy_and_records_the_decision(isolated, worker_factory, api_client):
    worker_factory()
    placement = f"home{uuid.uuid4().hex[:6]}"
    bid = f"strategy.{placement}"
    r = api_client.post("/v1/bandits", json={"id": bid, "policy": "thompson", "arms": ["popular", "trending"],
                                             "placement": placement})
    assert r.status_code == 201, r.text
    # the bandit alone does not change generate: the placement must name it
    first = api_client.post("/v1/recommendations/generate", json={"user_id": "u0", "context": {"placement": placement}})
    assert first.json()["decision"] is None
    named = api_client.put(f"/v1/strategies/{placement}", json={"bandit_id": bid})
    assert named.status_code == 200 and named.json()["arms"] == ["popular", "trending"]

    served = []
    for i in range(6):
        r = api_client.post("/v1/recommendations/generate", json={
            "user_id": f"u{i}", "limit": 5, "context": {"placement": placement, "device": "mobile"}})
        assert r.status_code == 200, r.text
        doc = r.json()
        assert doc["decision"]["bandit_id"] == bid and doc["method"] == doc["decision"]["arm"]
        assert doc["method"] in ("popular", "trending")
        assert doc["recommendation_id"] == doc["decision"]["decision_id"]
        served.append(doc)

    # a named method, or a placement without a bandit: no decision; a bandit without method arms is refused
    assert api_client.post("/v1/bandits", json={"id": f"nomethods{placement}", "arms": ["a", "b"]}).status_code == 201
    assert api_client.put(f"/v1/strategies/{placement}z", json={"bandit_id": f"nomethods{placement}"}
                          ).status_code == 422
    assert api_client.put(f"/v1/strategies/{placement}z", json={"bandit_id": "nope"}).status_code == 404
    plain = api_client.post("/v1/recommendations/generate", json={
        "user_id": "u1", "method": "hybrid", "context": {"placement": placement}}).json()
    assert plain["decision"] is None and plain["method"] == "hybrid"
    other = api_client.post("/v1/recommendations/generate", json={
        "user_id": "u1", "context": {"placement": f"{placement}x"}}).json()
    assert other["decision"] is None and other["method"] == "hybrid"
    # auto: strategy.<placement> once an admin created it; a request never creates one
    auto = api_client.post("/v1/recommendations/generate", json={
        "user_id": "u1", "method": "auto", "context": {"placement": f"{placement}y"}}).json()
    assert auto["decision"] is None and auto["method"] == "hybrid"
    assert api_client.put(f"/v1/strategies/{placement}y", json={}).status_code == 201
    api_client.delete(f"/v1/strategies/{placement}y")  # the placement no longer names it ...
    assert api_client.put(f"/v1/strategies/{placement}y", json={}).status_code == 201  # ... and it was deleted
    assert api_client.post(f"/v1/bandits/{'strategy.' + placement}y/choose", json={"user_id": "u1"}).status_code == 200
    api_client.post("/v1/bandits", json={"id": f"strategy.{placement}w", "arms": ["popular", "trending"],
                                         "placement": f"{placement}w"})
    auto = api_client.post("/v1/recommendations/generate", json={
        "user_id": "u1", "method": "auto", "context": {"placement": f"{placement}w"}}).json()
    assert auto["decision"]["bandit_id"] == f"strategy.{placement}w"

    # the decisions reached the worker, and a click on a served list rewards its arm
    producer = EventProducer(isolated, bootstrap.kafka_producer(isolated))
    first = served[0]
    producer.send({"event_id": f"click-{placement}", "event_type": "recommendation_click", "user_id": "u0",
                   "item_id": "i1", "event_time": int(time.time() * 1000),
                   "recommendation_id": first["recommendation_id"]})
    assert producer.flush().failed == 0

    def learned():
        doc = api_client.get(f"/v1/bandits/{bid}").json()
        arms = {a["arm"]: a for a in doc["arms"]}
        return doc if doc["pulls"] == 6 and arms[first["method"]]["reward"] > 0 else None

    doc = wait_for(learned, timeout=60, what="the pulls and the reward folded")
    arms = {a["arm"]: a for a in doc["arms"]}
    assert sum(a["pulls"] for a in arms.values()) == 6
    assert arms[first["method"]]["pulls"] == sum(1 for d in served if d["method"] == first["method"])



def test_a_placement_stops_naming_its_bandit_and_activation_keeps_it(isolated, api_client):
    placement = f"pl{uuid.uuid4().hex[:6]}"
    r = api_client.put(f"/v1/strategies/{placement}", json={})
    assert r.status_code == 201 and r.json()["bandit_id"] == f"strategy.{placement}"
    doc = api_client.post("/v1/recommendations/generate", json={"user_id": "u1", "context": {"placement": placement}}
                          ).json()
    assert doc["decision"]["bandit_id"] == f"strategy.{placement}"
    assert api_client.delete(f"/v1/strategies/{placement}").status_code == 204
    doc = api_client.post("/v1/recommendations/generate", json={"user_id": "u1", "context": {"placement": placement}}
                          ).json()
    assert doc["decision"] is None and doc["method"] == "hybrid"

"""Decision routes over the real stack: rules (CRUD, 422s, cache invalidation, warm evaluation
without Cassandra), experiments (lifecycle, sticky assignment, exposure records on Kafka) and
bandits (choose, decision records on Kafka, arms added and removed).

Cassandra tables are shared by every test of the session (only Redis and topics are isolated), so
every id is unique per test and rules only match this test's page.
"""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Consumer

from aura import layout
from aura.keys import RedisKeys
from aura.state import profile_codec
from aura.state.profiles import Profile
from schemas.codec import decode_any
from serving.decisions import decision_state

pytestmark = [pytest.mark.integration]


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def decisions_on_kafka(settings, n: int, timeout: float = 30.0) -> list[tuple[str, dict]]:
    consumer = Consumer({"bootstrap.servers": settings.kafka.bootstrap, "group.id": f"read-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([layout.topic(settings, layout.DECISIONS)])
    out: list[tuple[str, dict]] = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and not msg.error():
            kind, rec = decode_any(msg.value())
            out.append((kind, {**rec, "_key": msg.key().decode()}))
    consumer.close()
    return out


def test_rules_crud_validation_and_evaluation(api_client, redis_client, isolated):
    page = uid("page")
    user = uid("u")
    keys = RedisKeys(isolated.redis.prefix)
    redis_client.hset(keys.user_attrs(user), mapping={"x:country": "FR"})
    profile_codec.write_sync(redis_client, keys, user, Profile(ltv=650.5, version=1))
    redis_client.sadd(keys.segment_members("vip"), user)
    on_page = {"field": "context.page", "op": "equals", "value": page}
    vip = {"id": uid("vip"), "priority": 10, "channels": ["web"], "variant": "vip",
           "conditions": {"all": [on_page, {"field": "segments", "op": "contains", "value": "vip"},
                                  {"field": "profile.country", "op": "equals", "value": "FR"}]},
           "content": {"banner": "vip"}}
    rich = {"id": uid("rich"), "priority": 5, "variant": "rich",
            "conditions": {"all": [on_page, {"field": "profile.ltv", "op": "gt", "value": 500}]}}
    fallback = {"id": uid("fallback"), "priority": 0, "variant": "default", "conditions": on_page}
    created = []
    try:
        for doc in (vip, rich, fallback):
            r = api_client.post("/v1/personalization/rules", json=doc)
            assert r.status_code == 201, r.text
            created.append(doc["id"])
        assert api_client.post("/v1/personalization/rules", json=vip).status_code == 409
        bad = api_client.post("/v1/personalization/rules", json={
            "id": uid("bad"), "variant": "x", "conditions": {"field": "profile.ltv", "op": "between", "value": 1}})
        assert bad.status_code == 422
        assert bad.json()["detail"][0]["loc"] == ["body", "conditions", "op"]
        assert "unknown operator" in bad.json()["detail"][0]["msg"]

        def evaluate(channel="web", **extra):
            r = api_client.post("/v1/personalization/evaluate",
                                json={"user_id": user, "channel": channel, "context": {"page": page}, **extra})
            assert r.status_code == 200, r.text
            return r.json()

        out = evaluate()
        assert (out["rule_id"], out["variant"], out["content"]) == (vip["id"], "vip", {"banner": "vip"})
        assert evaluate(channel="email")["variant"] == "rich"  # the vip rule is web only
        assert [m["variant"] for m in evaluate(all_matches=True)["matches"]] == ["vip", "rich", "default"]
        assert evaluate(profile={"ltv": 10}, channel="mobile")["variant"] == "default"

        # warm evaluations read no Cassandra
        cache = decision_state(api_client.app.state.aura).rules
        before = cache.durable_reads
        for _ in range(5):
            evaluate()
        assert cache.durable_reads == before

        # an update is visible to the next evaluation (cache invalidated by version)
        r = api_client.put(f"/v1/personalization/rules/{vip['id']}", json={**vip, "variant": "vip2"})
        assert r.status_code == 200, r.text
        assert evaluate()["variant"] == "vip2"
        assert api_client.put(f"/v1/personalization/rules/{uid('nope')}", json={**vip, "id": None}).status_code == 422
        assert api_client.get(f"/v1/personalization/rules/{vip['id']}").json()["variant"] == "vip2"
        assert api_client.delete(f"/v1/personalization/rules/{vip['id']}").status_code == 204
        created.remove(vip["id"])
        assert evaluate()["variant"] == "rich"
        assert api_client.delete(f"/v1/personalization/rules/{vip['id']}").status_code == 404
        assert api_client.post("/v1/personalization/evaluate", json={"user_id": user, "channel": "fax"}
                               ).status_code == 422
    finally:
        for rid in created:
            api_client.delete(f"/v1/personalization/rules/{rid}")


def test_experiment_lifecycle_assignment_and_exposures(api_client, isolated):
    eid = uid("exp")
    doc = {"id": eid, "variants": [{"id": "control"}, {"id": "green", "payload": {"color": "green"}}],
           "targeting": {"field": "context.device", "op": "in", "value": ["ios", "web"]}}
    try:
        bad = api_client.post("/v1/experiments", json={"id": eid, "variants": [{"id": "a", "weight": -1}]})
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][:2] == ["body", "variants"]
        assert api_client.post("/v1/experiments", json=doc).status_code == 201
        assert api_client.post("/v1/experiments", json=doc).status_code == 409
        mv = api_client.post("/v1/experiments", json={"id": f"{eid}-mv", "factors": {"a": [1, 2], "b": ["x", "y"]}})
        assert mv.status_code == 201
        r = api_client.post(f"/v1/experiments/{eid}/assign", json={"user_id": "u1", "context": {"device": "ios"}})
        assert r.json()["reason"] == "not_running" and r.json()["variant"] == "control"
        assert api_client.post(f"/v1/experiments/{eid}/status", json={"status": "winner"}).status_code == 409
        assert api_client.post(f"/v1/experiments/{eid}/status", json={"status": "running"}).status_code == 200
        assert api_client.put(f"/v1/experiments/{eid}", json=doc).status_code == 409  # running: frozen

        users = [f"user-{i}" for i in range(20)]
        first = {}
        for u in users:
            r = api_client.post(f"/v1/experiments/{eid}/assign", json={"user_id": u, "context": {"device": "ios"}})
            assert r.status_code == 200 and r.json()["in_experiment"], r.text
            first[u] = r.json()["variant"]
        again = {u: api_client.post(f"/v1/experiments/{eid}/assign",
                                    json={"user_id": u, "context": {"device": "web"}}).json()["variant"] for u in users}
        assert again == first and set(first.values()) == {"control", "green"}
        off = api_client.post(f"/v1/experiments/{eid}/assign", json={"user_id": "u1", "context": {"device": "tv"}})
        assert off.json()["reason"] == "not_targeted" and off.json()["in_experiment"] is False
        exposures = [r for k, r in decisions_on_kafka(isolated, 40) if k == "experiment_exposure"]
        assert len(exposures) == 40
        assert {(r["user_id"], r["variant_id"]) for r in exposures} == set(first.items())
        assert all(r["_key"] == r["user_id"] and r["experiment_id"] == eid for r in exposures)

        allout = api_client.post("/v1/experiments/assign", json={"user_id": users[0], "context": {"device": "ios"}})
        assert eid in {a["experiment_id"] for a in allout.json()["assignments"]}
        assert api_client.delete(f"/v1/experiments/{eid}").status_code == 409
        assert api_client.post(f"/v1/experiments/{eid}/status", json={"status": "winner", "winner": "green"}
                               ).status_code == 200
        won = api_client.post(f"/v1/experiments/{eid}/assign", json={"user_id": "zz", "context": {"device": "ios"}})
        assert (won.json()["variant"], won.json()["in_experiment"]) == ("green", False)
        res = api_client.get(f"/v1/experiments/{eid}/results").json()
        assert [v["variant"] for v in res["variants"]] == ["control", "green"] and res["winner"] == "green"
    finally:
        api_client.delete(f"/v1/experiments/{eid}")
        api_client.delete(f"/v1/experiments/{eid}-mv")


def test_bandit_configuration_choose_and_arm_changes(api_client, isolated):
    bid = uid("bandit")
    try:
        bad = api_client.post("/v1/bandits", json={"id": bid, "arms": ["a"], "policy": "softmax"})
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "policy"]
        assert api_client.post("/v1/bandits", json={"id": bid, "arms": ["a", "b"], "policy": "ucb1"}).status_code == 201
        r = api_client.post(f"/v1/bandits/{bid}/choose", json={"user_id": "u1", "context": {"page": "home"}})
        assert r.status_code == 200, r.text
        choice = r.json()
        assert choice["arm"] in {"a", "b"} and choice["decision_id"].startswith(f"{bid}:")
        r = api_client.post(f"/v1/bandits/{bid}/arms", json={"add": ["c"], "remove": ["a", "b"]})
        assert r.status_code == 200 and r.json()["arms"] == ["c"]
        second = api_client.post(f"/v1/bandits/{bid}/choose", json={"user_id": "u1"}).json()
        assert second["arm"] == "c"
        assert api_client.post(f"/v1/bandits/{bid}/choose", json={"user_id": "u1", "arms": ["a"]}).status_code == 422
        assert api_client.put(f"/v1/bandits/{bid}", json={"arms": ["c"], "policy": "thompson"}).status_code == 409
        assert api_client.post(f"/v1/bandits/{uid('none')}/choose", json={"user_id": "u1"}).status_code == 404
        placement = uid("home")
        assert api_client.post(f"/v1/strategies/{placement}/choose", json={"user_id": "u2"}).status_code == 404
        assert api_client.put(f"/v1/strategies/{placement}").status_code == 201
        s = api_client.post(f"/v1/strategies/{placement}/choose", json={"user_id": "u2"})
        assert s.status_code == 200 and s.json()["arm"] in {"hybrid", "collaborative", "content", "trending", "popular"}
        decisions = {r["decision_id"]: r for k, r in decisions_on_kafka(isolated, 3) if k == "bandit_decision"}
        assert set(decisions) == {choice["decision_id"], second["decision_id"], s.json()["decision_id"]}
        assert decisions[second["decision_id"]]["arm"] == "c" and decisions[second["decision_id"]]["_key"] == "u1"
        assert decisions[s.json()["decision_id"]]["placement"] == placement
    finally:
        api_client.delete(f"/v1/bandits/{bid}")

"""Acquisition cohorts on the real stack: behavior events of users first seen in different weeks
are produced over ten weeks; a worker is killed mid-stream and another resumes; the cohorts, their
active users per week and month and their revenue on ``GET /v1/analytics/cohorts`` equal a direct
count of the events (nothing lost, nothing counted twice)."""

from __future__ import annotations

import random
import signal
import time
from collections import defaultdict
from typing import Any

import pytest

from aura import bootstrap, layout
from aura.keys import RedisKeys
from aura.layout import Tables
from aura.producer import EventProducer
from aura.state.retention import DAY_MS, FENCE_COHORT, PASSIVE, period_index, period_start
from tests.conftest import wait_for

pytestmark = [pytest.mark.integration]

N_USERS, N_EVENTS = 60, 3000


def make_events(tag: str, now: int) -> list[dict[str, Any]]:
    rng = random.Random(7)  # noqa: S311 - test data
    start = now - 63 * DAY_MS
    joined = {f"{tag}-u{k}": start + rng.randrange(0, 50) * DAY_MS for k in range(N_USERS)}
    out = []
    for k in range(N_EVENTS):
        u = f"{tag}-u{rng.randrange(N_USERS)}"
        t = joined[u] + rng.randrange(0, max(1, now - 60_000 - joined[u]))
        etype = rng.choice(["view", "view", "view", "add_to_cart", "purchase", "impression"])
        ev: dict[str, Any] = {"event_id": f"{tag}-e{k}", "event_type": etype, "user_id": u, "event_time": t}
        if etype == "purchase":
            q, p = rng.randint(1, 3), rng.choice([5.0, 12.5, 40.0])
            ev["order"] = {"order_id": f"{tag}-o{k}", "currency": "EUR",
                           "lines": [{"item_id": "i1", "quantity": q, "unit_price": p}]}
        elif etype == "impression":
            ev["items"] = ["i1", "i2"]
            ev["context"] = {"placement": "homepage"}
        else:
            ev["item_id"] = f"i{rng.randrange(20)}"
        out.append(ev)
    return sorted(out, key=lambda e: e["event_time"])  # each user's first event is their first sight


def expected(events: list[dict[str, Any]], grain: str) -> dict[int, dict[str, Any]]:
    first: dict[str, int] = {}
    sizes: dict[int, int] = defaultdict(int)
    active: dict[tuple[int, int], set[str]] = defaultdict(set)
    orders: dict[tuple[int, int], int] = defaultdict(int)
    revenue: dict[tuple[int, int], float] = defaultdict(float)
    for e in events:
        if e["event_type"] in PASSIVE:
            continue
        u, t = e["user_id"], e["event_time"]
        if u not in first:
            first[u] = t
            sizes[period_start(t, grain)] += 1
        c = period_start(first[u], grain)
        k = period_index(c, t, grain)
        active[(c, k)].add(u)
        if e["event_type"] == "purchase":
            orders[(c, k)] += 1
            revenue[(c, k)] += sum(ln["quantity"] * ln["unit_price"] for ln in e["order"]["lines"])
    out: dict[int, dict[str, Any]] = {}
    for c, n in sizes.items():
        ks = sorted(k for cc, k in active if cc == c)
        out[c] = {"users": n, "active": {k: len(active[(c, k)]) for k in ks},
                  "orders": {k: orders[(c, k)] for k in ks if orders[(c, k)]},
                  "revenue": {k: round(revenue[(c, k)], 2) for k in ks if revenue[(c, k)]}}
    return out


def test_cohorts_survive_a_worker_kill_exactly_once(isolated, worker_factory, redis_client, api_client):
    s = isolated.replace(**{"batch_max": 100, "batch_catchup_max": 200, "kafka_session_timeout_s": 10.0,
                            "worker_roles": "profiles"})
    keys = RedisKeys(s.redis.prefix)
    now = int(time.time() * 1000)
    events = make_events(s.kafka.topic_prefix, now)
    producer = EventProducer(s, bootstrap.kafka_producer(s))
    for e in events:
        producer.send(e)
    assert producer.flush().failed == 0
    want_active = sum(sum(c["active"].values()) for c in expected(events, "week").values())

    def active_total() -> int:
        tot = 0
        for p in range(s.kafka.topic_partitions):
            tot += sum(int(v) for k, v in redis_client.hgetall(keys.retention_counts(p, "week")).items()
                       if k.startswith(b"a:" if isinstance(k, bytes) else "a:"))
        return tot

    first = worker_factory(s, name="first")
    wait_for(lambda: active_total() >= want_active * 0.05, timeout=120, interval=0.01, what="some progress")
    first.stop(signal.SIGKILL)
    assert active_total() < want_active, "the worker finished before the kill: the test proved nothing"
    worker_factory(s, name="second")
    wait_for(lambda: active_total() >= want_active, timeout=180, what="every event folded after the restart")
    time.sleep(1.0)  # anything still in flight would now show up as a double count
    assert active_total() == want_active

    for grain in ("week", "month"):
        want = expected(events, grain)
        got = api_client.get("/v1/analytics/cohorts", params={"grain": grain, "from": now - 70 * DAY_MS,
                                                              "to": now + DAY_MS, "periods": 20})
        assert got.status_code == 200, got.text
        body = got.json()
        by_cohort = {c["cohort_start"]: c for c in body["cohorts"]}
        assert sorted(by_cohort) == sorted(want), grain
        for c, w in want.items():
            row = by_cohort[c]
            assert row["users"] == w["users"]
            assert {p["period"]: p["active"] for p in row["periods"] if p["active"]} == w["active"], (grain, c)
            assert {p["period"]: p["orders"] for p in row["periods"] if p["orders"]} == w["orders"]
            assert {p["period"]: p["revenue"] for p in row["periods"] if p["revenue"]} == \
                pytest.approx(w["revenue"])
            p0 = row["periods"][0]
            assert p0["retention"] == pytest.approx(p0["active"] / w["users"], abs=1e-4)

    # the Cassandra copy (written behind) catches up with Redis, then answers alone when Redis loses
    # the counters: the same table
    session = bootstrap.cassandra_session(s)
    src = layout.topic(s, layout.BEHAVIOR)

    def durable_fences() -> dict[int, int]:
        rows = session.execute(f"SELECT part, value FROM {Tables.RETENTION_COUNTS} WHERE source = %s AND grain = %s "
                               "AND cohort = %s", (src, "week", FENCE_COHORT))
        return {r.part: int(r.value) for r in rows}

    def redis_fences() -> dict[int, int]:
        return {p: int(v) for p in range(s.kafka.topic_partitions)
                if (v := redis_client.get(keys.retention_fence(p))) is not None}

    wait_for(lambda: durable_fences() == redis_fences(), timeout=60, what="the Cassandra copy caught up")
    before = {g: api_client.get("/v1/analytics/cohorts", params={"grain": g, "from": now - 70 * DAY_MS,
                                                                 "to": now + DAY_MS, "periods": 20}).json()
              for g in ("week", "month")}
    assert before["week"]["sources"] == ["redis"]
    for p in range(s.kafka.topic_partitions):
        redis_client.delete(keys.retention_fence(p), *(keys.retention_counts(p, g) for g in ("week", "month")))
    for g in ("week", "month"):
        after = api_client.get("/v1/analytics/cohorts", params={"grain": g, "from": now - 70 * DAY_MS,
                                                                "to": now + DAY_MS, "periods": 20}).json()
        assert after["sources"] == ["durable"]
        assert after["cohorts"] == before[g]["cohorts"], g
    session.cluster.shutdown()

    assert api_client.get("/v1/analytics/cohorts", params={"grain": "year"}).status_code == 422
    assert api_client.get("/v1/analytics/cohorts", params={"from": now, "to": now - 1}).status_code == 422
    assert api_client.get("/v1/analytics/cohorts", params={"periods": 0}).status_code == 422
    assert api_client.get("/v1/analytics/cohorts").status_code == 200

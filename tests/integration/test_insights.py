"""The insight agent on the real stack: minute aggregates with an injected conversion drop on one
device are produced to agg.minute_metrics; the worker opens exactly one insight naming the device,
visible on the API, the agg.insights topic and the Cassandra history, and closes it after recovery.
A worker killed during the incident is replaced without duplicating or losing the insight; malformed
aggregate records are dead-lettered, and missing ones (minutes without records, a minute without
one dimension) are skipped: neither stops the agent. Campaign running totals on agg.campaigns with
a delivery-failure spike of one campaign give one insight naming it."""

from __future__ import annotations

import json
import random
import signal
import uuid
from typing import Any

import pytest
from confluent_kafka import Consumer

from aura import bootstrap, layout
from aura.keys import RedisKeys
from aura.layout import Tables
from bench.insight_traffic import T0_MS, Incident, Scenario, campaign_snapshots, records
from schemas.codec import codec
from tests.conftest import wait_for

pytestmark = [pytest.mark.integration]

DAY = 86_400_000
START, END, MINUTES = 150, 200, 230
GAP = 100  # minutes GAP .. GAP + 4 have no aggregate record


def produce(settings: Any, minutes: list[tuple[int, list[dict[str, Any]]]], extra: list[bytes] = ()) -> None:
    c = codec("agg_minute_metrics")
    topic = layout.topic(settings, layout.AGG_METRICS_MINUTE)
    p = bootstrap.kafka_producer(settings)
    for _start, recs in minutes:
        for r in recs:
            p.produce(topic, key=f"{r['window_start']}|{r['dimension']}|{r['dimension_value']}".encode(),
                      value=c.encode(r))
    for raw in extra:
        p.produce(topic, key=b"bad", value=raw)
    assert p.flush(60) == 0


def history_rows(cassandra: Any, t0: int) -> list[Any]:
    rows = cassandra.execute(f"SELECT insight_id, status, revision, doc FROM {Tables.INSIGHTS} WHERE day = %s",
                             (t0 // DAY,))
    return [r for r in rows if r.insight_id.startswith("conversion-")]


def topic_insights(settings: Any) -> dict[str, list[dict[str, Any]]]:
    c = Consumer({"bootstrap.servers": settings.kafka.bootstrap, "group.id": f"ins-{uuid.uuid4().hex[:8]}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([layout.topic(settings, layout.AGG_INSIGHTS)])
    dec = codec("agg_insight")
    out: dict[str, list[dict[str, Any]]] = {}
    idle = 0
    while idle < 6:
        msgs = c.consume(500, 0.5)
        idle = idle + 1 if not msgs else 0
        for m in msgs:
            if m.error() is None and m.value() is not None:
                out.setdefault(m.key().decode(), []).append(dec.decode(m.value()))
    c.close()
    return out


def scenario() -> tuple[int, list[tuple[int, list[dict[str, Any]]]]]:
    # a random day, so insight ids (metric + start minute) never meet another run's in the shared keyspace
    t0 = T0_MS + random.randrange(1, 3000) * DAY  # noqa: S311
    sc = Scenario(seed=11, minutes=MINUTES, incidents=[Incident("conversion", "device", "mobile", START, END, 0.6)])
    minutes = list(records(sc, 3000.0, t0))
    # missing aggregates: five minutes with no record at all, and one with no device records
    minutes = [m for i, m in enumerate(minutes) if not GAP <= i < GAP + 5]
    partial = next(i for i, (s, _r) in enumerate(minutes) if s == t0 + (GAP + 20) * 60_000)
    minutes[partial] = (minutes[partial][0], [r for r in minutes[partial][1] if r["dimension"] != "device"])
    return t0, minutes


def test_incident_opens_one_explained_insight_survives_a_restart_and_closes(
        isolated, worker_factory, redis_client, cassandra, api_client):
    s = isolated.replace(insights_lease_ms=3000, worker_roles="profiles")
    t0, minutes = scenario()
    garbage = [b"\x00not avro", codec("agg_minute_metrics").encode(
        {"window_start": t0, "window_end": t0 + 60_000, "events": {"view": -5}, "emitted_at": t0})]
    worker = worker_factory(s, name="first")
    cut = next(i for i, (st, _r) in enumerate(minutes) if st == t0 + (START + 15) * 60_000)
    produce(s, minutes[:cut], extra=garbage)  # through a quarter of the incident

    def open_row() -> Any:
        rows = history_rows(cassandra, t0)
        return rows if rows and all(r.status == "open" for r in rows) else None

    rows = wait_for(open_row, timeout=120, interval=0.5, what="an open conversion insight")
    assert len(rows) == 1
    opened_id = rows[0].insight_id
    worker.stop(signal.SIGKILL)  # mid-incident, without a chance to save anything more

    worker_factory(s, name="second")
    produce(s, minutes[cut:])

    def closed() -> Any:
        rows = history_rows(cassandra, t0)
        return rows if rows and all(r.status == "closed" for r in rows) else None

    rows = wait_for(closed, timeout=180, interval=0.5, what="the insight closed after recovery")
    assert len(rows) == 1, [r.insight_id for r in rows]
    insight_id = rows[0].insight_id
    assert insight_id == opened_id  # the restarted worker carried the same incident on

    # the API lists it, with its explanation
    got = api_client.get("/v1/analytics/insights", params={"from": t0, "to": t0 + DAY, "focus": "conversion"})
    assert got.status_code == 200, got.text
    listed = [i for i in got.json()["insights"] if i["metric"] == "conversion"]
    assert [i["insight_id"] for i in listed] == [insight_id]
    ins = listed[0]
    assert (ins["dimension"], ins["dimension_value"]) == ("device", "mobile")
    assert ins["status"] == "closed" and ins["direction"] == -1 and "device mobile" in ins["text"]
    assert api_client.get("/v1/analytics/insights", params={"from": t0, "to": t0 + DAY,
                                                            "status": "open"}).json()["count"] == 0

    # the on-demand run answers over the (here empty) minute counters, with the stored history
    run = api_client.post("/v1/analytics/insights", json={"timeframe": "90d", "focus": ["conversion"]})
    assert run.status_code == 200, run.text
    assert run.json()["metrics"] == ["conversion", "variant_conversion"]  # the focus: every conversion metric
    assert run.json()["analysed"]["minutes_with_data"] == 0
    assert api_client.post("/v1/analytics/insights", json={"timeframe": "1 week"}).status_code == 422
    assert api_client.post("/v1/analytics/insights", json={"timeframe": "1h", "why": 1}).status_code == 422
    assert api_client.get("/v1/analytics/insights", params={"severity": "fatal"}).status_code == 422

    # the topic: one insight id for the incident (each round publishes its latest revision), revisions
    # never going back, the last one closed and the same as the history's
    on_topic = {k: v for k, v in topic_insights(s).items() if k.startswith("conversion-")}
    assert list(on_topic) == [insight_id]
    revs = [r["revision"] for r in on_topic[insight_id]]
    assert revs[-1] == max(revs) and on_topic[insight_id][-1]["status"] == "closed"
    assert on_topic[insight_id][0]["status"] == "open"
    assert on_topic[insight_id][-1]["revision"] == rows[0].revision

    # the malformed records were dead-lettered; the agent went on
    dead = redis_client.hgetall(RedisKeys(s.redis.prefix).deadletter_count())
    assert int(dead.get("bad_aggregate", 0)) == 2


def test_a_campaign_failure_spike_is_one_insight_naming_the_campaign(isolated, worker_factory, cassandra):
    """Running campaign totals on agg.campaigns (no shop traffic at all): the agent differences them
    per minute and opens, then closes, one insight naming the campaign whose deliveries failed."""
    s = isolated.replace(insights_settle_s=2, worker_roles="profiles")
    t0 = T0_MS + random.randrange(1, 3000) * DAY  # noqa: S311 - insight ids never meet another run's
    tag = uuid.uuid4().hex[:6]
    names = (f"welcome-{tag}", f"promo-{tag}")
    c = codec("agg_campaign")
    topic = layout.topic(s, layout.AGG_CAMPAIGNS)
    p = bootstrap.kafka_producer(s)
    for _start, recs in records_of_campaigns(t0, names):
        for r in recs:
            p.produce(topic, key=f"{r['campaign_id']}|{r['variant'] or ''}".encode(), value=c.encode(r))
    p.produce(topic, key=b"bad", value=b"\x00not avro")
    assert p.flush(60) == 0
    worker_factory(s, name="campaigns")

    def closed() -> Any:
        rows = [r for r in cassandra.execute(f"SELECT insight_id, status, doc FROM {Tables.INSIGHTS} WHERE day = %s",
                                             (t0 // DAY,)) if r.insight_id.startswith("campaign_")]
        return rows if rows and all(r.status == "closed" for r in rows) else None

    rows = wait_for(closed, timeout=180, interval=0.5, what="a closed campaign insight")
    assert [r.insight_id.split("-")[0] for r in rows] == ["campaign_failures"]
    doc = json.loads(rows[0].doc)
    assert (doc["dimension"], doc["dimension_value"]) == ("campaign", names[1])
    assert f"is on campaign {names[1]}" in doc["text"]


def records_of_campaigns(t0: int, names: tuple[str, str]) -> Any:
    return campaign_snapshots(200, seed=3, fail={names[1]: (110, 140, 0.2)}, t0_ms=t0, names=names)

"""HTTP ingest and the producer helper against the real Kafka and Redis: accepted events are on
their topic, keyed right and decodable; bad requests answer 422/413 and are counted; delivery
failures are reported (helper) or answered 503 (HTTP)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from aura import bootstrap, layout
from aura.keys import RedisKeys
from aura.producer import EventProducer
from aura.state import profile_codec
from schemas.codec import decode_any
from tests.conftest import wait_for

pytestmark = [pytest.mark.integration]


def consume(settings, spec, n: int, timeout: float = 30) -> list[tuple[bytes, str, dict[str, Any]]]:
    """The first ``n`` records of a topic as (key, schema name, record)."""
    consumer = Consumer({"bootstrap.servers": settings.kafka.bootstrap, "group.id": f"t-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([layout.topic(settings, spec)])
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and not msg.error():
            name, rec = decode_any(msg.value())
            out.append((msg.key(), name, rec))
    consumer.close()
    return out


def ev(user: str, i: int = 0, **over) -> dict[str, Any]:
    return {"event_id": f"{user}-{i}", "event_type": "view", "user_id": user, "item_id": f"i{i}",
            "event_time": int(time.time() * 1000), **over}


def test_events_single_and_batch_are_produced_keyed_by_user(isolated, api_client, redis_client):
    user = f"u-{uuid.uuid4().hex[:8]}"
    r = api_client.post("/v1/events", json=ev(user, 0, context={"placement": "homepage"}, campaign_id="c1"))
    assert r.status_code == 202 and r.json() == {"accepted": 1}
    batch = [ev(user, 1), ev(user, 2, user_id=None, anonymous_id="anon-x"),
             ev(user, 3, event_type="purchase", order={"order_id": "o1", "currency": "EUR",
                                                       "lines": [{"item_id": "i3", "quantity": 2, "unit_price": 5}]})]
    r = api_client.post("/v1/events/batch", json=batch)
    assert r.status_code == 202 and r.json() == {"accepted": 3}

    got = consume(isolated, layout.BEHAVIOR, 4)
    assert sorted(rec["event_id"] for _, _, rec in got) == [f"{user}-{i}" for i in range(4)]
    by_id = {rec["event_id"]: (key, name, rec) for key, name, rec in got}
    key, name, rec = by_id[f"{user}-0"]
    assert (key, name) == (user.encode(), "behavior_event")
    assert rec["context"]["placement"] == "homepage" and rec["campaign_id"] == "c1"
    assert rec["receive_time"] is not None
    assert by_id[f"{user}-2"][0] == b"anon-x"
    assert by_id[f"{user}-3"][2]["order"]["lines"][0]["unit_price"] == 5.0
    metrics = redis_client.hgetall(RedisKeys(isolated.redis.prefix).ingest_count())
    assert metrics == {"behavior:accepted": "4"}


@pytest.fixture
def small_limits_client(isolated, api_key):
    """The app with small ingest limits (the edge middleware's own 1 MiB limit stays above them)."""
    from fastapi.testclient import TestClient

    from serving.app import create_app

    s = isolated.replace(**{"ingest_max_batch": 20, "ingest_max_body_bytes": 50_000})
    with TestClient(create_app(s), headers={"Authorization": f"Bearer {api_key('events')}"}) as client:
        yield client


def test_bad_requests_get_field_errors_and_are_counted(isolated, small_limits_client, redis_client):
    api_client = small_limits_client
    user = f"u-{uuid.uuid4().hex[:8]}"
    r = api_client.post("/v1/events", json=ev(user, user_id=None, event_type="click"))
    assert r.status_code == 422
    assert r.json()["detail"] == [{"loc": ["body", "user_id"], "msg": "user_id or anonymous_id is required",
                                   "type": "missing_user"}]
    r = api_client.post("/v1/events/batch", json=[ev(user, 0), ev(user, 1, event_time="soon"), ev(user, 2, x=1)])
    assert r.status_code == 422
    assert {tuple(d["loc"][:3]) for d in r.json()["detail"]} >= {("body", 1, "event_time"), ("body", 2, "x")}
    r = api_client.post("/v1/events", content=b"\xff\xfe not utf-8", headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"][0]["type"] == "json_invalid"
    # oversize: too many events, too large a body
    r = api_client.post("/v1/events/batch", json=[ev(user, i) for i in range(21)])
    assert r.status_code == 413 and "batch limit of 20" in r.json()["detail"]
    r = api_client.post("/v1/events", content=b"{" + b" " * 50_000 + b"}",
                        headers={"content-type": "application/json"})
    assert r.status_code == 413 and "50000 byte limit" in r.json()["detail"]
    # nothing reached Kafka (a 422 batch is all-or-nothing)
    consumer = Consumer({"bootstrap.servers": isolated.kafka.bootstrap, "group.id": f"t-{uuid.uuid4()}"})
    topic = layout.topic(isolated, layout.BEHAVIOR)
    parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions

    def high_watermarks():
        try:  # a just-created topic may briefly answer "not leader"
            return [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts]
        except Exception:
            return None

    highs = wait_for(high_watermarks, what="the topic's high watermarks")
    consumer.close()
    assert sum(highs) == 0
    metrics = redis_client.hgetall(RedisKeys(isolated.redis.prefix).ingest_count())
    assert metrics["behavior:rejected"] == "3" and metrics["behavior:too_large"] == "2"
    assert metrics["behavior:rejected:missing_user"] == "1"
    assert metrics["behavior:rejected:json_invalid"] == "1"
    assert "behavior:accepted" not in metrics


def test_identity_and_catalog_endpoints_produce_to_their_topics(isolated, api_client, redis_client):
    user = f"u-{uuid.uuid4().hex[:8]}"
    now = int(time.time() * 1000)
    identity = [
        {"event_id": f"{user}-c", "event_type": "create", "user_id": user, "event_time": now,
         "attributes": {"plan": "gold", "age": 41}},
        {"event_id": f"{user}-m", "event_type": "merge", "user_id": user, "anonymous_id": "anon-1",
         "event_time": now},
        {"event_id": f"{user}-p", "event_type": "preferences", "user_id": user, "event_time": now,
         "preferences": {"channels": {"email": False}, "categories": {"books": 0.8}}},
    ]
    r = api_client.post("/v1/identity", json=identity)
    assert r.status_code == 202 and r.json() == {"accepted": 3}
    r = api_client.post("/v1/identity", json={"event_id": "e", "event_type": "erase", "user_id": user,
                                               "event_time": now})
    assert r.status_code == 202
    item = {"event_id": f"{user}-i", "event_type": "upsert", "item_id": "sku-9", "event_time": now,
            "item": {"title": "Knife", "categories": ["home", "kitchen"], "price": 19.5, "stock": 4,
                     "text": "Sharp.", "metadata": {"color": "black"}}}
    r = api_client.post("/v1/catalog/items", json=item)
    assert r.status_code == 202
    r = api_client.post("/v1/catalog/items", json=[{**item, "item": {"title": "", "price": -1}}])
    assert r.status_code == 422
    assert {tuple(d["loc"]) for d in r.json()["detail"]} == {("body", 0, "item", "title"),
                                                               ("body", 0, "item", "price")}

    ids = consume(isolated, layout.IDENTITY, 4)
    assert {key for key, _, _ in ids} == {user.encode()}
    assert {name for _, name, _ in ids} == {"identity_event"}
    merge = next(rec for _, _, rec in ids if rec["event_type"] == "merge")
    assert merge["anonymous_id"] == "anon-1"
    [(key, name, rec)] = consume(isolated, layout.CATALOG, 1)
    assert (key, name) == (b"sku-9", "catalog_item") and rec["item"]["categories"] == ["home", "kitchen"]
    metrics = redis_client.hgetall(RedisKeys(isolated.redis.prefix).ingest_count())
    assert metrics["identity:accepted"] == "4" and metrics["catalog:accepted"] == "1"
    assert metrics["catalog:rejected"] == "1"


def test_producer_helper_sends_every_kind_keyed_and_reports_delivery_errors(isolated):
    producer = EventProducer(isolated, bootstrap.kafka_producer(isolated))
    now = int(time.time() * 1000)
    producer.send(ev("u1", 1))
    producer.send_identity({"event_id": "i1", "event_type": "update", "user_id": "u1", "event_time": now,
                            "attributes": {"vip": True}})
    producer.send_catalog({"event_id": "c1", "event_type": "delete", "item_id": "sku-1", "event_time": now})
    producer.send_exposure({"event_id": "x1", "anonymous_id": "a1", "experiment_id": "exp", "variant_id": "B",
                            "event_time": now})
    producer.send_delivery({"event_id": "d1", "user_id": "u1", "campaign_id": "c", "message_id": "m",
                            "channel": "email", "status": "sent", "event_time": now})
    stats = producer.flush(30)
    assert (stats.queued, stats.delivered, stats.failed) == (5, 5, 0)
    assert [(k, n) for k, n, _ in consume(isolated, layout.IDENTITY, 1)] == [(b"u1", "identity_event")]
    assert [(k, n) for k, n, _ in consume(isolated, layout.CATALOG, 1)] == [(b"sku-1", "catalog_item")]
    assert sorted((k, n) for k, n, _ in consume(isolated, layout.DECISIONS, 2)) == [
        (b"a1", "experiment_exposure"), (b"u1", "campaign_delivery")]
    # invalid events raise before anything is queued
    with pytest.raises(ValueError, match="missing_user"):
        producer.send_identity({"event_id": "i2", "event_type": "update", "user_id": "", "event_time": now,
                                "attributes": {"a": 1}})
    with pytest.raises(ValueError, match="invalid_record"):
        producer.send(ev("u1", 2, items="i1"))
    assert producer.stats.queued == 5

    # a broker that never answers: the failure is reported, with the topic and key
    errors = []
    dead = EventProducer(isolated, bootstrap.kafka_producer(isolated.replace(
        kafka_bootstrap="127.0.0.1:1"), **{"message.timeout.ms": 1500}),
        on_error=lambda err, msg: errors.append(err))
    dead.send(ev("u9", 1))
    stats = dead.flush(10)
    assert stats.failed == 1 and stats.delivered == 0 and len(errors) == 1
    assert "b'u9'" in stats.errors[0]


def test_http_ingest_answers_503_when_kafka_does_not_acknowledge(isolated, redis_client, api_key):
    from fastapi.testclient import TestClient

    from serving.app import create_app

    s = isolated.replace(**{"kafka_bootstrap": "127.0.0.1:1", "ingest_ack_timeout_s": 1.0})
    with TestClient(create_app(s), headers={"Authorization": f"Bearer {api_key('events')}"}) as client:
        r = client.post("/v1/events", json=ev("u1"))
        assert r.status_code == 503 and "retry" in r.json()["detail"]
        # bad input is still answered 422, without Kafka
        assert client.post("/v1/events", json={"event_id": "x"}).status_code == 422
        client.app.state.aura.producer.purge()  # drop the undeliverable record before shutdown flush
    metrics = wait_for(lambda: redis_client.hgetall(RedisKeys(isolated.redis.prefix).ingest_count()))
    assert metrics["behavior:unavailable"] == "1" and metrics["behavior:rejected"] == "1"


def test_http_events_reach_the_worker_and_a_resent_batch_is_deduplicated(isolated, api_client, worker_factory,
                                                                          redis_client):
    worker_factory()
    keys = RedisKeys(isolated.redis.prefix)
    user = f"u-{uuid.uuid4().hex[:8]}"
    batch = [ev(user, 0), ev(user, 1, event_type="click"), ev(user, 2, event_type="add_to_cart", item_id="i1")]
    assert api_client.post("/v1/events/batch", json=batch).status_code == 202
    assert api_client.post("/v1/events/batch", json=batch).status_code == 202  # the client's retry

    def settled():
        intake = redis_client.hgetall(keys.intake_count())
        return intake if int(intake.get("accepted", 0)) + int(intake.get("duplicate", 0)) >= 6 else None

    intake = wait_for(settled, timeout=60, what="the worker to take all six records")
    assert intake["accepted"] == "3" and intake["duplicate"] == "3"
    counts = profile_codec.read_sync(redis_client, keys, user).counts
    assert {k: counts[k] for k in ("view", "click", "add_to_cart")} == {"view": 1, "click": 1, "add_to_cart": 1}

"""User neighbours through the real pipeline: behavior events through Kafka into a worker that runs
streams/neighbours.py in the behavior fan-out (``recs_user_neighbours``, off by default: see
docs/recommendations.md), then a placement given a ``users`` weight through the API serves what users
like you did lately, and the same placement without it does not."""

from __future__ import annotations

import time

import pytest

from aura import bootstrap
from aura.keys import RedisKeys
from aura.producer import EventProducer
from tests.conftest import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow]


def test_users_like_you_are_kept_by_the_stream_and_served(isolated, worker_factory, api_client, redis_client):
    s = isolated.replace(recs_user_neighbours=True)
    worker_factory(s)
    producer = EventProducer(isolated, bootstrap.kafka_producer(isolated))
    k = RedisKeys(isolated.redis.prefix)
    now = int(time.time() * 1000)
    # a and b watch x then their own favourites; c watches x: a and b become c's neighbours
    # Users are keyed to partitions, and Kafka orders nothing across partitions: c's view is produced
    # only once a and b are x's actors (else c may be folded first, and a one-sided list would miss them)
    events = [("a", "x"), ("a", "ya"), ("b", "x"), ("b", "yb"), ("z", "other"), ("c", "x")]
    for n, (user, item) in enumerate(events):
        if user == "c":
            assert producer.flush().failed == 0
            wait_for(lambda: {"a", "b"} <= set(redis_client.zrange(k.recs_item_actors("x"), 0, -1)),
                     timeout=60, what="a and b as x's actors")
        producer.send({"event_id": f"{isolated.kafka.topic_prefix}-{n}", "event_type": "view", "user_id": user,
                       "item_id": item, "event_time": now + n})
    assert producer.flush().failed == 0
    nbrs = wait_for(lambda: redis_client.zrange(k.recs_user_nbrs("c"), 0, -1) or None
                    if {"a", "b"} <= set(redis_client.zrange(k.recs_user_nbrs("c"), 0, -1)) else None,
                    timeout=60, what="a and b as c's neighbours")
    assert set(nbrs) == {"a", "b"}  # not z (other item), never c itself
    placement = f"nbrs-{isolated.kafka.topic_prefix}"

    def served(weights: dict[str, float]) -> list[dict]:
        w = api_client.put(f"/v1/models/placements/{placement}/weights", json={"weights": weights})
        assert w.status_code == 200, w.text
        r = api_client.post("/v1/recommendations/generate", json={"user_id": "c", "limit": 5,
                                                                   "context": {"placement": placement}})
        assert r.status_code == 200, r.text
        return r.json()["items"]

    got = served({"users": 1.0})
    assert {x["item_id"] for x in got} == {"ya", "yb"}  # x is seen; "other" is not a neighbour's
    assert all(x["sources"] == ["users"] for x in got)
    # the weight is what serves them: without it the placement's only source (trending) answers, and
    # with both, the neighbours' items come first and say so
    without = served({"trending": 1.0})
    assert all("users" not in x["sources"] for x in without)
    both = served({"trending": 0.1, "users": 1.0})
    assert {x["item_id"] for x in both[:2]} == {"ya", "yb"} and all("users" in x["sources"] for x in both[:2])


def test_demographic_cold_start_through_the_stream(isolated, worker_factory, api_client, redis_client):
    """Identity events give users a country; their interactions count for the country's cohort; a new
    user from that country with no history gets the cohort's favourites (cold start), before the
    globally popular item."""
    worker_factory(isolated)  # recs_cohorts is on by default
    producer = EventProducer(isolated, bootstrap.kafka_producer(isolated))
    k = RedisKeys(isolated.redis.prefix)
    now = int(time.time() * 1000)
    for n, (user, country) in enumerate([("j1", "JP"), ("j2", "JP"), ("newjp", "JP"), ("d1", "DE")]):
        producer.send_identity({"event_id": f"{isolated.kafka.topic_prefix}-id{n}", "event_type": "create",
                                "user_id": user, "event_time": now, "attributes": {"country": country}})
    assert producer.flush().failed == 0
    wait_for(lambda: redis_client.hget(k.user_attrs("j2"), "x:country") and redis_client.hget(
        k.user_attrs("d1"), "x:country"), timeout=60, what="identity attributes")
    views = [("j1", "sushi"), ("j2", "sushi"), ("j1", "ramen"), ("d1", "pretzel"), ("d1", "pretzel"),
             ("d1", "pretzel"), ("x1", "pretzel"), ("x2", "pretzel")]
    for n, (user, item) in enumerate(views):
        producer.send({"event_id": f"{isolated.kafka.topic_prefix}-v{n}", "event_type": "view", "user_id": user,
                       "item_id": item, "event_time": now + n})
    assert producer.flush().failed == 0
    def counted() -> bool:  # every view folded: both cohort items of JP, pretzel ahead of sushi globally
        jp, top = k.recs_cohort_popular("country:jp"), k.recs_popular()
        pretzel, sushi = redis_client.zscore(top, "pretzel"), redis_client.zscore(top, "sushi")
        return (redis_client.zscore(jp, "sushi") == 2.0 and redis_client.zscore(jp, "ramen") is not None
                and pretzel is not None and sushi is not None and pretzel > sushi)

    wait_for(counted, timeout=60, what="cohort and global counts")
    r = api_client.post("/v1/recommendations/generate", json={"user_id": "newjp", "limit": 3,
                                                               "filters": {"in_stock_only": False}})
    body = r.json()
    assert r.status_code == 200 and body["strategy"] == "hybrid:cold_start", body
    assert [x["item_id"] for x in body["items"]][:2] == ["sushi", "ramen"], body
    stranger = api_client.post("/v1/recommendations/generate", json={"user_id": "nobody", "limit": 1,
                                                                      "filters": {"in_stock_only": False}}).json()
    assert stranger["items"][0]["item_id"] == "pretzel"

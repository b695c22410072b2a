"""Exactly-once recommender state under a crash: the worker is SIGKILLed while folding, a new one
replays from the committed offsets, and every item's popularity and every co-occurrence weight equal
a direct fold of the events (no event lost, none counted twice)."""

from __future__ import annotations

import signal
import time
from collections import defaultdict

import pytest

from aura import bootstrap
from aura.keys import RedisKeys
from aura.producer import EventProducer
from schemas.events import Behavior
from streams.intake import Accepted
from streams.usersignals import CoocParams, fold
from tests.conftest import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N_USERS, N_ITEMS, N_EVENTS = 40, 25, 6000


def expected_state(events: list[tuple[str, str, int]], window: int, decay: float) -> tuple[dict, dict]:
    """Popularity and raw co-occurrence by a direct fold (users' order preserved, as in Kafka)."""
    acc = [Accepted(Behavior(f"e{k}", "view", u, i, t), 0, k) for k, (u, i, t) in enumerate(events)]
    f = fold(acc, {}, {}, CoocParams(window=window, decay=decay, seq_max=50))
    pop: dict[str, float] = defaultdict(float)
    cooc: dict[tuple[str, str], float] = defaultdict(float)
    for item, a in f.items.items():
        pop[item] += a.weight
        for j, w in a.cooc.items():
            cooc[(item, j)] += w
    return dict(pop), dict(cooc)


def test_sigkill_mid_stream_neither_loses_nor_doubles(isolated, worker_factory, redis_client):
    s = isolated.replace(**{"batch_max": 200, "batch_catchup_max": 400, "kafka_session_timeout_s": 10.0})
    keys = RedisKeys(s.redis.prefix)
    now = int(time.time() * 1000)
    events = [(f"u{k % N_USERS}", f"i{(k * 7 + k // N_USERS) % N_ITEMS}", now - N_EVENTS + k) for k in range(N_EVENTS)]
    producer = EventProducer(s, bootstrap.kafka_producer(s))
    for k, (u, i, t) in enumerate(events):
        producer.send({"event_id": f"{s.kafka.topic_prefix}-{k}", "event_type": "view", "user_id": u, "item_id": i,
                       "event_time": t})
    assert producer.flush().failed == 0

    def popularity_total() -> float:
        return sum(float(v) for _i, v in redis_client.zrange(keys.recs_popular(), 0, -1, withscores=True))

    first = worker_factory(s, name="first")
    # early (5%): the worker folds thousands of events a second, so a later kill could come after the end
    wait_for(lambda: popularity_total() >= N_EVENTS * 0.05, timeout=120, interval=0.01, what="some progress")
    first.stop(signal.SIGKILL)
    done_before_kill = popularity_total()
    assert done_before_kill < N_EVENTS, "the worker finished before the kill: the test proved nothing"

    worker_factory(s, name="second")
    wait_for(lambda: popularity_total() >= N_EVENTS, timeout=180, what="every event folded after the restart")
    time.sleep(1.0)  # anything still in flight would now show up as a double count

    pop, cooc = expected_state(events, s.recs.window, s.recs.decay)
    stored_pop = {i: float(v) for i, v in redis_client.zrange(keys.recs_popular(), 0, -1, withscores=True)}
    assert stored_pop == pop
    for item in {i for i, _ in cooc}:
        stored = {j: float(v) for j, v in redis_client.zrange(keys.recs_item_cooc(item), 0, -1, withscores=True)}
        want = {j: w for (i, j), w in cooc.items() if i == item}
        assert stored.keys() == want.keys()
        for j, w in want.items():
            assert stored[j] == pytest.approx(w, rel=1e-9), (item, j)

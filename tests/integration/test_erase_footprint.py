"""Erase leaves nothing of the user: with a real worker, the user's footprint (every Redis key whose
name, members, fields or values hold the user id, and its Cassandra rows) is listed before the erase
and proven empty after it; another user's state is untouched and the identity topic carries the
user's tombstone."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Consumer

from aura import bootstrap, layout
from aura.keys import RedisKeys
from aura.layout import Tables
from aura.producer import EventProducer
from aura.state import profile_codec
from tests.conftest import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


def redis_footprint(redis_client, prefix: str, user: str) -> list[str]:
    found = []
    for key in redis_client.scan_iter(f"{prefix}:*", count=1000):
        if user in key:
            found.append(key)
            continue
        kind = redis_client.type(key)
        if kind == "set":
            hits = list(redis_client.sscan_iter(key, match=f"*{user}*"))
        elif kind == "zset":
            hits = [m for m, _ in redis_client.zscan_iter(key, match=f"*{user}*")]
        elif kind == "hash":
            hits = [f for f, v in redis_client.hscan_iter(key) if user in f or user in str(v)]
        elif kind == "list":
            hits = [v for v in redis_client.lrange(key, 0, -1) if user in v]
        elif kind == "string":
            raw = redis_client.execute_command("GET", key, NEVER_DECODE=True) or b""
            hits = [key] if user.encode() in raw else []
        else:
            hits = []
        found += [f"{key} <- {h}" for h in hits]
    return found


def cassandra_footprint(cassandra, user: str) -> list[str]:
    found = []
    for table in (Tables.USER_ACTIVITY, Tables.USER_PROFILE, Tables.INTERACTIONS, Tables.PROFILE_SEARCH):
        if list(cassandra.execute(f"SELECT user_id FROM {table} WHERE user_id = %s", (user,))):
            found.append(table)
    if list(cassandra.execute(f"SELECT segment FROM {Tables.SEGMENT_MEMBERS} WHERE user_id = %s ALLOW FILTERING",
                              (user,))):
        found.append(Tables.SEGMENT_MEMBERS)
    return found


def test_erase_removes_every_key_row_and_reference_of_the_user(isolated, worker_factory, redis_client, cassandra):
    worker_factory(isolated.replace(recs_user_neighbours=True))  # neighbour lists and item actors too
    keys = RedisKeys(isolated.redis.prefix)
    tag = uuid.uuid4().hex[:8]
    user, other = f"er{tag}", f"ot{tag}"
    items = [f"it{tag}-{i}" for i in range(3)]
    prod = EventProducer(isolated, bootstrap.kafka_producer(isolated))
    now = int(time.time() * 1000) - 10_000

    def behave(u: str, etype: str, item: str | None, dt: int, **extra) -> None:
        prod.send({"event_id": uuid.uuid4().hex, "event_type": etype, "user_id": u, "item_id": item,
                   "event_time": now + dt, "context": {"placement": "home", "session_id": uuid.uuid4().hex[:6]},
                   **extra})

    prod.send_identity({"event_id": uuid.uuid4().hex, "event_type": "create", "user_id": user, "event_time": now,
                        "attributes": {"country": "FR", "tier": 2}})
    for i, item in enumerate(items):
        behave(user, "view", item, i)
        behave(other, "view", item, 10 + i)
    behave(user, "add_to_cart", items[0], 20)
    behave(user, "purchase", None, 21, order={"order_id": uuid.uuid4().hex, "currency": "EUR",
                                               "lines": [{"item_id": items[0], "quantity": 1, "unit_price": 80.0}]})
    behave(user, "impression", None, 22, items=items, recommendation_id="r1")
    assert prod.flush().failed == 0

    missing: list[str] = []

    def settled() -> list[str] | None:
        fp = redis_footprint(redis_client, isolated.redis.prefix, user)
        needed = [keys.user_state(user), keys.user_attrs(user), keys.recs_user_seq(user), keys.recs_user_seen(user),
                  keys.recs_item_actors(items[0])]
        rows = cassandra_footprint(cassandra, user)
        missing[:] = [n for n in needed if not any(n in f for f in fp)] + [
            t for t in (Tables.USER_ACTIVITY, Tables.INTERACTIONS, Tables.PROFILE_SEARCH) if t not in rows]
        return None if missing else fp

    try:
        before = wait_for(settled, timeout=90, interval=0.5, what="the user's state in every store")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; missing: {missing}") from None
    assert len(before) >= 6, before
    assert set(cassandra_footprint(cassandra, user)) >= {Tables.USER_ACTIVITY, Tables.USER_PROFILE,
                                                         Tables.INTERACTIONS, Tables.PROFILE_SEARCH}
    # the searchable copy holds the attributes (its numeric row too) before the erase
    wait_for(lambda: "tier" in {r.attr for r in cassandra.execute(
        f"SELECT attr FROM {Tables.PROFILE_SEARCH} WHERE user_id = %s", (user,))}, what="the numeric row")
    rows = {r.attr: r for r in cassandra.execute(
        f"SELECT attr, num, terms FROM {Tables.PROFILE_SEARCH} WHERE user_id = %s", (user,))}
    assert rows[""].terms >= {"country=FR", "tier=2"} and rows["tier"].num == 2.0
    other_before = profile_codec.read_sync(redis_client, keys, other)

    prod.send_identity({"event_id": uuid.uuid4().hex, "event_type": "erase", "user_id": user,
                        "event_time": int(time.time() * 1000)})
    assert prod.flush().failed == 0
    left: list[str] = []

    def erased() -> bool:
        left[:] = redis_footprint(redis_client, isolated.redis.prefix, user) + cassandra_footprint(cassandra, user)
        return not left

    try:
        wait_for(erased, timeout=60, interval=0.5, what="an empty footprint")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; left: {left}") from None
    after_other = profile_codec.read_sync(redis_client, keys, other)
    assert after_other is not None and after_other.counts == other_before.counts

    consumer = Consumer({"bootstrap.servers": isolated.kafka.bootstrap, "group.id": f"ts-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([layout.topic(isolated, layout.IDENTITY)])
    deadline, tombstone = time.monotonic() + 30, False
    while not tombstone and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        tombstone = msg is not None and not msg.error() and msg.key() == user.encode() and msg.value() is None
    consumer.close()
    assert tombstone

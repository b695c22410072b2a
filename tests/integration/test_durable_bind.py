"""The write-behind's own binding (streams/durable.py ``bind``) on the real Cassandra: for the
project's prepared statements (text, timestamps, doubles, ints, maps, lists, ``USING TIMESTAMP``
markers, nulls) it gives the driver's exact serialized values and routing key; whatever it does not
handle goes through the driver's ``bind``; the grouped batches write the rows, also when partitions
of one replica share a batch (within its bounds of statements, partitions and bytes)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from cassandra.query import UNSET_VALUE, BatchStatement, BoundStatement

from aura.layout import Tables
from streams.durable import Batching, bind, group_batches, replica_of


def test_bind_equals_the_drivers(cassandra: Any) -> None:
    interactions = cassandra.prepare(
        f"INSERT INTO {Tables.INTERACTIONS} (user_id, event_time, item_id, event_id, event_type, weight) "
        "VALUES (?, ?, ?, ?, ?, ?)")
    counters = cassandra.prepare(
        f"INSERT INTO {Tables.ANALYTICS_TOTALS} (grain, period, bucket, metric, value) VALUES (?, ?, ?, ?, ?) "
        "USING TIMESTAMP ?")
    activity = cassandra.prepare(
        f"INSERT INTO {Tables.USER_ACTIVITY} (user_id, counts, first_seen, last_seen, recent_items, "
        "applied_offset, updated_at) VALUES (?, ?, ?, ?, ?, ?, toTimestamp(now()))")
    cases = [
        (interactions, ("u1", 1_700_000_000_123, "i1", "e1", "view", 1.0)),
        (interactions, ("ü-ñ", 1_714_521_600_000, "i2", "e2", "purchase", 2.5)),
        (counters, ("minute", 1_699_920_000_000, 1_700_000_040_000, "ev:view", 17.0, 1_700_000_000_000_000)),
        (counters, ("day", 1_699_920_000_000, 1_699_920_000_000, "ir:i9", 1e-7, 1)),
        (activity, ("u2", {"view": 3, "purchase": 1}, 1_700_000_000_000, 1_700_000_900_000, ["i1", "i2"], 41)),
        (activity, ("u3", {}, 1_700_000_000_000, 1_700_000_000_000, [], None)),  # null offset
    ]
    for stmt, params in cases:
        ours, drivers = bind(stmt, params), stmt.bind(params)
        assert isinstance(ours, BoundStatement)
        assert ours.values == drivers.values and ours.routing_key == drivers.routing_key
        assert ours.keyspace == drivers.keyspace and tuple(ours.raw_values) == tuple(drivers.raw_values)
    # not handled here: the driver binds (UNSET values, missing trailing values, a non-prepared statement)
    unset = bind(activity, ("u4", {}, 1, 2, [], UNSET_VALUE))
    assert unset.values == activity.bind(("u4", {}, 1, 2, [], UNSET_VALUE)).values
    assert bind(counters, ("minute", 0, 1, "ev", 1.0)).values == counters.bind(("minute", 0, 1, "ev", 1.0)).values
    assert bind("SELECT 1", ()) == "SELECT 1"
    with pytest.raises(TypeError, match="weight"):  # the driver's message, naming the column
        bind(interactions, ("u1", 1, "i1", "e1", "view", "not a number"))


def test_grouped_batches_write_the_rows(cassandra: Any) -> None:
    insert = cassandra.prepare(
        f"INSERT INTO {Tables.INTERACTIONS} (user_id, event_time, item_id, event_id, event_type, weight) "
        "VALUES (?, ?, ?, ?, ?, ?)")
    users = [f"bind-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    rows = [(users[0], 1_700_000_000_000 + i, f"i{i}", f"e{i}", "view", float(i)) for i in range(5)]
    rows.append((users[1], 1_700_000_000_000, "i9", "e9", "purchase", 2.0))
    grouped = group_batches([(("user", r[0]), insert, r) for r in rows], max_statements=3)
    assert [type(s) for s, _ in grouped] == [BatchStatement, BatchStatement, BoundStatement]
    for stmt, params in grouped:
        cassandra.execute(stmt, params or None)
    got = {(r.user_id, r.item_id, r.weight) for u in users for r in cassandra.execute(
        f"SELECT user_id, item_id, weight FROM {Tables.INTERACTIONS} WHERE user_id = %s", (u,))}
    assert got == {(r[0], r[2], r[5]) for r in rows}


def test_partitions_of_one_replica_share_batches_within_the_bounds(cassandra: Any) -> None:
    insert = cassandra.prepare(
        f"INSERT INTO {Tables.INTERACTIONS} (user_id, event_time, item_id, event_id, event_type, weight) "
        "VALUES (?, ?, ?, ?, ?, ?)")
    tag = uuid.uuid4().hex[:8]
    users = [f"multi-{tag}-{k}" for k in range(25)]
    rows = [(u, 1_700_000_000_000 + i, f"i{i}", f"e{i}", "view", float(i)) for k, u in enumerate(users)
            for i in range(1 + k % 3)]
    rows.append((users[0], 1_700_000_000_100, "big", "e-big", "view", 1.0))
    stmts = [(("user", r[0]), insert, r) for r in rows]
    replica = replica_of(cassandra)
    assert replica(bind(insert, rows[0])) is not None  # the token map knows the one local node
    grouped = group_batches(stmts, batching=Batching(statements=8, partitions=4, max_bytes=4096), replica=replica)
    for stmt, _ in grouped:  # within every bound: statements, partitions
        assert len(stmt._statements_and_parameters) <= 8 if isinstance(stmt, BatchStatement) else True
    assert len(grouped) < len({r[0] for r in rows})  # fewer requests than partitions
    tiny = group_batches(stmts, batching=Batching(statements=8, partitions=4, max_bytes=1), replica=replica)
    assert len(tiny) == len({r[0] for r in rows})  # a byte bound of 1: one partition per batch again
    for stmt, params in grouped:
        cassandra.execute(stmt, params or None)
    got = {(r.user_id, r.item_id, r.weight) for u in users for r in cassandra.execute(
        f"SELECT user_id, item_id, weight FROM {Tables.INTERACTIONS} WHERE user_id = %s", (u,))}
    assert got == {(r[0], r[2], r[5]) for r in rows}

"""The analytics counters' format and reading (aura/state/analytics.py): buckets, and the totals a
reader sums over the partitions' shares, against an in-memory stand-in for Redis."""

from __future__ import annotations

import asyncio
from typing import Any

from redis.exceptions import NoScriptError

from aura.keys import RedisKeys
from aura.state import analytics
from aura.state.analytics import BucketTotals

KEYS = RedisKeys("t")
HOUR = 3_600_000


class FakeRedis:
    """Hashes (text values, as Redis returns them) and sets standing in for HyperLogLogs."""

    def __init__(self) -> None:
        self.hashes: dict[str, dict[str, str]] = {}
        self.hlls: dict[str, set[str]] = {}
        self.pipelines = 0
        self.scripts: set[str] = set()  # as Redis: none loaded at first (EVALSHA answers NOSCRIPT)

    def pipeline(self, transaction: bool = True) -> FakePipe:
        self.pipelines += 1
        return FakePipe(self)

    async def script_load(self, text: str) -> str:
        assert text == analytics.READ_LUA
        self.scripts.add(analytics.READ_SHA)
        return analytics.READ_SHA


class FakePipe:
    def __init__(self, r: FakeRedis) -> None:
        self.r = r
        self.ops: list[Any] = []

    def hgetall(self, key: str) -> None:
        self.ops.append(lambda: dict(self.r.hashes.get(key, {})))

    def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> None:
        """``READ_LUA`` (one partition's flat HGETALL and PFCOUNTs of each bucket with a share, the key
        names built from their halves) done in Python; the real script is checked against Redis in
        tests/integration/test_analytics_read.py."""
        assert numkeys == 1
        first, (b_before, b_after, listed, *hll_halves) = keys_and_args[0], keys_and_args[1:]

        def run() -> list[Any]:
            if sha not in self.r.scripts:
                raise NoScriptError("No matching script")
            out: list[Any] = []
            for i, s in enumerate(listed.split(","), 1):
                if i == 1:
                    assert first == b_before + s + b_after  # the call is routed by its first bucket
                flat = [x for kv in self.r.hashes.get(b_before + s + b_after, {}).items() for x in kv]
                counts = [len(self.r.hlls.get(hll_halves[k] + s + hll_halves[k + 1], set()))
                          for k in range(0, len(hll_halves), 2)]
                if flat or any(counts):
                    out.append([i, flat, *counts])
            return out

        self.ops.append(run)

    def pfcount(self, *keys: str) -> None:
        self.ops.append(lambda: len(set().union(*(self.r.hlls.get(k, set()) for k in keys))))

    async def execute(self) -> list[Any]:
        return [op() for op in self.ops]


def test_bucket_starts_cover_the_range():
    assert analytics.bucket_starts("hour", 3_600_000 + 5, 3 * 3_600_000 + 1) == [3_600_000, 7_200_000, 10_800_000]
    assert analytics.bucket_starts("day", 0, 0) == []


def test_buckets_and_metric_kinds():
    assert analytics.bucket_start(HOUR * 5 + 59_999, "minute") == HOUR * 5
    assert analytics.bucket_start(HOUR * 5 + 1, "hour") == HOUR * 5
    assert analytics.bucket_starts("minute", 0, HOUR, limit=7) == [i * 60_000 for i in range(7)]
    assert set(analytics.GRAINS) == {"minute", "hour", "day"} and set(analytics.ITEM_GRAINS) < set(analytics.GRAINS)
    assert all(analytics.is_float_metric(m) for m in ("rev", "ar:rec", "ar:pl:home", "ir:i1"))
    assert not any(analytics.is_float_metric(m) for m in ("ev", "orders", "ip:i1", "ao:rec"))


def test_read_buckets_sums_the_partitions_shares():
    r = FakeRedis()
    starts = [HOUR * i for i in range(analytics.READ_CHUNK["hour"] + 1)]  # two read pipelines
    r.hashes[KEYS.analytics_bucket(0, "hour", 0)] = {"ev": "3", "rev": "10.25", "ev:view": "2"}
    r.hashes[KEYS.analytics_bucket(1, "hour", 0)] = {"ev": "1", "rev": "2.0", "j:home": "0"}
    r.hashes[KEYS.analytics_bucket(1, "hour", starts[-1])] = {"ev": "5"}
    r.hlls[KEYS.analytics_hll(0, "hour", 0, "active")] = {"a", "b"}
    r.hlls[KEYS.analytics_hll(1, "hour", 0, "active")] = {"c"}
    r.hlls[KEYS.analytics_hll(1, "hour", 0, "f:view")] = {"c"}
    r.hlls[KEYS.analytics_hll(0, "hour", HOUR, "active")] = {"d"}  # users without a hash: still counted
    got = asyncio.run(analytics.read_buckets(r, KEYS, 2, "hour", starts))
    assert r.pipelines == 3  # the first answered NOSCRIPT: the script was loaded and the read redone
    assert asyncio.run(analytics.read_buckets(r, KEYS, 2, "hour", starts)) == got
    assert r.pipelines == 5  # loaded: two read pipelines
    assert asyncio.run(analytics.read_buckets(r, KEYS, 2, "hour", [])) == [] and r.pipelines == 5
    assert got[0] == BucketTotals("hour", 0, {"ev": 4, "rev": 12.25, "ev:view": 2},
                                  {"active": 3, "f:view": 1, "f:add_to_cart": 0, "f:purchase": 0})
    assert [b.metrics for b in got[1:-1]] == [{}] * (len(starts) - 2)  # empty buckets; zero metrics dropped
    assert got[1].users == {"active": 1, "f:view": 0, "f:add_to_cart": 0, "f:purchase": 0}
    assert got[2].users == dict.fromkeys(got[2].users, 0) and list(got[2].users) == list(got[0].users)
    assert got[-1].metrics == {"ev": 5}
    assert analytics.merge_totals(got) == {"ev": 9, "rev": 12.25, "ev:view": 2}


def test_distinct_users_unites_buckets_per_partition():
    r = FakeRedis()
    r.hlls[KEYS.analytics_hll(0, "day", 0, "active")] = {"a", "b"}
    r.hlls[KEYS.analytics_hll(0, "day", 86_400_000, "active")] = {"b"}
    r.hlls[KEYS.analytics_hll(1, "day", 0, "active")] = {"c"}
    assert asyncio.run(analytics.distinct_users(r, KEYS, 2, "day", [0, 86_400_000])) == 3
    assert asyncio.run(analytics.distinct_users(r, KEYS, 2, "day", [])) == 0


def test_minute_buckets_share_a_partition_per_day_and_hours_and_days_keep_their_own():
    day = 1_700_006_400_000 - 1_700_006_400_000 % 86_400_000
    assert analytics.period_of("minute", day + 59 * 60_000) == day
    assert analytics.period_of("minute", day + 86_400_000 - 60_000) == day
    assert analytics.period_of("minute", day + 86_400_000) == day + 86_400_000
    assert analytics.period_of("hour", day + 5 * 3_600_000) == day + 5 * 3_600_000
    assert analytics.period_of("day", day) == day


def test_durable_rows_round_trip_through_the_period_reads():
    day = 19_000 * 86_400_000
    starts = [day - 120_000, day - 60_000, day, day + 60_000]  # across midnight: two partitions
    totals = [BucketTotals("minute", starts[0], {"ev": 3, "rev": 2.5}, {"active": 2, "f:view": 0}),
              BucketTotals("minute", starts[2], {"ev:view": 1}, {"active": 1})]
    rows = [r for b in totals for r in analytics.durable_rows(b)]
    assert {r[1] for r in rows} == {day - 86_400_000, day}
    assert ("minute", day - 86_400_000, starts[0], "u:active", 2.0) in rows
    assert not any(r[3] == "u:f:view" for r in rows)  # a zero count is not written
    ranges = analytics.period_ranges("minute", starts)
    assert sorted(ranges) == [(day - 86_400_000, starts[0], starts[1]), (day, starts[2], starts[3])]
    got = analytics.totals_from_rows("minute", starts, [(r[2], r[3], r[4]) for r in rows] + [(day + 1, "ev", 9.0)])
    assert [b.start for b in got] == starts
    assert got[0].metrics == {"ev": 3.0, "rev": 2.5} and got[0].users == {"active": 2}
    assert got[1] == BucketTotals("minute", starts[1], {}, {})
    assert got[2].metrics == {"ev:view": 1.0} and got[2].users == {"active": 1}

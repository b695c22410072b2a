"""Reading the analytics buckets on the real Redis (aura/state/analytics.py ``read_buckets``): the
one-script-per-partition read returns exactly what plain HGETALL / PFCOUNT of every share sum to,
for buckets present in some partitions, absent from others, with integer and float metrics, and
over more buckets than one read chunk, in the small-bucket grain (minute) and a large one (hour)."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from typing import Any

import pytest

from aura import bootstrap
from aura.keys import RedisKeys
from aura.settings import Settings
from aura.state import analytics

PARTITIONS = 5
HLLS = ("active", *(f"f:{s}" for s in analytics.FUNNEL))


def fill(r: Any, keys: RedisKeys, grain: str, starts: list[int]) -> None:
    rnd = random.Random(7)
    pipe = r.pipeline(transaction=False)
    for p in range(PARTITIONS):
        for b in starts:
            if rnd.random() < 0.4:
                continue  # this partition has no share of the bucket
            for m in range(rnd.randint(1, 12)):
                name = rnd.choice(["ev", "ev:view", "rev", f"ir:i{m}", f"iv:i{m}", "ar:rec", "j:a>b"])
                if analytics.is_float_metric(name):
                    pipe.hincrbyfloat(keys.analytics_bucket(p, grain, b), name, round(rnd.uniform(0, 99), 3))
                else:
                    pipe.hincrby(keys.analytics_bucket(p, grain, b), name, rnd.randint(-2, 9))
            for what in HLLS[:2]:
                pipe.pfadd(keys.analytics_hll(p, grain, b, what), *[f"u{p}-{rnd.randint(0, 99)}" for _ in range(9)])
    pipe.execute()


def reference(r: Any, keys: RedisKeys, grain: str, starts: list[int]) -> list[tuple[Any, ...]]:
    """The totals summed from plain commands, partition by partition (the order the reader sums in)."""
    out = []
    for b in starts:
        metrics: dict[str, float] = defaultdict(float)
        users: dict[str, int] = defaultdict(int)
        for p in range(PARTITIONS):
            for m, v in r.hgetall(keys.analytics_bucket(p, grain, b)).items():
                metrics[m] += analytics._num(v)
            for what in HLLS:
                users[what] += int(r.pfcount(keys.analytics_hll(p, grain, b, what)))
        out.append((grain, b, {m: round(v, 6) for m, v in metrics.items() if v}, dict(users)))
    return out


@pytest.mark.parametrize("grain", ["minute", "hour"])
def test_read_buckets_equals_the_plain_commands(isolated: Settings, redis_client: Any, grain: str) -> None:
    keys = RedisKeys(isolated.redis.prefix)
    starts = [analytics.GRAINS[grain] * i for i in range(2 * analytics.READ_CHUNK[grain] + 3)]
    fill(redis_client, keys, grain, starts[:-2])
    redis_client.pfadd(keys.analytics_hll(3, grain, starts[-2], HLLS[-1]), "u")  # users, no counters
    want = reference(redis_client, keys, grain, starts)
    assert want[-1][2] == {} and want[-1][3] == dict.fromkeys(HLLS, 0)  # a bucket no partition has

    async def read() -> list[analytics.BucketTotals]:
        r = bootstrap.redis_async(isolated)
        try:
            return await analytics.read_buckets(r, keys, PARTITIONS, grain, starts)
        finally:
            await r.aclose()

    got = asyncio.run(read())
    assert [(b.grain, b.start, b.metrics, b.users) for b in got] == want
    assert [list(b.metrics) for b in got] == [list(w[2]) for w in want]  # same order too
    assert [list(b.users) for b in got] == [list(HLLS)] * len(starts)
    assert not want[-2][2] and want[-2][3][HLLS[-1]] == 1
    assert sum(len(b.metrics) for b in got) > 20 and any(isinstance(v, float) and not v.is_integer()
                                                         for b in got for v in b.metrics.values())

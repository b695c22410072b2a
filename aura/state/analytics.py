"""Analytics counters: their buckets (grains, bucket starts), metric names, and how to read them.

The behavior owner (streams/analytics.py) keeps, per Kafka partition, its share of every event-time
bucket in Redis (``analytics_bucket`` hashes and ``analytics_hll`` HyperLogLogs, under the
partition's own hash tag); the aggregates publisher (streams/aggregates.py) and the API
(serving/routes/analytics.py) read the totals by summing the partitions' shares. Users are
partitioned by key, so distinct-user HyperLogLogs of different partitions are disjoint and their
counts add up. Both sides import this module and never each other.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis.exceptions import NoScriptError

from aura.keys import RedisKeys

GRAINS: dict[str, int] = {"minute": 60_000, "hour": 3_600_000, "day": 86_400_000}
ITEM_GRAINS = ("hour", "day")  # grains that carry the per-item counters
FUNNEL = ("view", "add_to_cart", "purchase")
FLOAT_PREFIXES = ("rev", "ar:", "ir:", "dr:")  # metrics summed as floats (revenue); the others are integers
# buckets per read pipeline (see read_buckets): minute buckets hold no per-item counters, so many
# more of them fit in the same loop time
READ_CHUNK: dict[str, int] = {"minute": 64, "hour": 16, "day": 16}

# Metrics of a bucket hash (written by streams/analytics.py, read by the publisher and the API):
#   ev, ev:<type>                 events, events per type
#   orders, rev                   purchases and their revenue
#   pi:<pl>, pc:<pl>              impressions and recommendation clicks per placement
#   xi:<exp>:<var>, xc:<exp>:<var>  the same per experiment variant
#   ao:rec, ar:rec                purchases attributed to a recommendation click, their revenue
#   ao:pl:<pl>, ar:pl:<pl>        the same per placement of the clicked list
#   fd:<device>:<step>, fc:<channel>:<step>  funnel-step events per device / channel of the event context
#   ao:exp:<exp>:<var>, ar:exp:<exp>:<var>  attributed orders and revenue per variant
#   iv/ic/ia/ii/ip/ir:<item>      per item (hour, day): views, clicks, carts, impressions, units, revenue
#   j:<path>                      sessions per journey path (day, by session start)
#   dm:<dim>=<value>:<type>, do:<dim>=<value>, dr:<dim>=<value>  (minute) views, carts and purchases,
#                                 orders and revenue per value of DIMENSIONS (the insight engine's input)
# HyperLogLogs: ``active`` (distinct users) and ``f:<step>`` per FUNNEL step.


# Dimensions of the minute counters: device and channel (event context), country (the region of the
# context locale, "en-US" -> "US") and category (the event item's catalog category). Values longer
# than DIM_VALUE_MAX are not counted (client-supplied strings must not grow the hashes unbounded).
DIMENSIONS = ("device", "channel", "country", "category")
DIM_EVENTS = ("view", "add_to_cart", "purchase")
DIM_VALUE_MAX = 40


def country_of(locale: str | None) -> str | None:
    """The region part of a locale ("en-US" -> "US", "fr_FR" -> "FR"), None without one."""
    if not locale:
        return None
    parts = locale.replace("_", "-").split("-")
    return parts[-1].upper() if len(parts) > 1 and 2 <= len(parts[-1]) <= 3 and parts[-1].isalpha() else None


def parse_dim_metric(name: str) -> tuple[str, str, str] | None:
    """(dimension, value, what) of a ``dm:``/``do:``/``dr:`` metric name; None for any other."""
    if name[:3] not in ("dm:", "do:", "dr:"):
        return None
    body = name[3:]
    if name[:3] == "dm:":
        body, _, what = body.rpartition(":")
    else:
        what = "orders" if name[:3] == "do:" else "revenue"
    dim, sep, val = body.partition("=")
    return (dim, val, what) if sep and dim in DIMENSIONS else None


DIMENSION_MAX = 32  # device and channel values are cut to this and lower-cased (bounded metric names)


def dimension_value(raw: Any) -> str:
    """A context device or channel as counted: lower-case, at most ``DIMENSION_MAX`` characters, no
    ``:`` (the metric separator); "" when absent."""
    if not isinstance(raw, str):
        return ""
    return raw.strip().lower().replace(":", "_")[:DIMENSION_MAX]


def bucket_start(t: int, grain: str) -> int:
    return t - t % GRAINS[grain]


def is_float_metric(name: str) -> bool:
    return name.startswith(FLOAT_PREFIXES)


@dataclass
class BucketTotals:
    """One bucket's totals over every partition: metrics and distinct users per HyperLogLog."""

    grain: str
    start: int
    metrics: dict[str, float]
    users: dict[str, int]


def bucket_starts(grain: str, from_ms: int, to_ms: int, limit: int = 2000) -> list[int]:
    """The starts of the ``grain`` buckets covering [from_ms, to_ms), at most ``limit``."""
    size = GRAINS[grain]
    first = bucket_start(from_ms, grain)
    n = min(limit, max(0, (to_ms - first + size - 1) // size))
    return [first + i * size for i in range(n)]


# The durable copy (Cassandra ``analytics_totals``, written by streams/aggregates.py, read by the API
# when Redis has lost a window): one row per bucket and metric, partitioned by grain and period.
# Minute buckets share a partition per day, so the thousands of minutes a replayed history touches
# are written as a few hundred mutations instead of one per minute; hour and day buckets (the
# per-item counters, thousands of rows) keep a partition each.
PERIODS: dict[str, int] = {"minute": 86_400_000, "hour": 3_600_000, "day": 86_400_000}
USERS_PREFIX = "u:"  # distinct-user counts are rows ``u:<hll>`` next to the metrics


def period_of(grain: str, start: int) -> int:
    """The partition period of a bucket (its day for minutes, itself for hours and days)."""
    return start - start % PERIODS[grain]


def durable_rows(b: BucketTotals) -> list[tuple[str, int, int, str, float]]:
    """The ``(grain, period, bucket, metric, value)`` rows of one bucket's totals."""
    period = period_of(b.grain, b.start)
    rows = [(b.grain, period, b.start, k, float(v)) for k, v in b.metrics.items()]
    rows += [(b.grain, period, b.start, f"{USERS_PREFIX}{k}", float(v)) for k, v in b.users.items() if v]
    return rows


def period_ranges(grain: str, starts: list[int]) -> list[tuple[int, int, int]]:
    """``(period, first bucket, last bucket)`` per partition the buckets ``starts`` lie in (one range
    read each)."""
    out: dict[int, tuple[int, int]] = {}
    for s in starts:
        p = period_of(grain, s)
        lo, hi = out.get(p, (s, s))
        out[p] = (min(lo, s), max(hi, s))
    return [(p, lo, hi) for p, (lo, hi) in out.items()]


def totals_from_rows(grain: str, starts: list[int], rows: list[tuple[int, str, float]]) -> list[BucketTotals]:
    """The bucket totals of ``starts`` from durable ``(bucket, metric, value)`` rows (a bucket without
    rows has empty totals; rows of other buckets are ignored)."""
    out = {s: BucketTotals(grain, s, {}, {}) for s in starts}
    for bucket, metric, value in rows:
        b = out.get(bucket)
        if b is None:
            continue
        if metric.startswith(USERS_PREFIX):
            b.users[metric[len(USERS_PREFIX):]] = int(value)
        else:
            b.metrics[metric] = value
    return list(out.values())


def _num(v: str) -> float:
    f = float(v)
    return int(f) if f.is_integer() and "." not in v else f


# One partition's share of a chunk of buckets in one script call: per bucket the hash's flat HGETALL
# and the PFCOUNT of each HyperLogLog, only for buckets where the partition has something (a
# minute bucket is mostly in one or two partitions). The script builds the key names from each
# kind's text before and after the bucket start (cut from aura/keys.py's names, see _halves) and one
# comma-separated list of starts: a dozen arguments per call instead of ``1 + len(hlls)`` key names
# per bucket, whose packing was most of the reader's CPU. KEYS[1] is the partition's first bucket of
# the chunk: every key the script touches carries the partition's hash tag, so the call stays in
# that key's slot (Redis Cluster routes it there). Reply: {index in the chunk, flat hash, count, ...}
# per bucket with a share.
READ_LUA = """
local out = {}
local i = 0
for s in string.gmatch(ARGV[3], '[^,]+') do
  i = i + 1
  local h = redis.call('HGETALL', ARGV[1] .. s .. ARGV[2])
  local row = {i, h}
  local any = #h > 0
  for k = 4, #ARGV, 2 do
    local c = redis.call('PFCOUNT', ARGV[k] .. s .. ARGV[k + 1])
    row[#row + 1] = c
    if c > 0 then any = true end
  end
  if any then out[#out + 1] = row end
end
return out
"""
READ_SHA = hashlib.sha1(READ_LUA.encode(), usedforsecurity=False).hexdigest()  # EVALSHA names scripts by SHA-1
_MARK = -7_919_000_000_000_000_017  # a bucket start no key name holds otherwise


def _halves(name_at: Callable[[int], str]) -> list[str]:
    """[text before, text after] the bucket start in the key names ``name_at(start)``."""
    name = name_at(_MARK)
    before, sep, after = name.partition(str(_MARK))
    if not sep or str(_MARK) in after:
        raise ValueError(f"no single bucket start in the key name {name!r}")
    return [before, after]


async def _read_shares(redis: Any, keys: RedisKeys, partitions: int, grain: str, starts: list[int],
                       hlls: tuple[str, ...]) -> tuple[list[dict[str, float]], list[dict[str, int]]]:
    """Per bucket of ``starts``: its metrics and HyperLogLog counts summed over the partitions, in
    partition order (first-seen metric order, float sums as they always were). Run by the script's
    hash (``EVALSHA``; NOSCRIPT raised): a pipeline of ``register_script`` calls would ask SCRIPT
    EXISTS first on every execute, one more round trip."""
    metrics: list[dict[str, float]] = [{} for _ in starts]
    users = [dict.fromkeys(hlls, 0) for _ in starts]
    names = []
    for p in range(partitions):
        argv = _halves(lambda b, p=p: keys.analytics_bucket(p, grain, b))
        for what in hlls:
            argv += _halves(lambda b, p=p, what=what: keys.analytics_hll(p, grain, b, what))
        names.append(argv)
    size = READ_CHUNK[grain]
    for first in range(0, len(starts), size):
        chunk = starts[first:first + size]
        listed = ",".join(map(str, chunk))
        pipe = redis.pipeline(transaction=False)
        for p in range(partitions):
            argv = names[p]
            pipe.evalsha(READ_SHA, 1, keys.analytics_bucket(p, grain, chunk[0]), argv[0], argv[1], listed, *argv[2:])
        for got in await pipe.execute():
            for row in got:
                j = first + row[0] - 1
                m = metrics[j]
                flat = iter(row[1])
                for name, v in zip(flat, flat, strict=True):
                    m[name] = m.get(name, 0.0) + float(v)
                if any(row[2:]):
                    u = users[j]
                    for what, c in zip(hlls, row[2:], strict=True):
                        u[what] += c
    return metrics, users


async def read_buckets(redis: Any, keys: RedisKeys, partitions: int, grain: str, starts: list[int],
                       hlls: tuple[str, ...] = ("active", *(f"f:{s}" for s in FUNNEL))) -> list[BucketTotals]:
    """Totals of each bucket: metrics summed over partitions, distinct users per HyperLogLog.

    One pipeline per ``READ_CHUNK[grain]`` buckets (one ``READ_LUA`` call per partition): the worker's
    publisher runs in the agents' event loop, and reading every touched bucket (hour/day buckets
    hold per-item counters) in one go would hold the loop long enough to delay the agents."""
    if not starts:
        return []
    try:
        metrics, users = await _read_shares(redis, keys, partitions, grain, starts, hlls)
    except NoScriptError:  # a Redis that has not seen the script yet (or flushed its scripts)
        await redis.script_load(READ_LUA)
        metrics, users = await _read_shares(redis, keys, partitions, grain, starts, hlls)
    return [BucketTotals(grain, b, {k: round(v, 6) for k, v in m.items() if v}, u)
            for b, m, u in zip(starts, metrics, users, strict=True)]


async def distinct_users(redis: Any, keys: RedisKeys, partitions: int, grain: str, starts: list[int],
                         what: str = "active") -> int:
    """Distinct users over several buckets (HyperLogLog union per partition, summed)."""
    if not starts:
        return 0
    pipe = redis.pipeline(transaction=False)
    for p in range(partitions):
        pipe.pfcount(*[keys.analytics_hll(p, grain, b, what) for b in starts])
    return int(sum(await pipe.execute()))


def merge_totals(buckets: list[BucketTotals]) -> dict[str, float]:
    """The metrics of several buckets summed."""
    total: dict[str, float] = defaultdict(float)
    for b in buckets:
        for m, v in b.metrics.items():
            total[m] += v
    return dict(total)

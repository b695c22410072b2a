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
from dataclasses import dataclass
from typing import Any

from redis.exceptions import NoScriptError

from aura.keys import RedisKeys

GRAINS: dict[str, int] = {"minute": 60_000, "hour": 3_600_000, "day": 86_400_000}
ITEM_GRAINS = ("hour", "day")  # grains that carry the per-item counters
FUNNEL = ("view", "add_to_cart", "purchase")
FLOAT_PREFIXES = ("rev", "ar:", "ir:", "dr:")  # metrics summed as floats (revenue); the others are integers
READ_CHUNK = 16  # buckets per read pipeline (see read_buckets)

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


def _num(v: str) -> float:
    f = float(v)
    return int(f) if f.is_integer() and "." not in v else f


# One partition's share of a chunk of buckets in one script call (its keys share the partition's hash
# tag, so it is Redis Cluster-safe): per bucket the hash's flat HGETALL and the PFCOUNT of each
# HyperLogLog. One call instead of ``1 + len(hlls)`` pipelined commands per bucket and partition: the
# client packs and parses far fewer commands (the publisher runs in the agents' event loop).
READ_LUA = """
local n = tonumber(ARGV[1])
local out = {}
for i = 1, #KEYS, n + 1 do
  out[#out + 1] = redis.call('HGETALL', KEYS[i])
  for k = 1, n do out[#out + 1] = redis.call('PFCOUNT', KEYS[i + k]) end
end
return out
"""
READ_SHA = hashlib.sha1(READ_LUA.encode(), usedforsecurity=False).hexdigest()  # EVALSHA names scripts by SHA-1


async def _read_shares(redis: Any, keys: RedisKeys, partitions: int, grain: str, starts: list[int],
                       hlls: tuple[str, ...]) -> list[list[tuple[list[str], list[int]]]]:
    """Per bucket of ``starts``, per partition in order: (the bucket's flat HGETALL, its HyperLogLog
    counts). Run by the script's hash (``EVALSHA``; NOSCRIPT raised): a pipeline of
    ``register_script`` calls would ask SCRIPT EXISTS first on every execute, one more round trip."""
    shares: list[list[tuple[list[str], list[int]]]] = [[] for _ in starts]
    width = 1 + len(hlls)
    for first in range(0, len(starts), READ_CHUNK):
        chunk = starts[first:first + READ_CHUNK]
        pipe = redis.pipeline(transaction=False)
        for p in range(partitions):
            ks: list[str] = []
            for b in chunk:
                ks.append(keys.analytics_bucket(p, grain, b))
                ks += [keys.analytics_hll(p, grain, b, what) for what in hlls]
            pipe.evalsha(READ_SHA, len(ks), *ks, len(hlls))
        for got in await pipe.execute():
            for j in range(len(chunk)):
                row = got[j * width:(j + 1) * width]
                shares[first + j].append((row[0], row[1:]))
    return shares


async def read_buckets(redis: Any, keys: RedisKeys, partitions: int, grain: str, starts: list[int],
                       hlls: tuple[str, ...] = ("active", *(f"f:{s}" for s in FUNNEL))) -> list[BucketTotals]:
    """Totals of each bucket: metrics summed over partitions, distinct users per HyperLogLog.

    One pipeline per ``READ_CHUNK`` buckets (one ``READ_LUA`` call per partition): the worker's
    publisher runs in the agents' event loop, and parsing every touched bucket (hour/day buckets
    hold per-item counters) in one go would hold the loop long enough to delay the agents (the
    scripts' flat replies parse in C: 16 buckets take less loop time than 4 did as HGETALLs)."""
    if not starts:
        return []
    try:
        shares = await _read_shares(redis, keys, partitions, grain, starts, hlls)
    except NoScriptError:  # a Redis that has not seen the script yet (or flushed its scripts)
        await redis.script_load(READ_LUA)
        shares = await _read_shares(redis, keys, partitions, grain, starts, hlls)
    out = []
    for b, per_partition in zip(starts, shares, strict=True):
        metrics: dict[str, float] = defaultdict(float)
        users: dict[str, int] = defaultdict(int)
        for flat, counts in per_partition:  # partitions in order, as the sums always were
            for m, v in zip(flat[::2], flat[1::2], strict=True):
                metrics[m] += _num(v)
            for what, c in zip(hlls, counts, strict=True):
                users[what] += int(c)
        out.append(BucketTotals(grain, b, {m: (round(v, 6) if isinstance(v, float) else v)
                                           for m, v in metrics.items() if v}, dict(users)))
    return out


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

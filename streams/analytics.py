"""The writer of the analytics counters: event-time buckets (minute, hour, day) of events by type,
active users, funnel view -> cart -> purchase, revenue and orders, impressions/clicks per placement
and per experiment variant, per-item views/clicks/carts/purchases (hour and day), attribution of
purchases to the recommendation click that led to them, and session journeys (day, by session start).

Owner of the Redis keys ``analytics_bucket`` / ``analytics_hll`` / ``analytics_fence`` /
``analytics_touched`` (the hot windows; TTL per grain); their format and read helpers, shared with
the API and the aggregates publisher, are in aura/state/analytics.py. The Cassandra table
``analytics_totals`` (absolute snapshots) is written by streams/aggregates.py.

Exactly once: analytics state is not per user, so each Kafka partition keeps its own share of every
bucket under its own hash tag ``{p<n>}`` with a fence (last offset folded). Per batch and partition,
one Lua script checks the fence, applies the partition's whole contribution and moves the fence;
a replay is skipped. Item-keyed counters are kept this way too instead of a Kafka repartition: the
per-partition shares cost a sum over partitions on read and no extra topic hop on write.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aura.keys import RedisKeys
from aura.state.analytics import (
    DIM_EVENTS,
    DIM_VALUE_MAX,
    FUNNEL,
    GRAINS,
    ITEM_GRAINS,
    bucket_start,
    country_of,
    dimension_value,
    is_float_metric,
)
from streams.profiles import Fact

MINUTE = GRAINS["minute"]  # every grain is a whole number of minutes: a minute's buckets are its events' buckets
_GRAINS = tuple((g, size, g in ITEM_GRAINS) for g, size in GRAINS.items())  # (grain, size, carries items)
Metrics = list[tuple[str, float]]


def metric_names(fact: Fact) -> tuple[Metrics, Metrics, Metrics]:
    """(metric, amount) of one event in three lists: those of every grain's bucket, the per-item ones
    of the ``ITEM_GRAINS`` buckets, and the per-dimension ones of the minute bucket; pure."""
    ev = fact.acc.event
    raw = ev.raw
    et = ev.event_type
    every: Metrics = [("ev", 1), (f"ev:{et}", 1)]
    items: Metrics = []
    dims: Metrics = []
    if et in FUNNEL:  # funnel steps per device and channel (conversion by dimension)
        ctx = raw.get("context") or {}
        for dim, key in (("fd", "device"), ("fc", "channel")):
            value = dimension_value(ctx.get(key))
            if value:
                every.append((f"{dim}:{value}:{et}", 1))
    if et == "impression":
        exp = raw.get("experiment_id")
        if ev.placement:
            every.append((f"pi:{ev.placement}", 1))
        if exp:
            every.append((f"xi:{exp}:{raw.get('variant_id') or ''}", 1))
        items = [(f"ii:{item}", 1) for item in ev.items]
    elif et == "recommendation_click":
        exp = raw.get("experiment_id")
        if ev.placement:
            every.append((f"pc:{ev.placement}", 1))
        if exp:
            every.append((f"xc:{exp}:{raw.get('variant_id') or ''}", 1))
        items = [(f"ic:{ev.item_id}", 1)]
    elif et == "purchase":
        every += [("orders", 1), ("rev", ev.revenue)]
        if fact.attributed:
            _rec, aexp, avar, apl = fact.attributed
            every += [("ao:rec", 1), ("ar:rec", ev.revenue)]
            if apl:
                every += [(f"ar:pl:{apl}", ev.revenue), (f"ao:pl:{apl}", 1)]
            if aexp:
                every += [(f"ao:exp:{aexp}:{avar}", 1), (f"ar:exp:{aexp}:{avar}", ev.revenue)]
        for line in (raw.get("order") or {}).get("lines") or ():
            items += [(f"ip:{line['item_id']}", line["quantity"]),
                      (f"ir:{line['item_id']}", line["quantity"] * line["unit_price"])]
    elif et == "view":
        items = [(f"iv:{ev.item_id}", 1)]
    elif et == "click":
        items = [(f"ic:{ev.item_id}", 1)]
    elif et == "add_to_cart":
        items = [(f"ia:{ev.item_id}", 1)]
    if et in DIM_EVENTS:
        ctx = raw.get("context") or {}
        for dim, val in (("device", ctx.get("device")), ("channel", ctx.get("channel")),
                         ("country", country_of(ctx.get("locale"))), ("category", fact.category)):
            if not val or len(val) > DIM_VALUE_MAX:
                continue
            dims.append((f"dm:{dim}={val}:{et}", 1))
            if et == "purchase":
                dims += [(f"do:{dim}={val}", 1), (f"dr:{dim}={val}", ev.revenue)]
    return every, items, dims


def event_metrics(fact: Fact) -> list[tuple[str, int, str, float]]:
    """(grain, bucket start, metric, amount) of one event, in the order the fold adds them; pure."""
    t = fact.acc.event.event_time
    every, items, dims = metric_names(fact)
    out = []
    for grain in GRAINS:
        b = bucket_start(t, grain)
        out += [(grain, b, m, a) for m, a in every]
        if grain in ITEM_GRAINS:
            out += [(grain, b, m, a) for m, a in items]
    out += [("minute", bucket_start(t, "minute"), m, a) for m, a in dims]
    if fact.journey is not None:
        before, after = fact.journey
        b = bucket_start(fact.session_start, "day")
        if before:
            out.append(("day", b, f"j:{before}", -1))
        out.append(("day", b, f"j:{after}", 1))
    return out


def event_users(fact: Fact) -> list[tuple[str, int, str]]:
    """(grain, bucket start, which HyperLogLog) the event's user joins; pure."""
    ev = fact.acc.event
    out = []
    for grain in GRAINS:
        b = bucket_start(ev.event_time, grain)
        out.append((grain, b, "active"))
        if ev.event_type in FUNNEL:
            out.append((grain, b, f"f:{ev.event_type}"))
    return out


@dataclass
class Contribution:
    """One partition's share of one batch: deltas per bucket and distinct users per HyperLogLog.

    ``deltas`` and ``users`` keep the order in which the events first named each bucket and metric
    (the script's arguments, hence each hash's field order, follow it)."""

    partition: int
    offset: int = -1
    deltas: dict[tuple[str, int], dict[str, float]] = field(default_factory=dict)
    users: dict[tuple[str, int, str], set[str]] = field(default_factory=dict)

    def add(self, fact: Fact) -> None:
        """Add one event: what ``event_metrics`` and ``event_users`` list, each metric name built once
        for every grain (plain dicts, no per-event lists of tuples: the fold is on the hot path)."""
        ev = fact.acc.event
        t = ev.event_time
        every, items, dims = metric_names(fact)
        deltas = self.deltas
        for grain, size, itemized in _GRAINS:
            key = (grain, t - t % size)
            d = deltas.get(key)
            if d is None:
                d = deltas[key] = {}
            for m, a in every:
                d[m] = d.get(m, 0.0) + a
            if itemized:
                for m, a in items:
                    d[m] = d.get(m, 0.0) + a
        if dims:
            d = deltas[("minute", t - t % MINUTE)]
            for m, a in dims:
                d[m] = d.get(m, 0.0) + a
        if fact.journey is not None:
            before, after = fact.journey
            d = deltas.setdefault(("day", bucket_start(fact.session_start, "day")), {})
            if before:
                d[f"j:{before}"] = d.get(f"j:{before}", 0.0) - 1
            d[f"j:{after}"] = d.get(f"j:{after}", 0.0) + 1
        et, user = ev.event_type, ev.user_id
        funnel = "f:" + et if et in FUNNEL else None
        users = self.users
        for grain, size, _itemized in _GRAINS:
            b = t - t % size
            for what in ("active", funnel) if funnel else ("active",):
                key3 = (grain, b, what)
                s = users.get(key3)
                if s is None:
                    s = users[key3] = set()
                s.add(user)


def fold(facts: list[Fact], fences: dict[int, int]) -> dict[int, Contribution]:
    """Per partition, the contribution of the facts above that partition's fence (pure)."""
    out: dict[int, Contribution] = {}
    for f in facts:
        p, off = f.acc.partition, f.acc.offset
        if off <= fences.get(p, -1):
            continue
        c = out.get(p)
        if c is None:
            c = out[p] = Contribution(p)
        if off > c.offset:
            c.offset = off
        c.add(f)
    return out


# One script per partition and batch; the contribution travels as one JSON argument (values as
# strings) in the order of KEYS[2..]: hashes {ttl, [metric, int delta, ...], [metric, float delta, ...]},
# then HyperLogLogs {ttl, [user, ...]}.
APPLY_LUA = """
local cur = redis.call('GET', KEYS[1]) or ''
if cur ~= ARGV[1] then return 0 end
local d = cjson.decode(ARGV[3])
local k = 2
for _, h in ipairs(d.h) do
  local a = h[2]
  for j = 1, #a, 2 do redis.call('HINCRBY', KEYS[k], a[j], a[j + 1]) end
  a = h[3]
  for j = 1, #a, 2 do redis.call('HINCRBYFLOAT', KEYS[k], a[j], a[j + 1]) end
  redis.call('EXPIRE', KEYS[k], h[1])
  k = k + 1
end
for _, u in ipairs(d.u) do
  local m = u[2]
  for j = 1, #m, 500 do redis.call('PFADD', KEYS[k], unpack(m, j, math.min(j + 499, #m))) end
  redis.call('EXPIRE', KEYS[k], u[1])
  k = k + 1
end
redis.call('SET', KEYS[1], ARGV[2])
return 1
"""


def _fmt(v: float) -> str:
    return repr(round(v, 6))


def lua_call(keys: RedisKeys, c: Contribution, expected: int | None,
             ttls: dict[str, int]) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of one partition's apply script."""
    k = [keys.analytics_fence(c.partition)]
    hashes = []
    for (grain, b), metrics in c.deltas.items():
        k.append(keys.analytics_bucket(c.partition, grain, b))
        ints: list[str] = []
        floats: list[str] = []
        for m, v in metrics.items():
            if not v:
                continue
            if is_float_metric(m):
                floats += [m, _fmt(v)]
            else:
                ints += [m, str(int(v))]
        hashes.append([str(ttls[grain]), ints, floats])
    hlls = []
    for (grain, b, what), users in c.users.items():
        k.append(keys.analytics_hll(c.partition, grain, b, what))
        hlls.append([str(ttls[grain]), sorted(users)])
    blob = json.dumps({"h": hashes, "u": hlls}, separators=(",", ":"))
    return k, ["" if expected is None else str(expected), str(c.offset), blob]


class AnalyticsStore:
    """Applies contributions to Redis, fenced per partition; one instance per worker."""

    owner = "analytics"

    def __init__(self, redis: Any, keys: RedisKeys, ttls: dict[str, int]) -> None:
        self.redis = redis
        self.keys = keys
        self.ttls = ttls
        self.script = redis.register_script(APPLY_LUA)

    async def fences(self, partitions: list[int]) -> dict[int, int]:
        values = await self.redis.mget([self.keys.analytics_fence(p) for p in partitions])
        return {p: int(v) for p, v in zip(partitions, values, strict=True) if v is not None}

    async def apply(self, facts: list[Fact], buckets: set[tuple[str, int]], now_ms: int,
                    fences_read: dict[int, int] | None = None) -> int:
        """Fold ``facts`` exactly once; ``buckets`` (of the whole batch, replays included) are marked
        touched for the durable flush. Returns the number of partitions applied.

        ``fences_read``: the fences of (at least) the facts' partitions, read earlier in the batch
        (saves a round trip); the scripts compare and set them, so a fence read too early is a
        conflict and the partition is retried with a fresh read."""
        applied = 0
        partitions = sorted({f.acc.partition for f in facts})
        for attempt in range(8):
            if not partitions:
                break
            if attempt == 0 and fences_read is not None:
                fences = {p: v for p, v in fences_read.items() if p in partitions}
            else:
                fences = await self.fences(partitions)
            contributions = fold([f for f in facts if f.acc.partition in partitions], fences)
            pipe = self.redis.pipeline(transaction=False)
            order = sorted(contributions)
            for p in order:
                k, args = lua_call(self.keys, contributions[p], fences.get(p), self.ttls)
                await self.script(keys=k, args=args, client=pipe)
            if buckets and order:  # marked in the same round trip (idempotent; before or after: the same)
                pipe.zadd(self.keys.analytics_touched(), {f"{g}:{b}": now_ms for g, b in buckets})
                buckets = set()
            results = (await pipe.execute())[:len(order)] if order else []
            applied += sum(1 for r in results if r)
            partitions = [p for p, ok in zip(order, results, strict=True) if not ok]
        else:
            raise RuntimeError(f"analytics fence conflicts did not settle for partitions {partitions}")
        if buckets:
            await self.redis.zadd(self.keys.analytics_touched(), {f"{g}:{b}": now_ms for g, b in buckets})
        return applied


def time_buckets(times: Iterable[int]) -> set[tuple[str, int]]:
    """(grain, bucket start) of every event time in ``times``; every grain is a whole number of
    minutes, so each distinct minute is computed once."""
    return {(g, m - m % size) for m in {t - t % MINUTE for t in times} for g, size, _items in _GRAINS}


def batch_buckets(facts: list[Fact]) -> set[tuple[str, int]]:
    """The buckets ``facts`` touch: their events' buckets and their sessions' journey days."""
    out = time_buckets(f.acc.event.event_time for f in facts)
    out.update(("day", bucket_start(f.session_start, "day")) for f in facts if f.journey is not None)
    return out

"""The writer of the analytics counters: event-time buckets (minute, hour, day) of events by type,
active users, funnel view -> cart -> purchase, revenue and orders, impressions/clicks per placement
and per experiment variant, per-item views/clicks/carts/purchases (hour and day), attribution of
purchases to the recommendation click that led to them, and session journeys (day, by session start).

Owner of the Redis keys ``analytics_bucket`` / ``analytics_hll`` / ``analytics_fence`` /
``analytics_touched`` (the hot windows; TTL per grain); their format and read helpers, shared with
the API and the aggregates publisher, are in aura/state/analytics.py. The Cassandra table
``analytics_counters`` (absolute snapshots) is written by streams/aggregates.py.

Exactly once: analytics state is not per user, so each Kafka partition keeps its own share of every
bucket under its own hash tag ``{p<n>}`` with a fence (last offset folded). Per batch and partition,
one Lua script checks the fence, applies the partition's whole contribution and moves the fence;
a replay is skipped. Item-keyed counters are kept this way too instead of a Kafka repartition: the
per-partition shares cost a sum over partitions on read and no extra topic hop on write.
"""

from __future__ import annotations

import json
from collections import defaultdict
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


@dataclass
class Contribution:
    """One partition's share of one batch: deltas per bucket and distinct users per HyperLogLog."""

    partition: int
    offset: int = -1
    deltas: dict[tuple[str, int], dict[str, float]] = field(default_factory=lambda: defaultdict(
        lambda: defaultdict(float)))
    users: dict[tuple[str, int, str], set[str]] = field(default_factory=lambda: defaultdict(set))

    def add(self, grain: str, start: int, metric: str, amount: float) -> None:
        self.deltas[(grain, start)][metric] += amount


def event_metrics(fact: Fact) -> list[tuple[str, int, str, float]]:
    """(grain, bucket start, metric, amount) of one event; pure."""
    ev = fact.acc.event
    raw = ev.raw
    out: list[tuple[str, int, str, float]] = []
    exp, var = raw.get("experiment_id"), raw.get("variant_id")
    et = ev.event_type
    for grain in GRAINS:
        b = bucket_start(ev.event_time, grain)
        out.append((grain, b, "ev", 1))
        out.append((grain, b, f"ev:{et}", 1))
        if et in FUNNEL:  # funnel steps per device and channel (conversion by dimension)
            ctx = raw.get("context") or {}
            for dim, key in (("fd", "device"), ("fc", "channel")):
                value = dimension_value(ctx.get(key))
                if value:
                    out.append((grain, b, f"{dim}:{value}:{et}", 1))
        if et == "impression":
            if ev.placement:
                out.append((grain, b, f"pi:{ev.placement}", 1))
            if exp:
                out.append((grain, b, f"xi:{exp}:{var or ''}", 1))
        elif et == "recommendation_click":
            if ev.placement:
                out.append((grain, b, f"pc:{ev.placement}", 1))
            if exp:
                out.append((grain, b, f"xc:{exp}:{var or ''}", 1))
        elif et == "purchase":
            out.append((grain, b, "orders", 1))
            out.append((grain, b, "rev", ev.revenue))
            if fact.attributed:
                rec, aexp, avar, apl = fact.attributed
                out.append((grain, b, "ao:rec", 1))
                out.append((grain, b, "ar:rec", ev.revenue))
                if apl:
                    out.append((grain, b, f"ar:pl:{apl}", ev.revenue))
                    out.append((grain, b, f"ao:pl:{apl}", 1))
                if aexp:
                    out.append((grain, b, f"ao:exp:{aexp}:{avar}", 1))
                    out.append((grain, b, f"ar:exp:{aexp}:{avar}", ev.revenue))
        if grain in ITEM_GRAINS:
            if et == "view":
                out.append((grain, b, f"iv:{ev.item_id}", 1))
            elif et in ("click", "recommendation_click"):
                out.append((grain, b, f"ic:{ev.item_id}", 1))
            elif et == "add_to_cart":
                out.append((grain, b, f"ia:{ev.item_id}", 1))
            elif et == "impression":
                for item in ev.items:
                    out.append((grain, b, f"ii:{item}", 1))
            elif et == "purchase":
                for line in (raw.get("order") or {}).get("lines") or ():
                    out.append((grain, b, f"ip:{line['item_id']}", line["quantity"]))
                    out.append((grain, b, f"ir:{line['item_id']}", line["quantity"] * line["unit_price"]))
    if et in DIM_EVENTS:
        b = bucket_start(ev.event_time, "minute")
        ctx = raw.get("context") or {}
        for dim, val in (("device", ctx.get("device")), ("channel", ctx.get("channel")),
                         ("country", country_of(ctx.get("locale"))), ("category", fact.category)):
            if not val or len(val) > DIM_VALUE_MAX:
                continue
            out.append(("minute", b, f"dm:{dim}={val}:{et}", 1))
            if et == "purchase":
                out.append(("minute", b, f"do:{dim}={val}", 1))
                out.append(("minute", b, f"dr:{dim}={val}", ev.revenue))
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
        c.offset = max(c.offset, off)
        for grain, b, metric, amount in event_metrics(f):
            c.add(grain, b, metric, amount)
        for grain, b, what in event_users(f):
            c.users[(grain, b, what)].add(f.acc.event.user_id)
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


def batch_buckets(facts: list[Fact]) -> set[tuple[str, int]]:
    out = set()
    for f in facts:
        for grain in GRAINS:
            out.add((grain, bucket_start(f.acc.event.event_time, grain)))
        if f.journey is not None:
            out.add(("day", bucket_start(f.session_start, "day")))
    return out

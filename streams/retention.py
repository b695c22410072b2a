"""Acquisition cohorts and retention from the behavior stream: per week and month of first sight,
the users acquired, active per following period, their orders and revenue (format and math in
aura/state/retention.py; read by serving/routes/retention.py).

A behavior fan-out owner (no agent of its own). Exactly once per source partition, as the analytics
counters (streams/analytics.py): per batch the owner reads the partition's fence and the first-seen
times of the batch's users, folds the events above the fence (pure, ``fold``), and one Lua script per
partition checks the fence, records the new users' first-seen times, adds the counters, counts a user
active in a period only when the user joins that period's set (SADD says so), and moves the fence. A
replayed batch finds the fence moved and is skipped; a batch folded against state another worker
changed meanwhile fails the fence check and is folded again from a fresh read.

The durable copy: every batch (replays included) names the counters its events touch, and the
write-behind (``res.durable``, Kafka acks held until written) reads their absolute values with the
partition's fence in one script and writes them to Cassandra ``retention_counts`` with ``USING
TIMESTAMP`` = fence + 1 (aura/state/retention.py), so the counters survive a Redis loss.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import faust

from aura import layout
from aura.keys import RedisKeys
from aura.layout import Tables
from aura.state.retention import (
    DAY_MS,
    FENCE_COHORT,
    FENCE_COUNTER,
    GRAINS,
    PASSIVE,
    cohort_of,
    period_end,
    period_index,
    period_start,
)
from streams.durable import CqlStatement, execute_grouped
from streams.intake import Accepted
from streams.runtime import Batch, Owner, Resources


@dataclass
class Share:
    """One partition's contribution of one batch."""

    partition: int
    offset: int = -1
    first: dict[str, int] = field(default_factory=dict)  # new users -> first-seen ms
    counts: dict[str, dict[str, float]] = field(default_factory=lambda: {g: defaultdict(float) for g in GRAINS})
    active: dict[tuple[str, int, str], str] = field(default_factory=dict)  # (grain, period, user) -> counter
    late: int = 0  # events of periods whose active marks may be gone: not counted as activity


def fold(events: list[Accepted], fences: dict[int, int], first: dict[str, int], now_ms: int,
         seen_days: int) -> dict[int, Share]:
    """Per partition, the share of the events above its fence (pure). ``first``: the stored
    first-seen times of the batch's users (absent: not seen yet)."""
    out: dict[int, Share] = {}
    known = dict(first)
    for acc in sorted(events, key=lambda a: (a.partition, a.offset)):
        ev = acc.event
        if acc.offset <= fences.get(acc.partition, -1) or ev.event_type in PASSIVE:
            continue
        sh = out.get(acc.partition)
        if sh is None:
            sh = out[acc.partition] = Share(acc.partition)
        sh.offset = max(sh.offset, acc.offset)
        uid, t = ev.user_id, int(ev.event_time)
        f = known.get(uid)
        if f is None:
            f = known[uid] = sh.first[uid] = t
            for g in GRAINS:
                sh.counts[g][f"n:{period_start(t, g)}"] += 1
        for g in GRAINS:
            cohort = period_start(f, g)
            k = period_index(cohort, t, g)
            period = cohort if k == 0 else period_start(t, g)
            if period_end(period, g) + seen_days * DAY_MS >= now_ms:
                sh.active.setdefault((g, period, uid), f"a:{cohort}:{k}")
            else:
                sh.late += 1
            if ev.event_type == "purchase":
                sh.counts[g][f"o:{cohort}:{k}"] += 1
                sh.counts[g][f"r:{cohort}:{k}"] += float(ev.revenue)
    for acc in events:  # partitions whose new events were all passive still move their fence
        if acc.offset > fences.get(acc.partition, -1):
            sh = out.setdefault(acc.partition, Share(acc.partition))
            sh.offset = max(sh.offset, acc.offset)
    return out


Touched = set[tuple[int, str, str]]  # (partition, grain, counter)


def touched_fields(events: list[Accepted], first: dict[str, int]) -> Touched:
    """The counters the batch's events touch (pure; replays included, so a copy a crash left
    unwritten is written when the batch is redelivered). ``first``: first-seen times of the batch's
    users as stored after the fold (a user still unknown counts from the event itself)."""
    out: Touched = set()
    for acc in events:
        ev = acc.event
        if ev.event_type in PASSIVE:
            continue
        t = int(ev.event_time)
        f = first.get(ev.user_id, t)
        for g in GRAINS:
            cohort = period_start(f, g)
            k = period_index(cohort, t, g)
            out.add((acc.partition, g, f"n:{cohort}"))
            out.add((acc.partition, g, f"n:{period_start(t, g)}"))
            out |= {(acc.partition, g, f"{c}:{cohort}:{k}") for c in ("a", "o", "r")}
    return out


# KEYS: fence, first-seen hash, the counts hash of each grain (GRAINS order), then the seen sets.
# ARGV: expected fence ('' = none), new fence, JSON {f: [user, ms, ...], c: [[int fields...], [float
# fields...]] per grain, s: [[seen key index, ttl, user, grain index, counter], ...]}.
APPLY_LUA = """
local cur = redis.call('GET', KEYS[1]) or ''
if cur ~= ARGV[1] then return 0 end
local d = cjson.decode(ARGV[3])
local f = d.f
for j = 1, #f, 2 do redis.call('HSETNX', KEYS[2], f[j], f[j + 1]) end
for g, c in ipairs(d.c) do
  local ints, floats = c[1], c[2]
  for j = 1, #ints, 2 do redis.call('HINCRBY', KEYS[2 + g], ints[j], ints[j + 1]) end
  for j = 1, #floats, 2 do redis.call('HINCRBYFLOAT', KEYS[2 + g], floats[j], floats[j + 1]) end
end
local ng = #d.c
for _, s in ipairs(d.s) do
  local key = KEYS[s[1]]
  if redis.call('SADD', key, s[3]) == 1 then
    redis.call('HINCRBY', KEYS[2 + s[4]], s[5], 1)
  end
  redis.call('EXPIRE', key, s[2])
end
redis.call('SET', KEYS[1], ARGV[2])
return 1
"""


def lua_call(keys: RedisKeys, sh: Share, expected: int | None, now_ms: int,
             seen_days: int) -> tuple[list[str], list[str]]:
    """KEYS and ARGV of one partition's apply script."""
    k = [keys.retention_fence(sh.partition), keys.retention_first(sh.partition),
         *(keys.retention_counts(sh.partition, g) for g in GRAINS)]
    counts = []
    for g in GRAINS:
        ints: list[str] = []
        floats: list[str] = []
        for name, v in sh.counts[g].items():
            if name.startswith("r:"):
                if v:
                    floats += [name, repr(round(v, 6))]
            elif v:
                ints += [name, str(int(v))]
        counts.append([ints, floats])
    seen: list[list[Any]] = []
    index: dict[str, int] = {}
    for (g, period, uid), counter in sorted(sh.active.items()):
        key = keys.retention_seen(sh.partition, g, period)
        if key not in index:
            k.append(key)
            index[key] = len(k)  # Lua's KEYS are 1-based
        ttl = max(60, (period_end(period, g) + seen_days * DAY_MS - now_ms) // 1000)
        seen.append([index[key], ttl, uid, GRAINS.index(g) + 1, counter])
    blob = json.dumps({"f": [x for u, t in sorted(sh.first.items()) for x in (u, str(t))], "c": counts,
                       "s": seen}, separators=(",", ":"))
    return k, ["" if expected is None else str(expected), str(sh.offset), blob]


# KEYS: fence, counts hash. ARGV: counters. Returns [fence or false, values...] read atomically.
READ_LUA = """
local out = {redis.call('GET', KEYS[1]) or false}
if #ARGV > 0 then
  local v = redis.call('HMGET', KEYS[2], unpack(ARGV))
  for i = 1, #v do out[i + 1] = v[i] end
end
return out
"""


def durable_statements(insert: Any, source: str, partition: int, grain: str, fence: int,
                       values: dict[str, float]) -> list[CqlStatement]:
    """The Cassandra rows of one partition's read (pure): each counter under its cohort, and the
    fence, all at timestamp fence + 1 (a copy of a lower fence never wins)."""
    ts = fence + 1
    out: list[CqlStatement] = []
    for name, v in sorted(values.items()):
        cohort = cohort_of(name)
        if cohort is not None:
            out.append(((source, grain, cohort), insert, (source, grain, cohort, partition, name, v, ts)))
    out.append(((source, grain, FENCE_COHORT), insert,
                (source, grain, FENCE_COHORT, partition, FENCE_COUNTER, float(fence), ts)))
    return out


class RetentionStore:
    """Applies the batches' shares to Redis, fenced per partition; one instance per worker."""

    def __init__(self, redis: Any, keys: RedisKeys, seen_days: int) -> None:
        self.redis, self.keys, self.seen_days = redis, keys, seen_days
        self.script = redis.register_script(APPLY_LUA)
        self.reader = redis.register_script(READ_LUA)
        self.touched: Touched = set()  # of the last apply

    async def apply(self, events: list[Accepted], now_ms: int) -> int:
        """Fold ``events`` exactly once; returns the number of partitions applied (``touched``: the
        counters the events touch, for the durable copy)."""
        partitions = sorted({a.partition for a in events})
        applied = 0
        known: dict[str, int] = {}
        for _attempt in range(8):
            if not partitions:
                self.touched = touched_fields(events, known)
                return applied
            part_events = [a for a in events if a.partition in partitions]
            pipe = self.redis.pipeline(transaction=False)
            for p in partitions:
                pipe.get(self.keys.retention_fence(p))
            users = sorted({(a.partition, a.event.user_id) for a in part_events})
            for p, u in users:
                pipe.hget(self.keys.retention_first(p), u)
            raw = await pipe.execute()
            fences = {p: int(v) for p, v in zip(partitions, raw[:len(partitions)], strict=True) if v is not None}
            first = {u: int(v) for (_p, u), v in zip(users, raw[len(partitions):], strict=True) if v is not None}
            shares = fold(part_events, fences, first, now_ms, self.seen_days)
            known |= first
            for sh in shares.values():
                known |= sh.first
            order = sorted(shares)
            pipe = self.redis.pipeline(transaction=False)
            for p in order:
                k, args = lua_call(self.keys, shares[p], fences.get(p), now_ms, self.seen_days)
                await self.script(keys=k, args=args, client=pipe)
            results = await pipe.execute() if order else []
            applied += sum(1 for r in results if r)
            partitions = [p for p, ok in zip(order, results, strict=True) if not ok]
        raise RuntimeError(f"retention fence conflicts did not settle for partitions {partitions}")

    async def read(self, touched: Touched) -> list[tuple[int, str, int, dict[str, float]]]:
        """Per (partition, grain) of ``touched``: the fence and the counters' absolute values, read
        atomically (partitions Redis holds no fence of are left out: nothing to copy)."""
        groups: dict[tuple[int, str], list[str]] = {}
        for p, g, name in sorted(touched):
            groups.setdefault((p, g), []).append(name)
        pipe = self.redis.pipeline(transaction=False)
        for (p, g), names in groups.items():
            await self.reader(keys=[self.keys.retention_fence(p), self.keys.retention_counts(p, g)],
                              args=names, client=pipe)
        raw = await pipe.execute() if groups else []
        out = []
        for ((p, g), names), got in zip(groups.items(), raw, strict=True):
            if not got or got[0] is None:
                continue
            values = {n: float(v) for n, v in zip(names, got[1:], strict=False) if v is not None}
            out.append((p, g, int(got[0]), values))
        return out


class DurableCohorts:
    """The write-behind sink of the cohort counters (Cassandra ``retention_counts``)."""

    def __init__(self, res: Resources, store: RetentionStore) -> None:
        self.store, self.session = store, res.session
        self.source = layout.topic(res.settings, layout.BEHAVIOR)
        self.insert = res.session.prepare(
            f"INSERT INTO {Tables.RETENTION_COUNTS} (source, grain, cohort, part, counter, value) "
            "VALUES (?, ?, ?, ?, ?, ?) USING TIMESTAMP ?")
        res.durable.sink("retention", self.flush)

    async def flush(self, rows: dict[Any, Any]) -> int:
        stmts: list[CqlStatement] = []
        for p, g, fence, values in await self.store.read(set(rows)):
            stmts += durable_statements(self.insert, self.source, p, g, fence, values)
        return await execute_grouped(self.session, stmts)


def register(app: faust.App, res: Resources) -> list[Owner]:
    """The cohort counters as a behavior fan-out owner, when ``AURA_ANALYTICS_COHORTS`` is on."""
    s = res.settings
    if not s.analytics.cohorts:
        return []
    store = RetentionStore(res.redis, res.keys, s.analytics.cohort_seen_days)
    DurableCohorts(res, store)  # registers its write-behind sink

    async def step(b: Batch) -> None:
        await store.apply(b.kept, b.now_ms)
        res.durable.put_many("retention", dict.fromkeys(store.touched))

    return [("acquisition cohorts", step)]

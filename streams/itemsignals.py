"""The item side of the recommender signals: popularity, trending, co-occurrence and neighbour lists.

``ItemSignals`` owns ``recs_item_state`` / ``recs_item_cooc`` / ``recs_item_bought`` /
``recs_item_similar(.., cooc|bought)`` / ``recs_popular`` / ``recs_trending`` (formats:
aura/state/cooccurrence.py, aura/state/trending.py). The user side (streams/usersignals.py) reads the
item fences through ``fences_for``, folds the batch into one ``ItemDelta`` per item (what the events
above the item's fence for their source partition add; entries of one source partition reach an item
in offset order) and hands them over before the user fences move. ``apply`` writes each item's delta
in one Lua script per item and batch on ``{item}``-tagged keys, moving a fence per item *and source
partition* (``f:<p>`` in the item hash) only if it still holds the value the fold read (atomic, so
writers of different source partitions never race; Redis Cluster-ready); an item whose fence moved
meanwhile is handed back, re-read and folded again. Then it ZADDs absolute popularity and trending
scores. The publisher republishes the
normalised top-K neighbour lists of touched items at most once per ``recs_publish_interval_s``, each
normalised inside Redis by one script on the item's keys (the neighbours' popularity passed in).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping
from typing import Any

import faust
import orjson

from aura.state import trending
from aura.state.cooccurrence import (
    MONITOR_STREAM,
    NEIGHBOURS_LUA,
    ItemDelta,
    decode_published,
    encode_published,
    fence_field,
    neighbours_args,
    published_field,
)
from streams.loopstats import timed
from streams.runtime import Resources

log = logging.getLogger(__name__)

FENCE_CACHE_MAX = 500_000  # (item, source partition) fences remembered by the item side
PUBLISH_CHUNK = 50  # items per Redis pipeline when republishing neighbour lists (each chunk's parse
# and normalisation holds the event loop the behavior agent shares: kept to ~10 ms)
APPLY_CHUNK = 500  # item scripts per Redis pipeline: a catch-up batch touches thousands of items, and
# one pipeline of all their scripts could keep one reply waiting longer than the client's socket timeout

# item -> what a batch adds to it above its fences (the user side's fold, streams/usersignals.py)
ItemDeltas = Mapping[str, ItemDelta]


# ------------------------------------------------------------------------------ pure: the fold


def publish_split(dirty: set[str], pops: dict[str, float], published: dict[str, tuple[float, float]],
                  now: float, growth: float, max_age_s: float, max_items: int | None = None
                  ) -> tuple[list[str], set[str]]:
    """Which touched items get their neighbour list republished now (pure): never published, or
    their interaction weight (``pops``) grew by ``growth`` (a share) since the last publish
    (``published[item] = (weight then, time then)``), or that publish is ``max_age_s`` old. The
    others stay dirty. A list moves in proportion to its item's new interactions, so a popular item
    needs many of them to change: this bounds the publishing work without letting a list go stale.
    At most ``max_items`` (None: no limit) are due in one pass, the most changed first (never published,
    then by weight grown since the last publish as a share, then the oldest publish); the rest stay dirty
    for the next pass."""
    due: list[tuple[float, float, str]] = []
    wait: set[str] = set()
    for item in sorted(dirty):
        last = published.get(item)
        if last is None:
            due.append((-math.inf, 0.0, item))
            continue
        pop = pops.get(item, 0.0)
        if growth <= 0 or pop >= last[0] * (1.0 + growth) or now - last[1] >= max_age_s:
            grown = pop / last[0] if last[0] > 0 else math.inf
            due.append((-grown, last[1], item))
        else:
            wait.add(item)
    if max_items is not None and len(due) > max_items:
        due.sort()
        wait.update(item for _g, _t, item in due[max_items:])
        due = sorted(due[:max_items], key=lambda d: d[2])
    return [item for _g, _t, item in due], wait


# ----------------------------------------------------------------------------------- the script

# One script per item and batch (the keys of one item share its hash tag), delta as one JSON argument.
# The co-occurrence increments are summed into the stored scores read with one ZMSCORE and written with
# one ZADD per 500 neighbours (the same double additions as a ZINCRBY per neighbour, exact as text both
# ways, ``%.17g``): a command call from Lua costs more than the skiplist update it makes, and a batch
# adds to tens or hundreds of neighbours of each item.
# The trending log-score is added as aura/state/trending.log_add does; the item's catalog categories
# come back for the per-category trending sets, and its deleted flag: a deleted item's interactions
# are still counted in its state, but it is not put back into the popular and trending lists.
ITEM_LUA = """
local d = cjson.decode(ARGV[1])
for _, f in ipairs(d.f) do
  local cur = redis.call('HGET', KEYS[1], f[1]) or ''
  if cur ~= f[2] then return 0 end
end
for _, f in ipairs(d.f) do redis.call('HSET', KEYS[1], f[1], f[3]) end
local pop = redis.call('HINCRBYFLOAT', KEYS[1], 'pop', d.w)
local tr = redis.call('HGET', KEYS[1], 'tr')
if d.t ~= '' then
  local x = tonumber(d.t)
  if tr then
    local y = tonumber(tr)
    local hi, lo = x, y
    if y > x then hi, lo = y, x end
    tr = hi + math.log(1 + math.exp(lo - hi))
  else
    tr = x
  end
  tr = string.format('%.17g', tr)
  redis.call('HSET', KEYS[1], 'tr', tr)
end
local cap = tonumber(d.cap)
local function add(key, inc)
  local members, amounts = {}, {}
  for j, w in pairs(inc) do members[#members + 1] = j; amounts[#amounts + 1] = w end
  if #members == 0 then return end
  for s = 1, #members, 500 do
    local e = math.min(s + 499, #members)
    local cur = redis.call('ZMSCORE', key, unpack(members, s, e))
    local flat = {}
    for i = s, e do
      local c = cur[i - s + 1]
      flat[#flat + 1] = string.format('%.17g', (c and tonumber(c) or 0) + amounts[i])
      flat[#flat + 1] = members[i]
    end
    redis.call('ZADD', key, unpack(flat))
  end
  if redis.call('ZCARD', key) > cap then redis.call('ZREMRANGEBYRANK', key, 0, -cap - 1) end
end
add(KEYS[2], d.c)
add(KEYS[3], d.b)
return {pop, tr or '', redis.call('HGET', KEYS[4], 'categories') or '[]', redis.call('HGET', KEYS[4], 'deleted') or ''}
"""


def log_trend(a: ItemDelta, half_life_ms: float) -> float:
    """The trending log-score the batch adds to the item: ``trending.log_add`` over its hits in order."""
    out = trending.NEG_INF
    for t, w in a.hits:
        if w > 0:
            out = trending.log_add(out, trending.log_weight(w, t, half_life_ms))
    return out


def item_lua_args(a: ItemDelta, cap: int, half_life_ms: float) -> list[Any]:
    """One JSON argument: fences (field, expected, new), weight, log-trend delta, co-occurrence and
    also-bought increments (objects member -> amount; orjson writes a float as its shortest exact
    text, as ``repr`` does, several times faster than ``json``: the script's ZINCRBY reads back the
    same double), the cap of raw neighbours kept."""
    tr = log_trend(a, half_life_ms)
    blob = {"f": [[fence_field(part), "" if expected is None else str(expected), str(new)]
                  for part, (expected, new) in sorted(a.fences.items())],
            "w": repr(a.weight), "t": "" if tr == trending.NEG_INF else repr(tr),
            "c": a.cooc, "b": a.bought, "cap": str(cap)}
    return [orjson.dumps(blob)]


# ------------------------------------------------------------------------------------ the owner


class ItemSignals:
    """The item-keyed side: fenced co-occurrence, popularity, trending, top-K publishing."""

    def __init__(self, res: Resources) -> None:
        s = res.settings
        self.res, self.keys, self.redis = res, res.keys, res.redis
        self.script = res.redis.register_script(ITEM_LUA)
        self.neighbours_script = res.redis.register_script(NEIGHBOURS_LUA)
        self.half_life_ms = trending.half_life_from_hours(s.recs.trending_half_life_h)
        self.dirty: set[str] = set()
        self.dirty_bought: set[str] = set()
        self.last_publish = 0.0
        # (item, source partition) -> the fence this worker wrote last. Only a hint that saves the
        # fence reads: the script compares every fence it moves, so a stale value (another worker
        # wrote since, after a rebalance) is a conflict, and the retry reads the fences from Redis.
        self.fences: dict[tuple[str, int], int] = {}
        self.fences_max = FENCE_CACHE_MAX
        self.pops: dict[str, float] = {}  # item -> interaction weight last returned by the item script
        # source -> item -> (weight, wall time) of the last publish of its list (``read_published``)
        self.published: dict[str, dict[str, tuple[float, float]]] = {"cooc": {}, "bought": {}}

    async def fences_for(self, pairs: set[tuple[str, int]], fresh: set[tuple[str, int]] | None = None
                         ) -> dict[tuple[str, int], int | None]:
        """The stored fence of every (item, source partition) pair: this worker's last writes from the
        cache, the rest (and every pair of ``fresh``) read from Redis in one pipeline."""
        fresh = fresh or set()
        out = {ip: self.fences[ip] for ip in pairs if ip in self.fences and ip not in fresh}
        todo = sorted(pairs - out.keys())
        if todo:
            pipe = self.redis.pipeline(transaction=False)
            for item, part in todo:
                pipe.hget(self.keys.recs_item_state(item), fence_field(part))
            raw = await pipe.execute()
            out.update({ip: (int(v) if v is not None else None) for ip, v in zip(todo, raw, strict=True)})
        return out

    async def apply(self, items: ItemDeltas) -> tuple[int, set[str]]:
        """Apply a batch's item deltas, each in one script that moves the item's fences only if they
        still hold the values the fold read; returns (entries applied, the items whose fences had
        moved: the caller re-reads them and folds again)."""
        order = [i for i, a in items.items() if a.entries]
        if not order:
            return 0, set()
        cap = self.res.settings.recs.cooc_cap
        results: list[Any] = []
        for start in range(0, len(order), APPLY_CHUNK):  # bounded replies, even for a catch-up batch
            pipe = self.redis.pipeline(transaction=False)
            for item in order[start:start + APPLY_CHUNK]:
                # the item's catalog categories are read inside the script (same {item} slot), so an
                # item whose catalog entry races its first interactions still reaches its category
                # sets: either this script sees the categories or the catalog agent sees ``tr``.
                await self.script(keys=[self.keys.recs_item_state(item), self.keys.recs_item_cooc(item),
                                        self.keys.recs_item_bought(item), self.keys.recs_item_meta(item)],
                                  args=item_lua_args(items[item], cap, self.half_life_ms), client=pipe)
            results += await pipe.execute()
        conflicts: set[str] = set()
        applied = 0
        # absolute scores, one ZADD per sorted set and batch
        popular: dict[str, float] = {}
        trend: dict[str | None, dict[str, float]] = {}
        if len(self.fences) > self.fences_max:
            self.fences.clear()
        for item, res in zip(order, results, strict=True):
            a = items[item]
            if not res:
                conflicts.add(item)
                for part in a.fences:
                    self.fences.pop((item, part), None)
                continue
            for part, (_expected, new) in a.fences.items():
                self.fences[(item, part)] = new
            applied += a.entries
            pop, tr, cats = float(res[0]), res[1], json.loads(res[2] or "[]")
            self.pops[item] = pop
            if res[3] != "1":  # the meta hash's deleted flag (aura/state/items.py): a deleted item is in no list
                popular[item] = pop
                if tr:
                    for c in (None, *cats):
                        trend.setdefault(c, {})[item] = float(tr)
            if a.cooc:
                self.dirty.add(item)
            if a.bought:
                self.dirty_bought.add(item)
        pipe = self.redis.pipeline(transaction=False)
        if popular:
            pipe.zadd(self.keys.recs_popular(), popular)
        for c, scores in trend.items():
            pipe.zadd(self.keys.recs_trending(c), scores)
        pipe.hincrby(self.keys.recs_monitor(MONITOR_STREAM), "signals_applied", applied)
        await pipe.execute()
        return applied, conflicts

    async def publish_due(self, force: bool = False) -> int:
        """Republish the normalised top-K lists of items touched since the last publish."""
        interval = self.res.settings.recs.publish_interval_s
        if not (self.dirty or self.dirty_bought) or (not force and time.monotonic() - self.last_publish < interval):
            return 0
        self.last_publish = time.monotonic()
        now = time.time()
        s = self.res.settings
        await self.read_published()
        cap = s.recs.publish_max_items if s.recs.publish_max_items > 0 else None
        due_c, self.dirty = publish_split(self.dirty, self.pops, self.published["cooc"], now,
                                          s.recs.publish_min_growth, s.recs.publish_max_age_s, cap)
        due_b, self.dirty_bought = publish_split(self.dirty_bought, self.pops, self.published["bought"], now,
                                                 s.recs.publish_min_growth, s.recs.publish_max_age_s,
                                                 None if cap is None else cap - len(due_c))
        todo = [(i, "cooc") for i in due_c] + [(i, "bought") for i in due_b]
        if not todo:
            return 0
        await self.publish_lists(todo, now)
        for item, source in todo:
            self.published[source][item] = (self.pops.get(item, 0.0), now)
        return len(todo)

    async def publish_lists(self, todo: list[tuple[str, str]], now: float) -> None:
        """Republish the (item, source) lists: their raw top-m names read here (no scores), the
        popularity of every name in one ZMSCORE, then one ``NEIGHBOURS_LUA`` call per list scores,
        picks and replaces it inside Redis and sets its publish mark."""
        k, m = self.res.settings.recs.topk, self.res.settings.recs.cooc_read
        keys = [(self.keys.recs_item_cooc(i) if source == "cooc" else self.keys.recs_item_bought(i),
                 self.keys.recs_item_similar(i, source), self.keys.recs_item_state(i)) for i, source in todo]
        members: list[list[str]] = []
        for start in range(0, len(todo), PUBLISH_CHUNK):  # bounded pipelines: no multi-second replies
            pipe = self.redis.pipeline(transaction=False)
            for raw_key, _sim, _state in keys[start:start + PUBLISH_CHUNK]:
                pipe.execute_command("ZREVRANGE", raw_key, 0, m - 1)  # names only: the script reads their scores
            members += await pipe.execute()
        nlist = sorted(set().union(*members, (i for i, _ in todo)))
        pops_raw = await self.redis.zmscore(self.keys.recs_popular(), nlist) if nlist else []
        pops = {j: float(v) for j, v in zip(nlist, pops_raw, strict=True) if v is not None}
        powered = {j: p ** 0.5 for j, p in pops.items() if p > 0}  # pop_j ** (1 - alpha), alpha 0.5
        for start in range(0, len(todo), PUBLISH_CHUNK):
            pipe = self.redis.pipeline(transaction=False)
            for (item, source), names, rkeys in zip(todo[start:start + PUBLISH_CHUNK],
                                                    members[start:start + PUBLISH_CHUNK],
                                                    keys[start:start + PUBLISH_CHUNK], strict=True):
                await self.neighbours_script(keys=rkeys, args=neighbours_args(
                    pops.get(item, 0.0), names, powered, k, published_field(source),
                    encode_published(self.pops.get(item, 0.0), now)), client=pipe)
            await pipe.execute()

    async def read_published(self) -> None:
        """The weight and time of the last publish of every dirty item's lists, by any worker (field
        ``pub:<source>`` of the item's state hash): two workers touch mostly the same items, and
        without this each would republish every list."""
        todo = [(i, "cooc") for i in sorted(self.dirty)] + [(i, "bought") for i in sorted(self.dirty_bought)]
        for start in range(0, len(todo), PUBLISH_CHUNK * 10):
            pipe = self.redis.pipeline(transaction=False)
            chunk = todo[start:start + PUBLISH_CHUNK * 10]
            for item, source in chunk:
                pipe.hget(self.keys.recs_item_state(item), published_field(source))
            for (item, source), raw in zip(chunk, await pipe.execute(), strict=True):
                if raw:
                    self.published[source][item] = decode_published(raw)

    async def publish_safely(self, force: bool = False) -> None:
        """``publish_due`` that never kills the worker: on a store error the items stay dirty."""
        dirty, bought = set(self.dirty), set(self.dirty_bought)
        try:
            await self.publish_due(force)
        except Exception:  # noqa: BLE001 - a timer must survive a slow or flapping Redis
            self.dirty |= dirty
            self.dirty_bought |= bought
            log.exception("publishing neighbour lists failed; retried on the next tick")


def add_publisher(app: faust.App, items: ItemSignals) -> None:
    """The timer that republishes the touched items' neighbour lists (``publish_similar``)."""

    @app.timer(interval=max(0.2, items.res.settings.recs.publish_interval_s))
    @timed("publish_similar")
    async def publish_similar() -> None:
        await items.publish_safely(force=True)

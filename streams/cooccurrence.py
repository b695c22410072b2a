"""Collaborative signals kept fresh by the stream: per-user recent sequences, item co-occurrence
("similar items"), cart/purchase co-occurrence ("customers also bought"), popularity, trending and
the online MF model.

The state has two keys, so it has two owners:

* ``UserSignals`` (step ``update_recs_by_user``, run by the behavior agent of streams/behavior.py on
  every decoded, de-duplicated batch of ``events.behavior``, keyed by user) owns the
  ``recs_user_*`` keys: the user's recent sequence, seen items, MF user factors and MF candidates,
  fenced per user by offset (``_off``, compare-and-set Lua, as ``streams/profiles.py``). From each
  event above the fence it derives item-keyed entries, each carrying its source offset, and stores
  raw interactions in Cassandra for the batch jobs.
* ``ItemSignals`` owns ``recs_item_state`` / ``recs_item_cooc`` / ``recs_item_bought`` /
  ``recs_item_similar(.., cooc|bought)`` / ``recs_popular`` / ``recs_trending``. It applies each entry
  exactly once with a fence per item *and source partition* (``f:<p>`` in the item hash; entries of
  one source partition reach an item in offset order), in one Lua script per item on ``{item}``-tagged
  keys, then ZADDs absolute popularity and trending scores and, at most once per
  ``recs_publish_interval_s``, republishes the normalised top-K neighbour lists of touched items.

Two ways to get entries from the first owner to the second (``Settings.recs_repartition``):
``True``: through the Kafka topic ``internal.by_item`` (one record per internal partition and batch)
to the agent ``update_item_signals``; ``False`` (default): the user agent calls ``ItemSignals.apply``
itself. Both are exactly-once (the fence is per item and source partition, and each Lua script is
atomic, so writers of different source partitions never race), both are Redis Cluster-ready; the
direct path saves the Kafka hop, and in one Faust worker the repartition agent was starved by the
busy behavior agents (measured, docs/recommenders.md). Either way the item entries are written
before the user fences move, so a replay after a crash regenerates them at the same source offsets
and the item fences drop those already applied. The online MF item factors are the exception: an
SGD step may be repeated after a crash (documented).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import faust
import numpy as np

from aura import layout
from aura.layout import Tables
from schemas.codec import DecodeError, codec
from streams import trending
from streams.durable import WriteBehind
from streams.intake import Accepted
from streams.loopstats import timed
from streams.mf import OnlineMF
from streams.runtime import retrying

if TYPE_CHECKING:
    from streams.runtime import Owner, Resources

log = logging.getLogger(__name__)

INTERACTION_WEIGHTS: dict[str, float] = {
    "view": 1.0, "click": 1.0, "recommendation_click": 1.0, "rating": 1.0, "add_to_cart": 2.0, "purchase": 3.0,
}
BOUGHT_TYPES = frozenset({"add_to_cart", "purchase"})
MONITOR_STREAM = "stream"  # recs_monitor(...) hash of the agents' own counters
FENCE_CACHE_MAX = 500_000  # (item, source partition) fences remembered by the item side
PUBLISH_CHUNK = 50  # items per Redis pipeline when republishing neighbour lists (each chunk's parse
# and normalisation holds the event loop the behavior agent shares: kept to ~10 ms)


@dataclass(frozen=True)
class CoocParams:
    """How one new interaction pairs with the user's previous ones."""

    window: int = 10          # previous interactions paired with a new one
    decay: float = 0.85       # weight of the k-th previous interaction: decay ** k
    forward: float = 1.0      # previous -> new ("after p, users went to x")
    backward: float = 0.5     # new -> previous
    seq_max: int = 50         # kept in the user's sequence
    max_gap_ms: int | None = None  # pairs further apart in time are not counted (None: no limit)


# ------------------------------------------------------------------------------ pure: the fold


@dataclass(frozen=True, slots=True)
class SeqEntry:
    item: str
    weight: float
    time: int
    bought: bool

    def encode(self) -> str:
        return f"{self.item}|{self.weight:g}|{self.time}|{int(self.bought)}"

    @staticmethod
    def decode(raw: str) -> SeqEntry:
        item, w, t, b = raw.rsplit("|", 3)
        return SeqEntry(item, float(w), int(t), b == "1")


@dataclass
class Entry:
    """What one source event adds to one item."""

    offset: int
    event_time: int
    weight: float = 0.0
    cooc: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    bought: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    def to_avro(self) -> dict[str, Any]:
        return {"offset": self.offset, "event_time": self.event_time, "weight": self.weight,
                "cooc": dict(self.cooc), "bought": dict(self.bought)}

    def __getitem__(self, name: str) -> Any:  # read like its Avro record by ``fold_items`` (direct path)
        return getattr(self, name)


@dataclass
class UserDelta:
    new: list[SeqEntry] = field(default_factory=list)  # oldest first
    seen: dict[str, int] = field(default_factory=dict)
    offset: int = -1
    seq: list[SeqEntry] = field(default_factory=list)  # the whole sequence after the batch, newest first


@dataclass
class Fold:
    users: dict[str, UserDelta] = field(default_factory=dict)
    # (item, source partition) -> entries in offset order
    items: dict[tuple[str, int], list[Entry]] = field(default_factory=dict)
    interactions: list[tuple[str, int, str, str, str, float]] = field(default_factory=list)
    positives: list[tuple[str, str, float]] = field(default_factory=list)  # (user, item, weight) in order
    monitor: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))


def event_items(acc: Accepted) -> list[str]:
    """The items an event interacts with (purchases: every order line)."""
    ev = acc.event
    if ev.event_type == "purchase":
        order = ev.raw.get("order") or {}
        items = [line["item_id"] for line in order.get("lines", [])]
        if ev.item_id and ev.item_id not in items:
            items.append(ev.item_id)
        return items
    return [ev.item_id] if ev.item_id else []


def model_of(recommendation_id: str | None) -> str | None:
    """Served lists carry ``recommendation_id = "<model>:<version>:<request id>"``."""
    if not recommendation_id or ":" not in recommendation_id:
        return None
    return recommendation_id.split(":", 1)[0]


def fold(events: list[Accepted], fences: dict[str, int], seqs: dict[str, list[SeqEntry]],
         p: CoocParams) -> Fold:
    """Per user, the events above the fence -> user deltas, item entries, interactions (pure).

    ``seqs[user]`` is the stored sequence, newest first.
    """
    out = Fold()
    work = {u: list(s) for u, s in seqs.items()}  # newest first, updated as we go

    def entry(item: str, part: int, acc: Accepted) -> Entry:
        lst = out.items.setdefault((item, part), [])
        if lst and lst[-1].offset == acc.offset:
            return lst[-1]
        e = Entry(acc.offset, acc.event.event_time)
        lst.append(e)
        return e

    for acc in sorted(events, key=lambda a: (a.partition, a.offset)):
        ev = acc.event
        if acc.offset <= fences.get(ev.user_id, -1):
            continue
        model = model_of(ev.raw.get("recommendation_id"))
        if model and ev.event_type == "impression":
            out.monitor[model]["impressions"] += 1
            out.monitor[model]["impressed_items"] += len(ev.items)
        if model and ev.event_type == "recommendation_click":
            out.monitor[model]["clicks"] += 1
        weight = INTERACTION_WEIGHTS.get(ev.event_type)
        d = out.users.get(ev.user_id)
        if d is None:
            d = out.users[ev.user_id] = UserDelta()
        d.offset = max(d.offset, acc.offset)
        if weight is None:
            d.seq = list(work.get(ev.user_id, []))
            continue
        seq = work.setdefault(ev.user_id, [])
        bought = ev.event_type in BOUGHT_TYPES
        for x in event_items(acc):
            ex = entry(x, acc.partition, acc)
            ex.weight += weight
            k = 0
            for prev in seq[: p.window]:
                if prev.item == x:
                    continue
                if p.max_gap_ms is not None and ev.event_time - prev.time > p.max_gap_ms:
                    break
                w = p.decay ** k
                k += 1
                entry(prev.item, acc.partition, acc).cooc[x] += p.forward * w
                ex.cooc[prev.item] += p.backward * w
                if bought and prev.bought:
                    entry(prev.item, acc.partition, acc).bought[x] += 1.0
                    ex.bought[prev.item] += 1.0
            seq[:] = [e for e in seq if e.item != x]
            new = SeqEntry(x, weight, ev.event_time, bought)
            seq.insert(0, new)
            del seq[p.seq_max:]
            d.new = [e for e in d.new if e.item != x] + [new]
            d.seen[x] = max(d.seen.get(x, 0), ev.event_time)
            out.interactions.append((ev.user_id, ev.event_time, x, ev.event_id, ev.event_type, weight))
            out.positives.append((ev.user_id, x, weight))
        d.seq = list(seq)
    return out


def internal_partition(item: str, partitions: int) -> int:
    """The internal.by_item partition of an item (stable across processes)."""
    return zlib.crc32(item.encode()) % partitions


def signal_records(f: Fold, partitions: int) -> dict[tuple[int, int], dict[str, Any]]:
    """Group a fold's item entries into one record per (internal partition, source partition)."""
    out: dict[tuple[int, int], dict[str, Any]] = {}
    for (item, part), entries in f.items.items():
        key = (internal_partition(item, partitions), part)
        rec = out.setdefault(key, {"source_partition": part, "items": []})
        rec["items"].append({"item_id": item, "entries": [e.to_avro() for e in entries]})
    return out


def direct_records(f: Fold) -> list[dict[str, Any]]:
    """A fold's item entries as per-item records for ``ItemSignals.apply`` without the Avro round trip
    (the direct path: same records as ``flatten`` of ``signal_records``, entries left as ``Entry``)."""
    return [{"item_id": item, "source_partition": part, "entries": entries}
            for (item, part), entries in f.items.items()]


def flatten(record: dict[str, Any]) -> list[dict[str, Any]]:
    """An ItemSignals record -> per-item records ``{item_id, source_partition, entries}``."""
    return [{"item_id": it["item_id"], "source_partition": record["source_partition"], "entries": it["entries"]}
            for it in record["items"]]


@dataclass
class ItemApply:
    """What the item agent adds to one item in one batch, after fencing (pure result)."""

    fences: dict[int, tuple[int | None, int]] = field(default_factory=dict)  # partition -> (expected, new)
    weight: float = 0.0
    log_trend: float = trending.NEG_INF
    cooc: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    bought: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    entries: int = 0


def fold_items(records: list[dict[str, Any]], fences: dict[tuple[str, int], int | None],
               half_life_ms: float) -> dict[str, ItemApply]:
    """Merge item-signal records, dropping entries at or below the (item, partition) fence (pure)."""
    out: dict[str, ItemApply] = {}
    for rec in records:
        item, part = rec["item_id"], rec["source_partition"]
        stored = fences.get((item, part))
        a = out.setdefault(item, ItemApply())
        expected, high = a.fences.get(part, (stored, -1 if stored is None else stored))
        for e in sorted(rec["entries"], key=lambda e: e["offset"]):
            if e["offset"] <= high:
                continue
            high = e["offset"]
            a.entries += 1
            a.weight += e["weight"]
            if e["weight"] > 0:
                a.log_trend = trending.log_add(a.log_trend, trending.log_weight(e["weight"], e["event_time"],
                                                                                half_life_ms))
            for j, w in e["cooc"].items():
                a.cooc[j] += w
            for j, w in e["bought"].items():
                a.bought[j] += w
        a.fences[part] = (expected, high)
    return out


def normalise_neighbours(pop_i: float, neighbours: list[tuple[str, float]], pops: dict[str, float],
                         k: int, alpha: float = 0.5, powered: dict[str, float] | None = None
                         ) -> list[tuple[str, float]]:
    """Raw co-occurrence -> similarity ``c_ij / (pop_i ** alpha * pop_j ** (1 - alpha))``, top ``k``.

    ``powered`` (optional): ``pop_j ** (1 - alpha)`` of every ``j`` with ``pop_j > 0``, computed once
    per publishing round for all lists (same values, fewer powers)."""
    if pop_i <= 0:
        return []
    if powered is None:
        powered = {j: p ** (1 - alpha) for j, p in pops.items() if p and p > 0}
    pi = pop_i ** alpha
    scored = [(j, c / (pi * pw)) for j, c in neighbours if (pw := powered.get(j)) is not None]
    scored.sort(key=lambda t: -t[1])
    return scored[:k]


def _score_pairs(reply: list[Any]) -> list[tuple[str, float]]:
    """A raw ``ZREVRANGE .. WITHSCORES`` reply as (member, score) pairs: RESP3 gives pairs, RESP2 a
    flat member, score, ... list."""
    if reply and isinstance(reply[0], list | tuple):
        return [(j, float(c)) for j, c in reply]
    it = iter(reply)
    return [(j, float(c)) for j, c in zip(it, it, strict=True)]


def publish_split(dirty: set[str], pops: dict[str, float], published: dict[str, tuple[float, float]],
                  now: float, growth: float, max_age_s: float) -> tuple[list[str], set[str]]:
    """Which touched items get their neighbour list republished now (pure): never published, or
    their interaction weight (``pops``) grew by ``growth`` (a share) since the last publish
    (``published[item] = (weight then, time then)``), or that publish is ``max_age_s`` old. The
    others stay dirty. A list moves in proportion to its item's new interactions, so a popular item
    needs many of them to change: this bounds the publishing work without letting a list go stale."""
    due: list[str] = []
    wait: set[str] = set()
    for item in sorted(dirty):
        last = published.get(item)
        if (last is None or growth <= 0 or pops.get(item, 0.0) >= last[0] * (1.0 + growth)
                or now - last[1] >= max_age_s):
            due.append(item)
        else:
            wait.add(item)
    return due, wait


# ------------------------------------------------------------------------------- I/O: user side

# One script per user and batch, with the whole delta as one JSON argument (values as strings, so
# timestamps and weights keep their exact text): packing one Redis argument per sequence entry, seen
# item and MF candidate cost more Python time than the fold. KEYS share the user's hash tag.
USER_LUA = """
local cur = redis.call('HGET', KEYS[1], '_off') or ''
if cur ~= ARGV[1] then return 0 end
local d = cjson.decode(ARGV[3])
redis.call('DEL', KEYS[2])
if #d.q > 0 then redis.call('RPUSH', KEYS[2], unpack(d.q)) end
local s = d.s
for j = 1, #s, 500 do redis.call('ZADD', KEYS[3], unpack(s, j, math.min(j + 499, #s))) end
if d.m ~= '' then redis.call('HSET', KEYS[1], 'mf', d.m) end
if d.c then
  redis.call('DEL', KEYS[4])
  local c = d.c
  for j = 1, #c, 500 do redis.call('ZADD', KEYS[4], unpack(c, j, math.min(j + 499, #c))) end
end
redis.call('HSET', KEYS[1], '_off', ARGV[2])
return 1
"""

# One script per item and batch (the keys of one item share its hash tag), delta as one JSON argument.
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
local c = d.c
for i = 1, #c, 2 do redis.call('ZINCRBY', KEYS[2], c[i + 1], c[i]) end
local b = d.b
for i = 1, #b, 2 do redis.call('ZINCRBY', KEYS[3], b[i + 1], b[i]) end
local cap = tonumber(d.cap)
if #c > 0 and redis.call('ZCARD', KEYS[2]) > cap then redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -cap - 1) end
if #b > 0 and redis.call('ZCARD', KEYS[3]) > cap then redis.call('ZREMRANGEBYRANK', KEYS[3], 0, -cap - 1) end
return {pop, tr or '', redis.call('HGET', KEYS[4], 'categories') or '[]'}
"""


# A sorted set replaced by a new one, members as one JSON argument [score, member, ...] (a neighbour
# list: one argument instead of 200 for the client to pack).
REPLACE_ZSET_LUA = """
redis.call('DEL', KEYS[1])
local m = cjson.decode(ARGV[1])
for j = 1, #m, 500 do redis.call('ZADD', KEYS[1], unpack(m, j, math.min(j + 499, #m))) end
return #m / 2
"""


def _json(x: Any) -> str:
    return json.dumps(x, separators=(",", ":"))


def user_lua_args(expected: int | None, d: UserDelta, mf_vec: str | None,
                  candidates: list[tuple[str, float]] | None = None) -> list[Any]:
    """CAS on the fence, then (one JSON argument) the absolute sequence, the new seen items as
    ZADD pairs, the MF vector and, when given, the user's new MF candidates (replacing the old)."""
    blob: dict[str, Any] = {"q": [e.encode() for e in d.seq], "m": mf_vec or ""}
    seen: list[str] = []
    for item, t in d.seen.items():
        seen += [str(t), item]
    blob["s"] = seen
    if candidates is not None:
        cand: list[Any] = []
        for item, score in candidates:
            cand += [repr(score), item]
        blob["c"] = cand
    return ["" if expected is None else str(expected), str(d.offset), _json(blob)]


def item_lua_args(a: ItemApply, cap: int) -> list[Any]:
    """One JSON argument: fences (field, expected, new), weight, log-trend delta, co-occurrence and
    also-bought increments (member, amount), the cap of raw neighbours kept."""
    c: list[str] = []
    for j, w in a.cooc.items():
        c += [j, repr(w)]
    b: list[str] = []
    for j, w in a.bought.items():
        b += [j, repr(w)]
    blob = {"f": [[f"f:{part}", "" if expected is None else str(expected), str(new)]
                  for part, (expected, new) in sorted(a.fences.items())],
            "w": repr(a.weight), "t": "" if a.log_trend == trending.NEG_INF else repr(a.log_trend),
            "c": c, "b": b, "cap": str(cap)}
    return [_json(blob)]


class UserSignals:
    """The user-keyed side: fences, sequences, MF, interactions; one instance per worker."""

    def __init__(self, res: Resources, params: CoocParams, item_side: ItemSignals | None = None,
                 durable: WriteBehind | None = None) -> None:
        s = res.settings
        self.item_side = item_side
        self.durable = durable
        if durable is not None:
            durable.cql_sink("interactions", res.session,
                             lambda rows: self.interaction_statements(list(rows.values())))
        self.res, self.keys, self.redis, self.p = res, res.keys, res.redis, params
        self.user_script = res.redis.register_script(USER_LUA)
        self.replace_script = res.redis.register_script(REPLACE_ZSET_LUA)
        # MF candidates: rewriting a user's 200-member sorted set is the dearest write of the user
        # step, so it happens at most every ``recs_mf_refresh_s`` per user; users skipped meanwhile
        # wait in ``mf_pending`` for ``refresh_pending`` (a timer).
        self.mf_refresh_s = s.recs_mf_refresh_s
        self.mf_refreshed: dict[str, float] = {}  # user -> monotonic time of the last candidates write
        self.mf_pending: set[str] = set()
        self.mf = OnlineMF(dim=s.recs_mf_dim, lr=s.recs_mf_lr, seed=0)
        self.mf_loaded = False
        self.insert = res.session.prepare(
            f"INSERT INTO {Tables.INTERACTIONS} (user_id, event_time, item_id, event_id, event_type, weight) "
            "VALUES (?, ?, ?, ?, ?, ?)")
        self.codec = codec("item_signal")
        self.partitions = layout.ITEM_SIGNALS.partitions or s.topic_partitions

    async def load_mf(self) -> None:
        raw = await self.redis.hgetall(self.keys.recs_mf_items())
        for item, blob in raw.items():
            self.mf.set_item(item, np.frombuffer(bytes.fromhex(blob), dtype=np.float32))
        self.mf_loaded = True

    async def read(self, users: list[str]) -> tuple[dict[str, int], dict[str, list[SeqEntry]], dict[str, Any]]:
        pipe = self.redis.pipeline(transaction=False)
        for u in users:
            pipe.hmget(self.keys.recs_user_state(u), ["_off", "mf"])
            pipe.lrange(self.keys.recs_user_seq(u), 0, self.p.seq_max - 1)
        raw = await pipe.execute()
        fences, seqs, vecs = {}, {}, {}
        for i, u in enumerate(users):
            off, mf = raw[2 * i]
            if off is not None:
                fences[u] = int(off)
            if mf:
                vecs[u] = np.frombuffer(bytes.fromhex(mf), dtype=np.float32).copy()
            seqs[u] = [SeqEntry.decode(x) for x in raw[2 * i + 1]]
        return fences, seqs, vecs

    def learn(self, f: Fold, vecs: dict[str, np.ndarray]) -> set[str]:
        """Online MF over the batch's positives, in order; returns the items whose factors moved."""
        for u, v in vecs.items():
            if v.shape[0] == self.mf.dim:
                self.mf.users[u] = v
        touched: set[str] = set()
        for user, item, weight in f.positives:
            self.mf.learn_one(user, item, min(weight, 2.0))
            touched.add(item)
        return touched

    async def apply(self, accepted: list[Accepted], send: Any) -> Fold:
        if not self.mf_loaded:
            await self.load_mf()
        users = sorted({a.event.user_id for a in accepted})
        if not users:
            return Fold()
        rows: list[tuple[str, int, str, str, str, float]] = []
        for _attempt in range(5):
            fences, seqs, vecs = await self.read(users)
            f = fold(accepted, fences, seqs, self.p)
            await asyncio.sleep(0)  # CPU-bound steps apart: the profile owner's round trips get the loop between
            pv_before = (self.mf.pv_n, self.mf.pv_err)
            moved = self.learn(f, vecs)
            await asyncio.sleep(0)
            # item-keyed deltas first (acked), user fences after: a crash in between replays them
            # at the same source offsets, and the item fences drop them.
            if self.item_side is not None:  # direct: the same fenced item writes, without the Kafka hop
                await self.item_side.apply(direct_records(f))
            else:
                records = signal_records(f, self.partitions)
                futures = [await send(ipart, self.codec.encode(rec)) for (ipart, _s), rec in records.items()]
                if futures:
                    await asyncio.gather(*futures)
            pipe = self.redis.pipeline(transaction=False)
            order = list(f.users)
            k = self.res.settings.recs_candidates
            now = time.monotonic()
            refreshed: list[str] = []
            for u in order:
                vec = self.mf.users.get(u)
                # the MF candidates of users with new interactions are replaced in the same script,
                # unless this user's were written less than ``mf_refresh_s`` ago (then: the timer)
                cands = None
                if vec is not None and f.users[u].new:
                    if self.mf_due(u, now):
                        cands = self.mf.top(u, k)
                        refreshed.append(u)
                    else:
                        self.mf_pending.add(u)
                await self.user_script(
                    keys=[self.keys.recs_user_state(u), self.keys.recs_user_seq(u), self.keys.recs_user_seen(u),
                          self.keys.recs_user_mf(u)],
                    args=user_lua_args(fences.get(u), f.users[u], vec.tobytes().hex() if vec is not None else None,
                                       cands),
                    client=pipe)
            results = await pipe.execute() if order else []
            conflicts = {u for u, ok in zip(order, results, strict=True) if not ok}
            for u in refreshed:
                if u not in conflicts:
                    self.mf_refreshed[u] = now
                    self.mf_pending.discard(u)
            rows += [r for r in f.interactions if r[0] not in conflicts]
            await self.publish(f, moved, pv_before)
            if not conflicts:
                break
            users = sorted(conflicts)
            accepted = [a for a in accepted if a.event.user_id in conflicts]
        else:
            raise RuntimeError(f"user fence conflicts did not settle for {len(conflicts)} users")
        await self.write_interactions(rows)
        return f

    def mf_due(self, user: str, now: float) -> bool:
        return self.mf_refresh_s <= 0 or now - self.mf_refreshed.get(user, -math.inf) >= self.mf_refresh_s

    async def refresh_pending(self) -> int:
        """Write the MF candidates of users skipped by the rate limit, from the in-process factors
        (absolute, derived state: no fence needed; a crash loses only this refresh, and the user's
        candidates then wait for the user's next event)."""
        now = time.monotonic()
        due = sorted(u for u in self.mf_pending if self.mf_due(u, now) and u in self.mf.users)
        k = self.res.settings.recs_candidates
        for start in range(0, len(due), PUBLISH_CHUNK):
            pipe = self.redis.pipeline(transaction=False)
            for u in due[start:start + PUBLISH_CHUNK]:
                flat: list[Any] = []
                for item, score in self.mf.top(u, k):
                    flat += [repr(score), item]
                await self.replace_script(keys=[self.keys.recs_user_mf(u)], args=[_json(flat)], client=pipe)
            await pipe.execute()
        for u in due:
            self.mf_refreshed[u] = now
        self.mf_pending.difference_update(due)
        self.mf_pending.intersection_update(self.mf.users)
        self.mf_refreshed = {u: t for u, t in self.mf_refreshed.items() if now - t < self.mf_refresh_s}
        return len(due)

    async def publish(self, f: Fold, moved: set[str], pv_before: tuple[int, int]) -> None:
        """MF item factors and monitoring counters (one pipeline; the per-user MF candidates are
        written by the user script)."""
        pipe = self.redis.pipeline(transaction=False)
        if moved:
            pipe.hset(self.keys.recs_mf_items(),
                      mapping={i: self.mf.V[self.mf.index[i]].tobytes().hex() for i in moved})
        mon = self.keys.recs_monitor(MONITOR_STREAM)
        pipe.hincrby(mon, "events", sum(len(d.new) for d in f.users.values()))
        pipe.hincrby(mon, "signals_sent", sum(len(v) for v in f.items.values()))
        mfk = self.keys.recs_monitor(OnlineMF.kind)
        pipe.hincrby(mfk, "pv_n", self.mf.pv_n - pv_before[0])
        pipe.hincrby(mfk, "pv_err", self.mf.pv_err - pv_before[1])
        for model, counts in f.monitor.items():
            for name, n in counts.items():
                pipe.hincrby(self.keys.recs_monitor(model), name, n)
        await pipe.execute()

    async def write_interactions(self, rows: list[tuple[str, int, str, str, str, float]]) -> None:
        """Raw interactions for the batch jobs: buffered by primary key when write-behind is on."""
        if self.durable is not None:
            self.durable.put_many("interactions", {r[:4]: r for r in rows})
            return
        await self.insert_interactions(rows)

    def interaction_statements(self, rows: list[tuple[str, int, str, str, str, float]]) -> list[Any]:
        """Interaction rows tagged with their partition (the user): one batch per user and flush."""
        return [(("user", r[0]), self.insert, r) for r in rows]

    async def insert_interactions(self, rows: list[tuple[str, int, str, str, str, float]]) -> None:
        from streams.durable import execute_grouped

        await execute_grouped(self.res.session, self.interaction_statements(rows))


# ------------------------------------------------------------------------------- I/O: item side


class ItemSignals:
    """The item-keyed side: fenced co-occurrence, popularity, trending, top-K publishing."""

    def __init__(self, res: Resources) -> None:
        s = res.settings
        self.res, self.keys, self.redis = res, res.keys, res.redis
        self.script = res.redis.register_script(ITEM_LUA)
        self.replace_script = res.redis.register_script(REPLACE_ZSET_LUA)
        self.half_life_ms = s.recs_trending_half_life_h * 3600 * 1000
        self.codec = codec("item_signal")
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

    async def apply(self, records: list[dict[str, Any]]) -> int:
        items = sorted({r["item_id"] for r in records})
        if not items:
            return 0
        parts = sorted({(r["item_id"], r["source_partition"]) for r in records})
        applied = 0
        for attempt in range(5):
            fences: dict[tuple[str, int], int | None] = {}
            if attempt == 0:
                fences = {ip: self.fences[ip] for ip in parts if ip in self.fences}
            todo = [ip for ip in parts if ip not in fences]
            if todo:
                pipe = self.redis.pipeline(transaction=False)
                for item, part in todo:
                    pipe.hget(self.keys.recs_item_state(item), f"f:{part}")
                raw = await pipe.execute()
                fences.update({ip: (int(v) if v is not None else None) for ip, v in zip(todo, raw, strict=True)})
            applies = fold_items(records, fences, self.half_life_ms)
            pipe = self.redis.pipeline(transaction=False)
            order = [i for i, a in applies.items() if a.entries]
            cap = self.res.settings.recs_cooc_cap
            for item in order:
                # the item's catalog categories are read inside the script (same {item} slot), so an
                # item whose catalog entry races its first interactions still reaches its category
                # sets: either this script sees the categories or the catalog agent sees ``tr``.
                await self.script(keys=[self.keys.recs_item_state(item), self.keys.recs_item_cooc(item),
                                        self.keys.recs_item_bought(item), self.keys.recs_item_meta(item)],
                                  args=item_lua_args(applies[item], cap), client=pipe)
            results = await pipe.execute() if order else []
            pipe = self.redis.pipeline(transaction=False)
            conflicts = set()
            # absolute scores, one ZADD per sorted set and batch (was one per item and set: most of
            # the batch's Redis commands)
            popular: dict[str, float] = {}
            trend: dict[str | None, dict[str, float]] = {}
            if len(self.fences) > self.fences_max:
                self.fences.clear()
            for item, res in zip(order, results, strict=True):
                if not res:
                    conflicts.add(item)
                    for part in applies[item].fences:
                        self.fences.pop((item, part), None)
                    continue
                for part, (_expected, new) in applies[item].fences.items():
                    self.fences[(item, part)] = new
                applied += applies[item].entries
                pop, tr, cats = float(res[0]), res[1], json.loads(res[2] or "[]")
                popular[item] = pop
                self.pops[item] = pop
                if tr:
                    for c in (None, *cats):
                        trend.setdefault(c, {})[item] = float(tr)
                if applies[item].cooc:
                    self.dirty.add(item)
                if applies[item].bought:
                    self.dirty_bought.add(item)
            if popular:
                pipe.zadd(self.keys.recs_popular(), popular)
            for c, scores in trend.items():
                pipe.zadd(self.keys.recs_trending(c), scores)
            pipe.hincrby(self.keys.recs_monitor(MONITOR_STREAM), "signals_applied",
                         sum(applies[i].entries for i in order if i not in conflicts))
            await pipe.execute()
            if not conflicts:
                break
            records = [r for r in records if r["item_id"] in conflicts]
            items = sorted(conflicts)
            parts = sorted({(r["item_id"], r["source_partition"]) for r in records})
        else:
            raise RuntimeError(f"item fence conflicts did not settle for {len(conflicts)} items")
        return applied

    async def publish_due(self, force: bool = False) -> int:
        """Republish the normalised top-K lists of items touched since the last publish."""
        interval = self.res.settings.recs_publish_interval_s
        if not (self.dirty or self.dirty_bought) or (not force and time.monotonic() - self.last_publish < interval):
            return 0
        self.last_publish = time.monotonic()
        now = time.time()
        s = self.res.settings
        await self.read_published()
        due_c, self.dirty = publish_split(self.dirty, self.pops, self.published["cooc"], now,
                                          s.recs_publish_min_growth, s.recs_publish_max_age_s)
        due_b, self.dirty_bought = publish_split(self.dirty_bought, self.pops, self.published["bought"], now,
                                                 s.recs_publish_min_growth, s.recs_publish_max_age_s)
        todo = [(i, "cooc") for i in due_c] + [(i, "bought") for i in due_b]
        if not todo:
            return 0
        k, m = self.res.settings.recs_topk, self.res.settings.recs_cooc_read
        raw: list[Any] = []
        for start in range(0, len(todo), PUBLISH_CHUNK):  # bounded pipelines: no multi-second replies
            pipe = self.redis.pipeline(transaction=False)
            for item, source in todo[start:start + PUBLISH_CHUNK]:
                key = self.keys.recs_item_cooc(item) if source == "cooc" else self.keys.recs_item_bought(item)
                # the raw reply (member, score, member, ...): redis-py's WITHSCORES callback was most
                # of the publisher's time
                pipe.execute_command("ZREVRANGE", key, 0, m - 1, "WITHSCORES")
            raw += [_score_pairs(reply) for reply in await pipe.execute()]
        nlist = sorted({j for lst in raw for j, _ in lst} | {i for i, _ in todo})
        pops_raw = await self.redis.zmscore(self.keys.recs_popular(), nlist) if nlist else []
        pops = {j: float(v) for j, v in zip(nlist, pops_raw, strict=True) if v is not None}
        powered = {j: p ** 0.5 for j, p in pops.items() if p > 0}  # pop_j ** (1 - alpha), alpha 0.5
        for start in range(0, len(todo), PUBLISH_CHUNK):
            pipe = self.redis.pipeline(transaction=False)
            for (item, source), lst in zip(todo[start:start + PUBLISH_CHUNK], raw[start:start + PUBLISH_CHUNK],
                                           strict=True):
                top = normalise_neighbours(pops.get(item, 0.0), lst, pops, k, 0.5, powered)
                flat = [x for j, score in top for x in (repr(score), j)]
                await self.replace_script(keys=[self.keys.recs_item_similar(item, source)], args=[_json(flat)],
                                          client=pipe)
                # what was published, for every worker's publisher (``read_published``)
                pipe.hset(self.keys.recs_item_state(item), f"pub:{source}", f"{self.pops.get(item, 0.0)!r}|{now!r}")
            await pipe.execute()
        for item, source in todo:
            self.published[source][item] = (self.pops.get(item, 0.0), now)
        return len(todo)

    async def read_published(self) -> None:
        """The weight and time of the last publish of every dirty item's lists, by any worker (field
        ``pub:<source>`` of the item's state hash): two workers touch mostly the same items, and
        without this each republished every list (measured: the publisher cost a second worker ~20%)."""
        todo = [(i, "cooc") for i in sorted(self.dirty)] + [(i, "bought") for i in sorted(self.dirty_bought)]
        for start in range(0, len(todo), PUBLISH_CHUNK * 10):
            pipe = self.redis.pipeline(transaction=False)
            chunk = todo[start:start + PUBLISH_CHUNK * 10]
            for item, source in chunk:
                pipe.hget(self.keys.recs_item_state(item), f"pub:{source}")
            for (item, source), raw in zip(chunk, await pipe.execute(), strict=True):
                if raw:
                    pop, t = raw.split("|")
                    self.published[source][item] = (float(pop), float(t))

    async def publish_safely(self, force: bool = False) -> None:
        """``publish_due`` that never kills the worker: on a store error the items stay dirty."""
        dirty, bought = set(self.dirty), set(self.dirty_bought)
        try:
            await self.publish_due(force)
        except Exception:  # noqa: BLE001 - a timer/agent must survive a slow or flapping Redis
            self.dirty |= dirty
            self.dirty_bought |= bought
            log.exception("publishing neighbour lists failed; retried on the next tick")


# ------------------------------------------------------------------------------------- agents

DEDUP_WINDOW_MS = 24 * 3600 * 1000


def register(app: faust.App, res: Resources, signals_topic: str, deadletter_topic: str,
             durable: WriteBehind | None = None) -> Owner:
    """``update_item_signals`` over the repartition topic and the publishing timer; returns the owner
    step ``update_recs_by_user`` that the behavior agent (streams/behavior.py) runs on every batch."""
    from streams.runtime import Batch

    s = res.settings
    signals = app.topic(signals_topic, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    deadletters = app.topic(deadletter_topic, key_serializer="raw", value_serializer="raw")
    params = CoocParams(window=s.recs_window, decay=s.recs_decay, seq_max=s.recs_seq_max)
    item_side = ItemSignals(res)
    users = UserSignals(res, params, None if s.recs_repartition else item_side, durable)
    dead_codec = codec("dead_letter")

    async def send(partition: int, value: bytes) -> Any:
        return await signals.send(key=str(partition).encode(), value=value, partition=partition)

    async def update_recs_by_user(b: Batch) -> None:
        """The user-side owner step, run by the behavior agent on every intake batch."""
        await users.apply(b.kept, send)

    @app.agent(signals, name="update_item_signals")
    async def update_item_signals(stream: faust.StreamT) -> None:
        async for batch in stream.take_events(s.batch_max, within=s.batch_within_s):
            decoded = []
            for e in batch:
                try:
                    decoded += flatten(item_side.codec.decode(e.message.value))
                except DecodeError as exc:  # an internal topic: only a bug gets here; keep the record
                    await deadletters.send(key=e.message.key, value=dead_codec.encode({
                        "reason": exc.reason, "detail": exc.detail, "source_topic": e.message.topic,
                        "source_partition": e.message.partition, "source_offset": e.message.offset,
                        "key": e.message.key, "value": e.message.value, "dead_at": int(time.time() * 1000)}))
            await retrying("item signals", item_side.apply, decoded)
            await item_side.publish_safely()

    @app.timer(interval=max(0.2, s.recs_publish_interval_s))
    @timed("publish_similar")
    async def publish_similar() -> None:
        await item_side.publish_safely(force=True)

    if s.recs_mf_refresh_s > 0:
        @app.timer(interval=max(0.2, s.recs_mf_refresh_s))
        @timed("refresh_mf_candidates")
        async def refresh_mf_candidates() -> None:
            try:
                await users.refresh_pending()
            except Exception:  # noqa: BLE001 - a timer must survive a slow Redis; users stay pending
                log.exception("refreshing MF candidates failed; retried on the next tick")

    return "recs by user", update_recs_by_user


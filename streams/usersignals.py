"""The user side of the recommender signals: recent sequences, seen items, online MF, raw interactions.

``UserSignals`` (owner step ``recs by user`` of the behavior agent, streams/behavior.py) owns the
``recs_user_*`` keys (sequence, seen items, MF user factors; fenced per user by offset,
``_off``, compare-and-set Lua) and the MF item factors (``recs_mf_items``). The pure ``fold`` sums what
the events above the user fence add to each item into one delta per item, leaving out the events at
or below that item's fence for their source partition (read first: ``item_candidates``); the item side
(streams/itemsignals.py) applies the deltas before the user fences move, so a replay after a crash
finds the item fences already moved. The online MF item factors are the exception: an SGD step may
be repeated after a crash. Raw interactions go to Cassandra through the write-behind. Formats:
aura/state/cooccurrence.py.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import faust
import numpy as np

from aura.layout import Tables
from aura.models.mf import OnlineMF
from aura.state.cooccurrence import (
    BOUGHT_TYPES,
    INTERACTION_WEIGHTS,
    MONITOR_STREAM,
    USER_FENCE,
    USER_MF,
    ItemDelta,
    SeqEntry,
    compact_json,
    decode_vector,
    encode_vector,
    model_of,
)
from streams.intake import Accepted
from streams.itemsignals import ItemSignals, add_publisher
from streams.runtime import Batch, Owner, Resources

Interaction = tuple[str, int, str, str, str, float]  # user, event time, item, event id, event type, weight


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


@dataclass
class UserDelta:
    new: list[SeqEntry] = field(default_factory=list)  # oldest first
    seen: dict[str, int] = field(default_factory=dict)
    offset: int = -1
    seq: list[SeqEntry] = field(default_factory=list)  # the whole sequence after the batch, newest first


@dataclass
class Fold:
    users: dict[str, UserDelta] = field(default_factory=dict)
    items: dict[str, ItemDelta] = field(default_factory=dict)  # item -> what the batch adds above its fences
    interactions: list[Interaction] = field(default_factory=list)
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


def item_candidates(events: list[Accepted], fences: dict[str, int], seqs: dict[str, list[SeqEntry]],
                    p: CoocParams) -> set[tuple[str, int]]:
    """Every (item, source partition) the fold of these events can touch: the items of a user's new
    interactions and of the first ``window`` entries of the user's stored sequence (an entry further
    back never re-enters the window: new items push it back, a repeated one moves to the front), for
    each source partition of the user's events. Their item fences are read before the fold."""
    parts: dict[str, set[int]] = defaultdict(set)
    items: dict[str, set[str]] = defaultdict(set)
    for acc in events:
        ev = acc.event
        if acc.offset <= fences.get(ev.user_id, -1) or ev.event_type not in INTERACTION_WEIGHTS:
            continue
        parts[ev.user_id].add(acc.partition)
        items[ev.user_id].update(event_items(acc))
    out: set[tuple[str, int]] = set()
    for u, ps in parts.items():
        xs = items[u] | {e.item for e in seqs.get(u, [])[: p.window]}
        out.update((x, part) for x in xs for part in ps)
    return out


def fold(events: list[Accepted], fences: dict[str, int], seqs: dict[str, list[SeqEntry]],
         p: CoocParams, item_fences: Mapping[tuple[str, int], int | None] | None = None) -> Fold:
    """Per user, the events above the fence -> user deltas, item deltas, interactions (pure).

    ``seqs[user]``: the stored sequence, newest first; ``item_fences``: the stored fence of every pair
    of ``item_candidates`` (a missing pair is an error; None: no fence yet; no mapping: no fences). What
    an event adds to an item is summed into the item's ``ItemDelta`` at once, unless the event is at or
    below that item's fence for its partition (a replay after a crash between the item and the user
    writes): the recommender's hot loop, about ten items per event."""
    out = Fold()
    work = {u: list(s) for u, s in seqs.items()}  # newest first, updated as we go
    items = out.items
    forward = [p.forward * p.decay ** k for k in range(p.window)]
    backward = [p.backward * p.decay ** k for k in range(p.window)]
    news: dict[str, dict[str, SeqEntry]] = {}  # user -> item -> newest new entry (insertion order: oldest first)

    def delta(item: str, part: int, offset: int) -> ItemDelta | None:
        a = items.get(item)
        if a is None:
            a = items[item] = ItemDelta()
        return a if a.touch(None if item_fences is None else item_fences[(item, part)], part, offset) else None

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
            continue
        seq = work.setdefault(ev.user_id, [])
        new_of_user = news.setdefault(ev.user_id, {})
        bought = ev.event_type in BOUGHT_TYPES
        part, off, t = acc.partition, acc.offset, ev.event_time
        for x in event_items(acc):
            ex = delta(x, part, off)
            if ex is not None:
                ex.hit(part, off, t, weight)
            k = 0
            for prev in seq[: p.window]:
                j = prev.item
                if j == x:
                    continue
                if p.max_gap_ms is not None and t - prev.time > p.max_gap_ms:
                    break
                ep = delta(j, part, off)
                if ep is not None:
                    c = ep.cooc
                    c[x] = c.get(x, 0.0) + forward[k]
                    if bought and prev.bought:
                        b = ep.bought
                        b[x] = b.get(x, 0.0) + 1.0
                if ex is not None:
                    xc = ex.cooc
                    xc[j] = xc.get(j, 0.0) + backward[k]
                    if bought and prev.bought:
                        xb = ex.bought
                        xb[j] = xb.get(j, 0.0) + 1.0
                k += 1
            seq[:] = [e for e in seq if e.item != x]
            new = SeqEntry(x, weight, t, bought)
            seq.insert(0, new)
            del seq[p.seq_max:]
            new_of_user.pop(x, None)
            new_of_user[x] = new
            d.seen[x] = max(d.seen.get(x, 0), t)
            out.interactions.append((ev.user_id, t, x, ev.event_id, ev.event_type, weight))
            out.positives.append((ev.user_id, x, weight))
    for u, d in out.users.items():
        d.seq = list(work.get(u, []))
        d.new = list(news.get(u, {}).values())
    return out


# ----------------------------------------------------------------------------------- the script

# One script per user and batch, with the whole delta as one JSON argument (values as strings, so
# timestamps and weights keep their exact text): packing one Redis argument per sequence entry, seen
# item and MF candidate cost more Python time than the fold. New MF candidates replace the old: their
# members in the JSON (``c``), their scores as float64 bytes (ARGV[4], ``zset_args``). KEYS share the
# user's hash tag.
USER_LUA = """
local cur = redis.call('HGET', KEYS[1], '_off') or ''
if cur ~= ARGV[1] then return 0 end
local d = cjson.decode(ARGV[3])
redis.call('DEL', KEYS[2])
if #d.q > 0 then redis.call('RPUSH', KEYS[2], unpack(d.q)) end
local s = d.s
for j = 1, #s, 500 do redis.call('ZADD', KEYS[3], unpack(s, j, math.min(j + 499, #s))) end
if d.m ~= '' then redis.call('HSET', KEYS[1], 'mf', d.m) end
redis.call('HSET', KEYS[1], '_off', ARGV[2])
return 1
"""


def user_lua_args(expected: int | None, d: UserDelta, mf_vec: str | None) -> list[Any]:
    """CAS on the fence, then (one JSON argument) the absolute sequence, the new seen items as
    ZADD pairs and the MF vector (the readers score it against the item factors:
    aura/ranking/factors.py)."""
    blob: dict[str, Any] = {"q": [e.encode() for e in d.seq], "m": mf_vec or "",
                            "s": [x for item, t in d.seen.items() for x in (str(t), item)]}
    return ["" if expected is None else str(expected), str(d.offset), compact_json(blob)]


# ------------------------------------------------------------------------------------ the owner


class UserSignals:
    """The user-keyed side: fences, sequences, MF, interactions; one instance per worker."""

    def __init__(self, res: Resources, params: CoocParams, item_side: ItemSignals) -> None:
        s = res.settings
        self.item_side = item_side
        self.durable = res.durable
        self.durable.cql_sink("interactions", res.session,
                              lambda rows: self.interaction_statements(list(rows.values())))
        self.res, self.keys, self.redis, self.p = res, res.keys, res.redis, params
        self.user_script = res.redis.register_script(USER_LUA)
        self.mf = OnlineMF(dim=s.recs.mf_dim, lr=s.recs.mf_lr, seed=0)
        self.mf_loaded = False
        self.insert = res.session.prepare(
            f"INSERT INTO {Tables.INTERACTIONS} (user_id, event_time, item_id, event_id, event_type, weight) "
            "VALUES (?, ?, ?, ?, ?, ?)")

    async def load_mf(self) -> None:
        raw = await self.redis.hgetall(self.keys.recs_mf_items())
        for item, blob in raw.items():
            self.mf.set_item(item, decode_vector(blob))
        self.mf_loaded = True

    async def read(self, users: list[str]) -> tuple[dict[str, int], dict[str, list[SeqEntry]], dict[str, Any]]:
        pipe = self.redis.pipeline(transaction=False)
        for u in users:
            pipe.hmget(self.keys.recs_user_state(u), [USER_FENCE, USER_MF])
            pipe.lrange(self.keys.recs_user_seq(u), 0, self.p.seq_max - 1)
        raw = await pipe.execute()
        fences, seqs, vecs = {}, {}, {}
        for i, u in enumerate(users):
            off, mf = raw[2 * i]
            if off is not None:
                fences[u] = int(off)
            if mf:
                vecs[u] = decode_vector(mf)
            seqs[u] = [SeqEntry.decode(x) for x in raw[2 * i + 1]]
        return fences, seqs, vecs

    def learn(self, f: Fold, vecs: dict[str, np.ndarray]) -> list[str]:
        """Online MF over the batch's positives, in order; returns the items whose factors moved (the
        positives and their sampled negatives: the readers rank with every item's factors). The
        factors in Redis are the truth: a user of the batch without them there (erased, or new) starts
        from fresh factors, whatever this process remembers."""
        for u in f.users:
            v = vecs.get(u)
            if v is not None and v.shape[0] == self.mf.dim:
                self.mf.users[u] = v
            else:
                self.mf.users.pop(u, None)
        self.mf.learn_many([(user, item, min(weight, 2.0)) for user, item, weight in f.positives])
        return self.mf.take_moved()

    async def apply(self, accepted: list[Accepted]) -> Fold:
        if not self.mf_loaded:
            await self.load_mf()
        users = sorted({a.event.user_id for a in accepted})
        if not users:
            return Fold()
        rows: list[Interaction] = []
        for _attempt in range(5):
            fences, seqs, vecs = await self.read(users)
            # item-keyed deltas first (acked), user fences after: a crash in between replays them
            # at the same source offsets, and the item fences drop them.
            f, sent = await self.fold_and_apply_items(accepted, fences, seqs)
            await asyncio.sleep(0)  # CPU-bound steps apart: the profile owner's round trips get the loop between
            pv_before = (self.mf.pv_n, self.mf.pv_err)
            moved = self.learn(f, vecs)
            await asyncio.sleep(0)
            pipe = self.redis.pipeline(transaction=False)
            order = list(f.users)
            for u in order:
                vec = self.mf.users.get(u)
                await self.user_script(
                    keys=[self.keys.recs_user_state(u), self.keys.recs_user_seq(u), self.keys.recs_user_seen(u)],
                    args=user_lua_args(fences.get(u), f.users[u], encode_vector(vec) if vec is not None else None),
                    client=pipe)
            results = await pipe.execute() if order else []
            conflicts = {u for u, ok in zip(order, results, strict=True) if not ok}
            rows += [r for r in f.interactions if r[0] not in conflicts]
            await self.publish(f, moved, pv_before, sent)
            if not conflicts:
                break
            users = sorted(conflicts)
            accepted = [a for a in accepted if a.event.user_id in conflicts]
        else:
            raise RuntimeError(f"user fence conflicts did not settle for {len(conflicts)} users")
        self.mf.users.clear()  # user factors live in Redis (read with every batch): none kept between batches
        self.write_interactions(rows)
        return f

    async def fold_and_apply_items(self, accepted: list[Accepted], fences: dict[str, int],
                                   seqs: dict[str, list[SeqEntry]]) -> tuple[Fold, int]:
        """The batch's fold with its item deltas applied, and how many item entries it sent. The fences
        of every item the fold can touch are read first (``item_candidates``); an item whose fence moved
        before its script ran (another worker) is re-read and the batch folded again: the items already
        applied are then at their new fences and drop out of the new fold."""
        pairs = item_candidates(accepted, fences, seqs, self.p)
        fresh: set[tuple[str, int]] = set()
        sent = -1
        for _attempt in range(5):
            item_fences = await self.item_side.fences_for(pairs, fresh)
            f = fold(accepted, fences, seqs, self.p, item_fences)
            if sent < 0:
                sent = sum(a.entries for a in f.items.values())
            await asyncio.sleep(0)
            _applied, conflicts = await self.item_side.apply(f.items)
            if not conflicts:
                return f, sent
            fresh = {ip for ip in pairs if ip[0] in conflicts}
        raise RuntimeError(f"item fence conflicts did not settle for {len(conflicts)} items")

    async def publish(self, f: Fold, moved: list[str], pv_before: tuple[int, int], sent: int) -> None:
        """MF item factors and monitoring counters, one pipeline."""
        pipe = self.redis.pipeline(transaction=False)
        if moved:
            pipe.hset(self.keys.recs_mf_items(),
                      mapping={i: encode_vector(self.mf.V[self.mf.index[i]]) for i in moved})
        mon = self.keys.recs_monitor(MONITOR_STREAM)
        pipe.hincrby(mon, "events", sum(len(d.new) for d in f.users.values()))
        pipe.hincrby(mon, "signals_sent", sent)
        mfk = self.keys.recs_monitor(OnlineMF.kind)
        pipe.hincrby(mfk, "pv_n", self.mf.pv_n - pv_before[0])
        pipe.hincrby(mfk, "pv_err", self.mf.pv_err - pv_before[1])
        for model, counts in f.monitor.items():
            for name, n in counts.items():
                pipe.hincrby(self.keys.recs_monitor(model), name, n)
        await pipe.execute()

    def write_interactions(self, rows: list[Interaction]) -> None:
        """Raw interactions for the batch jobs, buffered by primary key in the write-behind."""
        self.durable.put_many("interactions", {r[:4]: r for r in rows})

    def interaction_statements(self, rows: list[Interaction]) -> list[Any]:
        """Interaction rows tagged with their partition (the user): one batch per user and flush."""
        return [(("user", r[0]), self.insert, r) for r in rows]


# ------------------------------------------------------------------------------------- wiring


def register(app: faust.App, res: Resources) -> list[Owner]:
    """Both sides of the recommender signals: the item side and its publishing timer, the user side;
    returns the owner step ``recs by user`` that the behavior agent
    (streams/behavior.py) runs on every batch."""
    s = res.settings
    params = CoocParams(window=s.recs.window, decay=s.recs.decay, seq_max=s.recs.seq_max)
    item_side = ItemSignals(res)
    add_publisher(app, item_side)
    users = UserSignals(res, params, item_side)

    async def update_recs_by_user(b: Batch) -> None:  # run by the behavior agent on every intake batch
        await users.apply(b.kept)

    return [("recs by user", update_recs_by_user)]

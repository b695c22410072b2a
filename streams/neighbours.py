"""User neighbours ("users like you"), kept incrementally by the stream.

Owns two kinds of Redis state:

* ``recs_item_actors(item)``: sorted set user -> event time (ms) of the users most recently active on
  the item, bounded to ``recs_actors_max``; absolute ZADDs (a replay writes the same values).
* ``recs_user_nbrs(user)``: sorted set neighbour -> co-interaction score, bounded to
  ``recs_nbrs_max``; plus ``recs_user_nbstate(user)`` (hash, field ``_off``: the last applied Kafka
  offset of that user's partition).

The fold (pure, ``fold``): for each interaction of user ``u`` with item ``x``, every user recently
active on ``x`` (the actors, newest first) becomes a neighbour candidate of ``u`` with weight
``1 / sqrt(len(actors))`` (items everybody touches say little), then ``u`` joins the actors of
``x``. Neighbours are one-sided (``u``'s list changes when ``u`` acts): every write then stays in
``u``'s hash tag or ``x``'s, Redis Cluster-ready, and the increments of ``u`` are applied exactly once
through ``u``'s offset fence (compare-and-set Lua, as streams/profiles.py). The actors read at fold
time may be newer on a replay than on the first run (their writes are absolute and idempotent, but
other users moved on meanwhile): a replayed batch then proposes slightly different candidates, each
counted at most once.

The API's ranking reads ``recs_user_nbrs`` and the neighbours' recent sequences (``recs_user_seq``) and
sums "what users like you did lately" (source ``users``). The batch I/O: one pipeline to read fences
and actors, one pipeline of Lua/ZADD writes. ``register`` also adds the demographic cohorts' owner
(streams/cohorts.py) to the behavior fan-out.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import faust

from aura.state.cooccurrence import MONITOR_STREAM
from streams.cohorts import CohortStore
from streams.intake import Accepted
from streams.runtime import Batch, Owner, Resources

INTERACTIONS = frozenset({"view", "click", "recommendation_click", "rating", "add_to_cart", "purchase"})


@dataclass
class NeighbourFold:
    """What one batch changes: per user the increments and the new fence; per item the actors."""

    increments: dict[str, dict[str, float]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(float)))
    offsets: dict[str, int] = field(default_factory=dict)  # user -> highest applied offset
    actors: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(dict))  # item -> user -> time


def items_of(acc: Accepted) -> list[str]:
    ev = acc.event
    if ev.event_type == "purchase":
        lines = (ev.raw.get("order") or {}).get("lines") or []
        items = [ln["item_id"] for ln in lines]
        return items + ([ev.item_id] if ev.item_id and ev.item_id not in items else [])
    return [ev.item_id] if ev.item_id else []


def fold(events: list[Accepted], fences: dict[str, int], actors: dict[str, list[str]],
         actors_max: int) -> NeighbourFold:
    """Per user, the events above the fence -> neighbour increments; the items' new actors (pure).

    ``actors[item]``: the stored actors of the item, newest first."""
    out = NeighbourFold()
    work = {i: list(a) for i, a in actors.items()}
    for acc in sorted(events, key=lambda a: (a.partition, a.offset)):
        ev = acc.event
        u = ev.user_id
        if acc.offset <= fences.get(u, -1):
            continue
        out.offsets[u] = max(out.offsets.get(u, -1), acc.offset)
        if ev.event_type not in INTERACTIONS:
            continue
        for x in items_of(acc):
            cur = work.setdefault(x, [])
            others = [v for v in cur if v != u]
            if others:
                w = 1.0 / math.sqrt(len(others))
                inc = out.increments[u]
                for v in others:
                    inc[v] += w
            cur[:] = [u, *others][:actors_max]
            out.actors[x][u] = ev.event_time
    return out


# KEYS: the user's fence hash, the user's neighbour set. ARGV: expected fence ('' = none), new fence,
# max neighbours, n, then n pairs (neighbour, increment).
USER_LUA = """
local cur = redis.call('HGET', KEYS[1], '_off') or ''
if cur ~= ARGV[1] then return 0 end
local n = tonumber(ARGV[4])
for i = 0, n - 1 do redis.call('ZINCRBY', KEYS[2], ARGV[6 + 2 * i], ARGV[5 + 2 * i]) end
local cap = tonumber(ARGV[3])
if n > 0 and redis.call('ZCARD', KEYS[2]) > cap then redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -cap - 1) end
redis.call('HSET', KEYS[1], '_off', ARGV[2])
return 1
"""


def user_args(expected: int | None, new: int, cap: int, inc: dict[str, float]) -> list[Any]:
    args: list[Any] = ["" if expected is None else str(expected), str(new), cap, len(inc)]
    for v, w in inc.items():
        args += [v, repr(w)]
    return args


class NeighbourStore:
    """Reads fences and actors, folds, writes (one pipeline each); retries users whose fence moved."""

    def __init__(self, res: Resources) -> None:
        self.res, self.keys, self.redis = res, res.keys, res.redis
        s = res.settings
        self.actors_max, self.nbrs_max = s.recs.actors_max, s.recs.nbrs_max
        self.script = res.redis.register_script(USER_LUA)

    async def apply(self, events: list[Accepted]) -> int:
        """Returns the number of users whose neighbours were updated."""
        done = 0
        for _attempt in range(5):
            users = sorted({a.event.user_id for a in events})
            items = sorted({x for a in events for x in items_of(a)})
            if not users:
                return done
            pipe = self.redis.pipeline(transaction=False)
            for u in users:
                pipe.hget(self.keys.recs_user_nbstate(u), "_off")
            for x in items:
                pipe.zrevrange(self.keys.recs_item_actors(x), 0, self.actors_max - 1)
            raw = await pipe.execute()
            fences = {u: int(v) for u, v in zip(users, raw[: len(users)], strict=True) if v is not None}
            actors = dict(zip(items, raw[len(users):], strict=True))
            f = fold(events, fences, actors, self.actors_max)
            pipe = self.redis.pipeline(transaction=False)
            for x, acts in f.actors.items():  # absolute and idempotent: before the fences move
                key = self.keys.recs_item_actors(x)
                pipe.zadd(key, acts)
                pipe.zremrangebyrank(key, 0, -self.actors_max - 1)
            order = list(f.offsets)
            for u in order:
                await self.script(keys=[self.keys.recs_user_nbstate(u), self.keys.recs_user_nbrs(u)],
                                  args=user_args(fences.get(u), f.offsets[u], self.nbrs_max,
                                                 dict(f.increments.get(u, {}))), client=pipe)
            results = (await pipe.execute())[-len(order):] if order else []
            conflicts = {u for u, ok in zip(order, results, strict=True) if not ok}
            done += len(order) - len(conflicts)
            applied = sum(1 for a in events if a.event.user_id in f.offsets and a.event.user_id not in conflicts
                          and a.offset > fences.get(a.event.user_id, -1))
            # a monitor (bench/movielens.py waits on it), counted after the fences: approximate on a crash
            await self.redis.hincrby(self.keys.recs_monitor(MONITOR_STREAM), "neighbour_events", applied)
            if not conflicts:
                return done
            events = [a for a in events if a.event.user_id in conflicts]
        raise RuntimeError(f"neighbour fence conflicts did not settle for {len(conflicts)} users")


def owner(res: Resources) -> Owner:
    """The behavior fan-out's owner step (streams/behavior.py): ``("user neighbours", step)``."""
    store = NeighbourStore(res)

    async def step(b: Batch) -> None:
        await store.apply(b.kept)

    return "user neighbours", step


def cohorts_owner(res: Resources) -> Owner:
    """The demographic cohorts' popularity (streams/cohorts.py) as a behavior fan-out owner."""
    store = CohortStore(res)

    async def step(b: Batch) -> None:
        await store.apply(b.kept)

    return "cohort popularity", step


def register(app: faust.App, res: Resources) -> list[Owner]:
    """The behavior fan-out's owners of this module: user neighbours when ``recs_user_neighbours`` is on,
    cohort popularity when ``recs_cohorts`` is on (no agent or timer of their own)."""
    s = res.settings
    return [*([owner(res)] if s.recs.user_neighbours else []), *([cohorts_owner(res)] if s.recs.cohorts else [])]

"""Demographic cohorts' popular items, for the cold start of users who have profile attributes but no
history yet.

A user's cohorts come from their identity attributes (``cohorts_from_hash``, aura/state/cohorts.py:
shared with the ranking, which reads the user's cohorts' lists); this module counts them.

Owns, per cohort (hash tag ``{cohort}``): ``recs_cohort_popular`` (sorted set item -> interaction
weight of the cohort's members, trimmed to ``recs_cohort_cap``) and ``recs_cohort_state`` (hash of
fences ``f:<source partition>``). Exactly once as ``ItemSignals`` (streams/itemsignals.py): all events
of one source partition are folded by one consumer in offset order, so per (cohort, partition) the
entries arrive in offset order; one Lua script per cohort and batch checks the fences it expects,
applies the increments and moves the fences atomically. Events of users whose attributes arrive
later count from then on.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aura.state.cohorts import cohorts_from_hash
from streams.intake import Accepted

if TYPE_CHECKING:
    from streams.runtime import Resources

WEIGHTS = {"view": 1.0, "click": 1.0, "recommendation_click": 1.0, "rating": 1.0, "add_to_cart": 2.0,
           "purchase": 3.0}


@dataclass
class CohortApply:
    fences: dict[int, tuple[int | None, int]] = field(default_factory=dict)  # partition -> (expected, new)
    items: dict[str, float] = field(default_factory=lambda: defaultdict(float))


def fold(events: list[Accepted], user_cohorts: dict[str, list[str]],
         fences: dict[tuple[str, int], int | None]) -> dict[str, CohortApply]:
    """Per cohort, the increments of the events above its (cohort, partition) fences (pure)."""
    out: dict[str, CohortApply] = {}
    for acc in sorted(events, key=lambda a: (a.partition, a.offset)):
        ev = acc.event
        w = WEIGHTS.get(ev.event_type)
        cohorts = user_cohorts.get(ev.user_id) or []
        if w is None or not ev.item_id:
            continue
        for c in cohorts:
            a = out.setdefault(c, CohortApply())
            stored = fences.get((c, acc.partition))
            expected, high = a.fences.get(acc.partition, (stored, -1 if stored is None else stored))
            if acc.offset <= high:
                continue
            a.fences[acc.partition] = (expected, acc.offset)
            a.items[ev.item_id] += w
    return {c: a for c, a in out.items() if a.items}


COHORT_LUA = """
local nf = tonumber(ARGV[1])
for i = 1, nf do
  local cur = redis.call('HGET', KEYS[1], ARGV[2 + (i - 1) * 3]) or ''
  if cur ~= ARGV[3 + (i - 1) * 3] then return 0 end
end
for i = 1, nf do redis.call('HSET', KEYS[1], ARGV[2 + (i - 1) * 3], ARGV[4 + (i - 1) * 3]) end
local b = 2 + nf * 3
local n = tonumber(ARGV[b])
for i = 0, n - 1 do redis.call('ZINCRBY', KEYS[2], ARGV[b + 2 + 2 * i], ARGV[b + 1 + 2 * i]) end
local cap = tonumber(ARGV[b + 1 + 2 * n])
if redis.call('ZCARD', KEYS[2]) > cap then redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -cap - 1) end
return 1
"""


def lua_args(a: CohortApply, cap: int) -> list[Any]:
    args: list[Any] = [len(a.fences)]
    for part, (expected, new) in sorted(a.fences.items()):
        args += [f"f:{part}", "" if expected is None else str(expected), str(new)]
    args.append(len(a.items))
    for item, w in a.items.items():
        args += [item, repr(w)]
    args.append(cap)
    return args


class CohortStore:
    """Reads the batch's users' attributes and the cohorts' fences, folds, writes (one script per cohort)."""

    def __init__(self, res: Resources) -> None:
        self.res, self.keys, self.redis = res, res.keys, res.redis
        self.cap = res.settings.recs.cohort_cap
        self.script = res.redis.register_script(COHORT_LUA)

    async def apply(self, events: list[Accepted]) -> int:
        events = [a for a in events if a.event.event_type in WEIGHTS and a.event.item_id]
        users = sorted({a.event.user_id for a in events})
        if not users:
            return 0
        pipe = self.redis.pipeline(transaction=False)
        for u in users:
            pipe.hgetall(self.keys.user_attrs(u))
        user_cohorts = {u: cohorts_from_hash(raw) for u, raw in zip(users, await pipe.execute(), strict=True)}
        applied = 0
        for _attempt in range(5):
            pairs = sorted({(c, a.partition) for a in events for c in user_cohorts.get(a.event.user_id) or []})
            if not pairs:
                return applied
            pipe = self.redis.pipeline(transaction=False)
            for c, p in pairs:
                pipe.hget(self.keys.recs_cohort_state(c), f"f:{p}")
            fences = {cp: (int(v) if v is not None else None) for cp, v in zip(pairs, await pipe.execute(),
                                                                                 strict=True)}
            applies = fold(events, user_cohorts, fences)
            order = list(applies)
            pipe = self.redis.pipeline(transaction=False)
            for c in order:
                await self.script(keys=[self.keys.recs_cohort_state(c), self.keys.recs_cohort_popular(c)],
                                  args=lua_args(applies[c], self.cap), client=pipe)
            results = await pipe.execute() if order else []
            conflicts = {c for c, ok in zip(order, results, strict=True) if not ok}
            applied += len(order) - len(conflicts)
            if not conflicts:
                return applied
            user_cohorts = {u: [c for c in cs if c in conflicts] for u, cs in user_cohorts.items()}
        raise RuntimeError(f"cohort fence conflicts did not settle for {len(conflicts)} cohorts")

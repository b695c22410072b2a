"""User activity state (the first slice of profiles): counts per action, first and last seen,
recent items. Owner of the ``user_counts`` / ``user_recent`` Redis keys and of the
``user_activity`` Cassandra table.

Exactly-once effects from at-least-once delivery by offset fencing: each user's hash carries the
last Kafka offset folded into it (``_off``; a user always lives in one partition because events
are keyed by user). Per batch: one pipeline reads every touched user's fence, pure Python folds
the events above it, one pipeline applies each user's delta with a compare-and-set Lua script and
reads the absolute state back, and one concurrent Cassandra write stores those absolute values.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from aura.layout import APPLIED_OFFSET, FIRST_SEEN, LAST_SEEN, RedisKeys, Tables
from streams.intake import Accepted

# Actions whose item goes into the user's recent items.
RECENT_ACTIONS = frozenset({"view", "click", "add_to_cart", "purchase", "rating", "recommendation_click"})

APPLY_LUA = """
local cur = redis.call('HGET', KEYS[1], '_off') or ''
if cur ~= ARGV[1] then return 0 end
local n_items = tonumber(ARGV[6])
for i = 1, n_items do
  redis.call('LREM', KEYS[2], 0, ARGV[6 + i])
  redis.call('LPUSH', KEYS[2], ARGV[6 + i])
end
if n_items > 0 then redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[3]) - 1) end
local first = redis.call('HGET', KEYS[1], 'first_seen')
if (not first) or tonumber(first) > tonumber(ARGV[4]) then redis.call('HSET', KEYS[1], 'first_seen', ARGV[4]) end
local last = redis.call('HGET', KEYS[1], 'last_seen')
if (not last) or tonumber(last) < tonumber(ARGV[5]) then redis.call('HSET', KEYS[1], 'last_seen', ARGV[5]) end
local i = 7 + n_items
while i < #ARGV do
  redis.call('HINCRBY', KEYS[1], ARGV[i], tonumber(ARGV[i + 1]))
  i = i + 2
end
redis.call('HSET', KEYS[1], '_off', ARGV[2])
return 1
"""


@dataclass
class ActivityDelta:
    """What one batch adds to one user's activity."""

    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    first_seen: int = 0
    last_seen: int = 0
    recent: list[str] = field(default_factory=list)  # distinct, oldest first
    offset: int = -1


def fold(events: list[Accepted], fences: dict[str, int]) -> dict[str, ActivityDelta]:
    """Per user, the delta of the events above that user's fence (pure)."""
    deltas: dict[str, ActivityDelta] = {}
    for acc in sorted(events, key=lambda a: a.offset):
        ev = acc.event
        if acc.offset <= fences.get(ev.user_id, -1):
            continue
        d = deltas.get(ev.user_id)
        if d is None:
            d = deltas[ev.user_id] = ActivityDelta(first_seen=ev.event_time, last_seen=ev.event_time)
        d.counts[ev.event_type] += 1
        d.first_seen = min(d.first_seen, ev.event_time)
        d.last_seen = max(d.last_seen, ev.event_time)
        d.offset = max(d.offset, acc.offset)
        if ev.event_type in RECENT_ACTIONS and ev.item_id:
            if ev.item_id in d.recent:
                d.recent.remove(ev.item_id)
            d.recent.append(ev.item_id)
    return deltas


def lua_args(expected: int | None, delta: ActivityDelta, recent_max: int) -> list[Any]:
    args: list[Any] = ["" if expected is None else str(expected), str(delta.offset), recent_max,
                       delta.first_seen, delta.last_seen, len(delta.recent[-recent_max:]),
                       *delta.recent[-recent_max:]]
    for action, n in sorted(delta.counts.items()):
        args += [action, n]
    return args


def parse_state(counts: dict[str, str], recent: list[str]) -> dict[str, Any]:
    """Redis hash + list -> the activity document served by the API and stored in Cassandra."""
    meta = {FIRST_SEEN, LAST_SEEN, APPLIED_OFFSET}
    return {
        "counts": {k: int(v) for k, v in counts.items() if k not in meta},
        FIRST_SEEN: int(counts[FIRST_SEEN]) if FIRST_SEEN in counts else None,
        LAST_SEEN: int(counts[LAST_SEEN]) if LAST_SEEN in counts else None,
        "recent_items": recent,
        "applied_offset": int(counts[APPLIED_OFFSET]) if APPLIED_OFFSET in counts else None,
    }


class ActivityStore:
    """Reads and writes user activity in Redis and Cassandra; one instance per worker."""

    owner = "profiles"

    def __init__(self, redis: Any, session: Any, keys: RedisKeys, recent_max: int) -> None:
        self.redis = redis
        self.session = session
        self.keys = keys
        self.recent_max = recent_max
        self.apply_script = redis.register_script(APPLY_LUA)
        self.upsert = session.prepare(
            f"INSERT INTO {Tables.USER_ACTIVITY} (user_id, counts, first_seen, last_seen, recent_items, "
            "applied_offset, updated_at) VALUES (?, ?, ?, ?, ?, ?, toTimestamp(now()))"
        )

    async def fences(self, users: list[str]) -> dict[str, int]:
        pipe = self.redis.pipeline(transaction=False)
        for u in users:
            pipe.hget(self.keys.user_counts(u), APPLIED_OFFSET)
        values = await pipe.execute()
        return {u: int(v) for u, v in zip(users, values, strict=True) if v is not None}

    async def apply(self, events: list[Accepted]) -> dict[str, dict[str, Any]]:
        """Fold ``events`` into state exactly once; returns the new state of every touched user."""
        users = sorted({a.event.user_id for a in events})
        if not users:
            return {}
        for _attempt in range(5):
            fences = await self.fences(users)
            deltas = fold(events, fences)
            pipe = self.redis.pipeline(transaction=False)
            order = list(deltas)
            for u in order:
                await self.apply_script(keys=[self.keys.user_counts(u), self.keys.user_recent(u)],
                                        args=lua_args(fences.get(u), deltas[u], self.recent_max), client=pipe)
            results = await pipe.execute() if order else []
            conflicts = [u for u, ok in zip(order, results, strict=True) if not ok]
            if not conflicts:
                break
            events = [a for a in events if a.event.user_id in set(conflicts)]
        else:
            raise RuntimeError(f"fence conflicts did not settle for {len(conflicts)} users")
        return await self.write_durable(users)

    async def read(self, users: list[str]) -> dict[str, dict[str, Any]]:
        pipe = self.redis.pipeline(transaction=False)
        for u in users:
            pipe.hgetall(self.keys.user_counts(u))
            pipe.lrange(self.keys.user_recent(u), 0, self.recent_max - 1)
        raw = await pipe.execute()
        return {u: parse_state(raw[2 * i], raw[2 * i + 1]) for i, u in enumerate(users)}

    async def write_durable(self, users: list[str]) -> dict[str, dict[str, Any]]:
        """Copy the absolute Redis state of ``users`` to Cassandra (idempotent upserts)."""
        from cassandra.concurrent import execute_concurrent_with_args

        states = await self.read(users)
        params = [
            (u, st["counts"], st[FIRST_SEEN], st[LAST_SEEN], st["recent_items"], st["applied_offset"])
            for u, st in states.items()
        ]
        results = await asyncio.get_running_loop().run_in_executor(
            None, lambda: execute_concurrent_with_args(self.session, self.upsert, params, concurrency=64,
                                                       raise_on_first_error=True))
        del results
        return states

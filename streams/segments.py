"""The writer of segment memberships: which users are in ``vip``, ``buyer``, ... in Redis and Cassandra.

Owner of the Redis sets ``segment_members`` (one per segment) and the Cassandra table
``segment_members``. The rules and their evaluation are in aura/state/segments.py; a user's
membership is evaluated by the profile fold whenever the user's events arrive (streams/profiles.py),
stored in the profile, and then reconciled into the sets here: absolute SADD/SREM and Cassandra
INSERT/DELETE, so a replay after a crash repairs what a crash interrupted.

Membership counts over time (``segment_history``, one hash per segment; format in
aura/state/segments.py): ``HISTORY_LUA`` applies a segment's adds and removes and counts, in the same
script, the members that really joined or left (the SADD/SREM replies) and the set's size, per hour of
processing. A replay re-applies absolute adds and removes that change nothing and so counts nothing:
the counts are exact across crashes. The same script appends each real join and leave to the
segment's transition stream (``segment_transitions``, with what made it: the fold, the idle sweep, a
backfill, a removal), which segment-triggered campaigns turn into messages
(streams/campaign_schedule.py): one record per real change, never one for a replayed write.

``LiveRules``: the rules in force, the settings' built-ins overlaid by the definitions stored through
the API, read through the config cache (one GET of its version per batch; a changed version costs
one GET of the cached documents), so a new or changed segment applies to the next batch of every
worker without a restart. Existing users are re-evaluated by the backfill (streams/lifecycle.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from cassandra.concurrent import execute_concurrent

from aura.configcache import ConfigCache, ConfigUnavailable
from aura.keys import RedisKeys
from aura.layout import Tables
from aura.state import segments as segment_rules
from aura.state.campaign_schedule import TRANSITIONS_MAXLEN
from aura.state.profiles import Profile
from streams.durable import execute_grouped

log = logging.getLogger(__name__)


class LiveRules:
    """The segment rules in force (see the module doc); ``current`` keeps the last rules it could read
    when the durable store is unreachable (logged), so a Cassandra outage never stops the fold."""

    def __init__(self, base: segment_rules.Rules, redis: Any, keys: RedisKeys, session: Any) -> None:
        self.base = base
        self.cache: ConfigCache[dict[str, Any]] = ConfigCache(
            segment_rules.CONFIG_KIND, Tables.SEGMENTS, "segment_id", redis, keys, session,
            segment_rules.validate_segment)
        self.rules: segment_rules.Rules = base
        self._ver: str | None = None

    async def current(self) -> tuple[segment_rules.Rules, str | None]:
        """(rules, config version they are as of)."""
        try:
            ver = await self.cache.version()
            if ver != self._ver:
                self.rules = segment_rules.effective(self.base, await self.cache.get(ver))
                self._ver = ver
        except ConfigUnavailable as exc:
            log.warning("segment definitions unavailable, keeping the rules in force: %s", exc)
        return self.rules, self._ver


# KEYS: members set, history hash, transition stream; ARGV: hour bucket, number of adds, origin,
# transitions kept, the added users, then the removed. Each real join/leave (SADD/SREM reply 1) is
# also recorded in the transition stream in this same atomic step (segment-triggered campaigns).
HISTORY_LUA = """
local n_add = tonumber(ARGV[2])
local joined, left = 0, 0
local record = ARGV[3] ~= 'remove'  -- an erased or merged user leaves no transition
local function note(user, kind)
  if record then redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', 'u', user, 'k', kind, 'o', ARGV[3]) end
end
for i = 5, 4 + n_add do
  if redis.call('SADD', KEYS[1], ARGV[i]) == 1 then
    joined = joined + 1
    note(ARGV[i], 'enter')
  end
end
for i = 5 + n_add, #ARGV do
  if redis.call('SREM', KEYS[1], ARGV[i]) == 1 then
    left = left + 1
    note(ARGV[i], 'leave')
  end
end
if joined > 0 or left > 0 then
  local h = ARGV[1]
  if joined > 0 then redis.call('HINCRBY', KEYS[2], h .. ':j', joined) end
  if left > 0 then redis.call('HINCRBY', KEYS[2], h .. ':l', left) end
  redis.call('HSET', KEYS[2], h .. ':n', redis.call('SCARD', KEYS[1]))
end
return {joined, left}
"""


class SegmentStore:
    """Keeps the member sets in Redis and Cassandra equal to the profiles' segment lists."""

    def __init__(self, redis: Any, session: Any, keys: RedisKeys, names: list[str]) -> None:
        self.redis = redis
        self.session = session
        self.keys = keys
        self.names = names
        self.insert = session.prepare(
            f"INSERT INTO {Tables.SEGMENT_MEMBERS} (segment, user_id, since) VALUES (?, ?, toTimestamp(now()))")
        self.delete = session.prepare(f"DELETE FROM {Tables.SEGMENT_MEMBERS} WHERE segment = ? AND user_id = ?")
        self.history_script = redis.register_script(HISTORY_LUA)

    def queue_changes(self, pipe: Any, add: dict[str, list[str]], remove: dict[str, list[str]],
                      origin: str = "fold") -> None:
        """One ``HISTORY_LUA`` call per segment touched: its adds, removes, counts and transitions
        (``origin``: what made them, aura/state/campaign_schedule.py ``ORIGINS``)."""
        hour = segment_rules.hour_of(int(time.time() * 1000))
        for name in sorted(set(add) | set(remove)):
            added = add.get(name, [])
            pipe.evalsha(self.history_script.sha, 3, self.keys.segment_members(name),
                         self.keys.segment_history(name), self.keys.segment_transitions(name), hour, len(added),
                         origin, TRANSITIONS_MAXLEN, *added, *remove.get(name, []))
        pipe.scripts.add(self.history_script)

    def rows(self, states: dict[str, Profile], unchanged: set[str], before: dict[str, list[str]] | None = None,
             full: set[str] | frozenset[str] = frozenset()) -> dict[tuple[str, str], bool]:
        """(segment, user) -> member, for the users of ``states`` not in ``unchanged`` (folded now, same
        segments as before: nothing to write).

        A user in ``full`` (a replay: the attempt that first folded some of its events may have
        stopped before its reconcile), even if unchanged, or without segments in ``before`` (the
        state the fold started from; ``before`` None: every user) gets its whole membership, every
        segment written as member or not; the others get only the segments they joined or left."""
        out: dict[tuple[str, str], bool] = {}
        for u, p in states.items():
            if u in unchanged and u not in full:
                continue
            member = set(p.segments)
            names = self.names
            if before is not None and u in before and u not in full:
                was = set(before[u])
                names = [n for n in self.names if (n in member) != (n in was)]
            for name in names:
                out[(name, u)] = name in member
        return out

    def statements(self, rows: dict[tuple[str, str], bool]) -> list[Any]:
        """The Cassandra rows of ``rows``, tagged with their partition (the segment): one mutation per
        segment and write."""
        return [(("segment", name), self.insert if member else self.delete, (name, u))
                for (name, u), member in rows.items()]

    async def reconcile(self, states: dict[str, Profile], unchanged: set[str],
                        buffer: Callable[[dict[tuple[str, str], bool]], None] | None = None,
                        before: dict[str, list[str]] | None = None,
                        full: set[str] | frozenset[str] = frozenset(), origin: str = "fold") -> None:
        """Make the sets agree with ``states`` (the rows of ``rows``): one Redis pipeline, then the
        Cassandra rows, written now (one concurrent write) or handed to ``buffer`` (the behavior
        agent's write-behind, which holds the batch's Kafka acks until they are written: a slow
        Cassandra does not delay the next batch)."""
        rows = self.rows(states, unchanged, before, full)
        if not rows:
            return
        add: dict[str, list[str]] = {}
        remove: dict[str, list[str]] = {}
        for (name, u), member in rows.items():
            (add if member else remove).setdefault(name, []).append(u)
        pipe = self.redis.pipeline(transaction=False)  # one script call per segment and batch
        self.queue_changes(pipe, add, remove, origin)
        await pipe.execute()
        if buffer is not None:
            buffer(rows)
            return
        await execute_grouped(self.session, self.statements(rows))

    async def remove_user(self, user_id: str) -> None:
        """Take ``user_id`` out of every segment (erase, merge of an anonymous id)."""
        pipe = self.redis.pipeline(transaction=False)
        self.queue_changes(pipe, {}, {name: [user_id] for name in self.names}, "remove")
        await pipe.execute()

        stmts = [(self.delete, (name, user_id)) for name in self.names]
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: execute_concurrent(self.session, stmts, concurrency=16, raise_on_first_error=True))

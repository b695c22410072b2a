"""Segment-triggered and scheduled campaigns: turning segment transitions and schedule occurrences
into due messages (``campaign_due``), on the worker holding the campaign drain lease.

Owns the segment cursors (``campaign_segment_cursor``) and each scheduled campaign's expansion
state (``campaign_schedule``); reads the segments writer's transition streams
(``segment_transitions``, streams/segments.py) and the audiences (segment sets, the user lists,
every profile and identity key for ``everyone`` and rule audiences). What a due message then goes
through (guards, outbox, connectors) is the drainer's (streams/campaigns.py).

Exactly once:
- a segment transition is recorded by the same script as the SADD/SREM that made it; the pass
  reads the transitions after the segment's cursor and, in one MULTI, adds their due entries
  (ZADD NX, a member fixed by the transition's stream id) and moves the cursor: a crash before the
  MULTI reads them again, never after;
- a schedule occurrence is expanded in chunks of ``AURA_CAMPAIGN_SCHEDULE_CHUNK`` audience members;
  one script (``EXPAND_LUA``) adds a chunk's due entries (ZADD NX, member fixed by campaign, user and
  occurrence) and moves the audience cursor, compare-and-set on the cursor it started from, so a
  pass that crashed, or a second worker that lost the lease, repeats or drops a chunk, never splits
  it. SCAN/SSCAN cursors survive a restart and return every member present for the whole scan; a
  member returned twice gets the same due entry, and the drainer's claim and the connectors' send
  record stop a copy whose first message already left.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import faust

from aura.configcache import ConfigCache
from aura.state.campaign_audience import Population
from aura.state.campaign_schedule import fires, parse_occurrence, parse_transition, stream_id
from aura.state.campaign_schedule import occurrence_key as occ_key
from aura.state.campaign_sends import Due
from aura.state.campaigns import Campaign
from streams.runtime import Resources, retrying

log = logging.getLogger(__name__)
SCAN_PASS_S = 0.2  # the longest one pass scans the keyspace for an everyone or rule audience

# KEYS: due set, schedule hash; ARGV: occurrence, cursor expected, next cursor ('' = the occurrence is
# done), skipped, then score/member pairs. Returns the entries added, or -1 when the state moved on.
EXPAND_LUA = """
if redis.call('HGET', KEYS[2], 'occurrence') ~= ARGV[1] or redis.call('HGET', KEYS[2], 'cursor') ~= ARGV[2] then
  return -1
end
local added = 0
for i = 5, #ARGV, 2 do
  added = added + redis.call('ZADD', KEYS[1], 'NX', ARGV[i], ARGV[i + 1])
end
redis.call('HINCRBY', KEYS[2], 'expanded', added)
redis.call('HINCRBY', KEYS[2], 'scheduled', added)
if tonumber(ARGV[4]) > 0 then redis.call('HINCRBY', KEYS[2], 'skipped_late', ARGV[4]) end
if ARGV[3] == '' then
  redis.call('HSET', KEYS[2], 'last', ARGV[1], 'last_expanded', redis.call('HGET', KEYS[2], 'expanded'))
  redis.call('HINCRBY', KEYS[2], 'occurrences', 1)
  redis.call('HDEL', KEYS[2], 'occurrence', 'cursor', 'expanded')
else
  redis.call('HSET', KEYS[2], 'cursor', ARGV[3])
end
return added
"""


def schedule_due(c: Campaign, user_id: str, w: datetime) -> Due:
    """A user's due entry for the occurrence ``w`` (member independent of the user's zone)."""
    key = occ_key(w)
    return Due(c.id, user_id, f"schedule:{key}", c.trigger.schedule.instant_ms(w) if c.trigger.schedule else 0,
               {"event_type": "schedule", "properties": {"occurrence": key}})


class Scheduler:
    """Segment transitions and schedule occurrences -> due entries (see the module doc)."""

    def __init__(self, res: Resources, cache: ConfigCache[Campaign], leased: Callable[[], Awaitable[bool]]) -> None:
        self.res, self.cache, self.leased = res, cache, leased
        self.expand = res.redis.register_script(EXPAND_LUA)
        self.population = Population(res.keys)  # everyone: the users with a profile or attributes

    async def tick(self) -> int:
        """One pass if this worker holds the lease; returns the work done (due entries added, audience
        chunks read): 0 when there was nothing to do."""
        if not await self.leased():
            return 0
        campaigns = await self.cache.get()
        now = int(time.time() * 1000)
        n = await self.transitions([c for c in campaigns.values() if c.trigger.kind == "segment"], now)
        for c in campaigns.values():
            if c.trigger.kind == "schedule" and c.trigger.schedule is not None and c.active(now):
                added = await self.expand_one(c, now)
                n += added + 1 if added >= 0 else 0
        return n

    async def transitions(self, campaigns: list[Campaign], now: int) -> int:
        """The segment transitions since each watched segment's cursor -> due entries of the active
        campaigns they fire (only transitions since the campaign last started running)."""
        by_seg: dict[str, list[Campaign]] = {}
        for c in campaigns:
            if c.trigger.segment and c.active(now):
                by_seg.setdefault(c.trigger.segment, []).append(c)
        if not by_seg:
            return 0
        keys, redis, chunk = self.res.keys, self.res.redis, self.res.settings.campaigns.schedule_chunk
        segs = sorted(by_seg)
        cursors = dict(zip(segs, await redis.hmget(keys.campaign_segment_cursor(), segs), strict=True))
        pipe = redis.pipeline(transaction=False)
        for seg in segs:
            since = min(c.running_at or now for c in by_seg[seg])
            cur = cursors[seg]
            start = f"({cur}" if cur and stream_id(cur) >= (since, 0) else f"{since}-0"
            pipe.xrange(keys.segment_transitions(seg), min=start, count=chunk)
        read = await pipe.execute()
        due: dict[str, int] = {}
        moved: dict[str, str] = {}
        for seg, entries in zip(segs, read, strict=True):
            for entry_id, fields in entries:
                moved[seg] = entry_id
                t = parse_transition(entry_id, fields)
                for c in by_seg[seg] if t else ():
                    if fires(c.trigger.on, c.trigger.backfill, t) and c.triggers_at(t.at_ms, now):
                        d = Due(c.id, t.user_id, f"segment:{seg}:{t.kind}:{t.id}", t.at_ms,
                                {"event_type": f"segment_{t.kind}", "properties": {"segment": seg}})
                        due[d.member] = t.at_ms + c.trigger.delay_ms
        if not moved:
            return 0
        tx = redis.pipeline(transaction=True)  # the entries and the cursors together, or neither
        if due:
            tx.zadd(keys.campaign_due(), due, nx=True)
        tx.hset(keys.campaign_segment_cursor(), mapping=moved)
        await tx.execute()
        trim = redis.pipeline(transaction=False)
        for seg, last in moved.items():
            trim.xtrim(keys.segment_transitions(seg), minid=last, approximate=False)
        await trim.execute()
        return len(due)

    async def expand_one(self, c: Campaign, now: int) -> int:
        """One chunk of ``c``'s current occurrence (starting the next one when it is due); returns the
        due entries added, -1 when nothing was expanded."""
        s, keys, redis = c.trigger.schedule, self.res.keys, self.res.redis
        assert s is not None
        cs = self.res.settings.campaigns
        grace = int(cs.schedule_grace_s * 1000)
        state_key = keys.campaign_schedule(c.id)
        st = await redis.hgetall(state_key)
        occ = st.get("occurrence")
        if occ is None:
            after = parse_occurrence(st["last"]) if st.get("last") else None
            # a recurring schedule starts with the campaign (no catching up on the hour before it ran);
            # a one-off time just past (within the grace) when the campaign started still sends
            start = now - grace if after is not None or s.at is not None else max(now - grace, c.running_at or now)
            w = s.next_occurrence(after, start)
            if w is None:
                await redis.hset(state_key, mapping={"done": 1, "next": ""})
                return -1
            if s.window_ms(w)[0] > now:
                await redis.hset(state_key, "next", occ_key(w))
                return -1
            occ = occ_key(w)
            tx = redis.pipeline(transaction=True)
            tx.hsetnx(state_key, "occurrence", occ)
            tx.hsetnx(state_key, "cursor", "0")
            tx.hset(state_key, mapping={"next": occ, "started_at": now})
            await tx.execute()
            st = await redis.hgetall(state_key)
            occ = st.get("occurrence") or occ
        w = parse_occurrence(occ)
        cursor = st.get("cursor", "0")
        users, nxt = await self.audience_chunk(c, cursor, cs.schedule_chunk)
        zones = await self.zones(users) if s.user_tz and users else {}
        args: list[Any] = []
        skipped = 0
        for u in users:
            at = s.instant_ms(w, zones.get(u))
            if at < now - grace:
                skipped += 1  # the worker was down past this user's time
                continue
            args += [at, schedule_due(c, u, w).member]
        return int(await self.expand(keys=[keys.campaign_due(), state_key], args=[occ, cursor, nxt, skipped, *args]))

    async def zones(self, users: list[str]) -> dict[str, str]:
        """Each user's ``timezone`` identity attribute (JSON text in the identity hash), where known."""
        pipe = self.res.redis.pipeline(transaction=False)
        for u in users:
            pipe.hget(self.res.keys.user_attrs(u), "x:timezone")
        out = {}
        for u, raw in zip(users, await pipe.execute(), strict=True):
            if raw and raw.startswith('"'):
                out[u] = raw[1:-1]
        return out

    async def audience_chunk(self, c: Campaign, cursor: str, chunk: int) -> tuple[list[str], str]:
        """(users, next cursor; '' when the audience is exhausted) from ``cursor`` ('0': the start).
        A rule audience is every user here: the drainer checks the rule when the message is due."""
        a, redis = c.audience, self.res.redis
        if a.kind == "users":
            ordered = sorted(a.users)
            i = int(cursor)
            return ordered[i:i + chunk], (str(i + chunk) if i + chunk < len(ordered) else "")
        if a.kind == "segment":
            nxt, members = await redis.sscan(self.res.keys.segment_members(a.segment or "-"), int(cursor), count=chunk)
            return sorted(set(members)), ("" if int(nxt) == 0 else str(nxt))
        # SCAN's count is keys examined, most of them perhaps not a user's: a pass goes on for up to
        # SCAN_PASS_S while it has found fewer than ``chunk`` users (the cursor is saved once, at the end)
        users: set[str] = set()
        nxt, deadline = int(cursor), time.monotonic() + SCAN_PASS_S
        while True:
            nxt, names = await redis.scan(nxt, match=self.population.pattern, count=max(chunk, 1000))
            attrs_only: list[str] = []  # users seen by their attributes key: theirs unless they have a profile
            for name in names:
                found = self.population.owner(name)
                if found is not None:
                    (users.add if found[1] else attrs_only.append)(found[0])
            if attrs_only:  # a user with both keys is expanded from the profile key alone (once per scan)
                pipe = redis.pipeline(transaction=False)
                for user in attrs_only:
                    pipe.exists(self.res.keys.user_state(user))
                users.update(u for u, has in zip(attrs_only, await pipe.execute(), strict=True) if not has)
            if int(nxt) == 0 or len(users) >= chunk or time.monotonic() > deadline:
                break
        return sorted(users), ("" if int(nxt) == 0 else str(nxt))


def start(app: faust.App, res: Resources, cache: ConfigCache[Campaign], leased: Callable[[], Awaitable[bool]],
          wake: Callable[[int], None] | None = None) -> None:
    """The scheduler's timer (every ``AURA_CAMPAIGN_TICK_S``, at once again while passes add entries);
    ``wake`` (the drainer's ``due_at``) is told after a pass that added entries, so they leave at once."""
    scheduler = Scheduler(res, cache, leased)

    @app.task
    async def schedule_campaign_messages() -> None:
        while True:
            try:
                busy = await retrying("campaign schedule", scheduler.tick) > 0
                if busy and wake is not None:
                    wake(int(time.time() * 1000))
            except Exception:  # noqa: BLE001 - never let the loop die; the cursors stay where they were
                log.exception("campaign scheduler pass failed")
                busy = False
            await asyncio.sleep(0 if busy else max(res.settings.campaigns.tick_s, 0.05))

"""Per-user hybrid candidate pools, ranked by the stream: the state the API's hybrid
recommendation request reads instead of ranking from scratch.

Owner of ``recs_user_cands(user, placement)`` (a hash: the best ``pool_size(10)`` = 300 candidates
of the user's hybrid ranking for one placement, best first, with their blended scores and sources,
the placement weights they were ranked with, the strategy, the fence ``off`` and the ``time``; the
format: aura/state/pools.py).

On demand: pools are kept only for users who ask for recommendations. A hybrid request
that finds no usable pool marks (placement, user) in ``recs_cands_wanted`` (a sorted set: member ->
time of the request, written inside the API's one pool-read script, bounded; aura/ranking/scripts.py
``CANDS_LUA``). Each timer tick begins with ONE pipeline over that set: the worker holding the drain
lease (one per group, ``recs_cands_drain_lease``) drops members older than ``recs_user_cands_wanted_s``
and reads the members added since its last tick (the drain: those users are ranked now, without any
event of theirs); every worker ``ZMSCORE``s the users noted from its recent batches: only
those who asked within ``recs_user_cands_wanted_s`` are ranked (their pool went stale through their
own event); the others are forgotten at no further cost. A user who never asks gets no pool.

How it is kept: the owner step (run by the behavior agent on every batch) only notes, per user, the
highest source offset of the batch. A timer (``recs_user_cands_interval_s``) then ranks the noted users
(who asked) whose recommender state has reached that offset (``_off`` of ``recs_user_state``, written by
streams/usersignals.py's user step, which may run concurrently or later: the owners are independent)
with the API's own code (``aura.ranking.ranker.Ranker``: ``plan`` -> ``absorb_queued`` -> ``choose``),
in three round trips per chunk of users: (1) one pipeline of every user's fence and state (and the
placement, trending and popular lists once), (2) one pipeline of the kNN script calls, (3) one pipeline
of fenced writes. The pool is a function of the state at the time it is read, so a replayed batch
recomputes the same pool from the same (or newer) state; the write is fenced by the user's ``_off``
read in the same pipeline (a pool ranked from an older state never replaces one ranked from a newer
state, e.g. by another worker after a rebalance). Each pool expires after ``recs_user_cands_ttl_s``
(inactive users cost no memory; the API then ranks from scratch).

What the API does with it (aura/ranking/reader.py ``from_precomputed``): a hybrid request the pool
answers exactly (no item on screen, no categories or id filters, seen items excluded, limit <= 15)
reads the pool's head and its filter records in ONE script call and ranks them as the full path does;
the other requests, users without a pool and pools ranked with other placement weights use the whole
ranking. What a pool does not see: changes of the global lists (trending, popular), of the items'
neighbour lists and of the batch model's candidates after it was ranked; they reach the user's pool
at the user's next event (or the API's full path after the TTL). docs/recommendations.md.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from typing import TYPE_CHECKING, Any

from aura.ranking.blend import SOURCES
from aura.ranking.factors import ItemFactors
from aura.ranking.ranker import Ranker
from aura.ranking.request import Request
from aura.state.pools import CANDS_LIMIT, parse_wanted, pool_record, wanted_member
from streams.intake import Accepted

if TYPE_CHECKING:
    from streams.runtime import Batch, Owner, Resources

log = logging.getLogger(__name__)

CHUNK = 200  # users ranked per round of three pipelines
YIELD_EVERY = 10  # users ranked between two yields to the event loop (~1.3 ms of CPU each)
WAIT_MAX_S = 10.0  # a user whose recommender fence does not reach the batch's offset is ranked anyway after this
DRAIN_MAX = 2000  # wanted members read per tick (the rest on the next ticks)
DRAIN_LEASE_MS = 5000  # the draining worker's lease, renewed every tick; another worker takes over after it

# The drain, by one worker of the group at a time: KEYS = the wanted set, the lease; ARGV = this worker's
# id, lease ms, the trim bound (marks older than this go), the cursor, the most members to read. Returns
# nil when another worker holds the lease, else the members from the cursor on, flat [member, score, ...].
DRAIN_LUA = """
local held = redis.call('GET', KEYS[2])
if held and held ~= ARGV[1] then return false end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[3])
return redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[4], '+inf', 'WITHSCORES', 'LIMIT', 0, ARGV[5])
"""

# The fenced write of one pool: KEYS = the pool hash, the user's recommender state (same hash tag);
# ARGV = fence, time, TTL ms, then the fields as (name, value) pairs. A pool ranked from an older state
# (lower ``off``) never replaces a newer one; a pool ranked from a state (fence >= 0) that is gone now
# (the user was erased meanwhile) is not written.
WRITE_LUA = """
if tonumber(ARGV[1]) >= 0 and redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
local cur = redis.call('HGET', KEYS[1], 'off')
if cur and tonumber(cur) > tonumber(ARGV[1]) then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'off', ARGV[1], 'time', ARGV[2], unpack(ARGV, 4))
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""


def note(pending: dict[str, tuple[int, float]], kept: list[Accepted], now: float) -> None:
    """Remember, per user, the highest source offset of the batch (pure; the first time noted is kept).
    A user drained from the wanted set and not ranked yet (offset -1, no wait) now waits for this batch
    like any noted user (else the pool would be ranked at once from the state before the batch, and the
    user dropped from ``pending``: a stale pool until the next event)."""
    for a in kept:
        u = a.event.user_id
        if not u:
            continue
        old = pending.get(u)
        if old is None or old[0] < 0:
            pending[u] = (a.offset, now)
        elif a.offset > old[0]:
            pending[u] = (a.offset, old[1])


def ready(pending: dict[str, tuple[int, float]], fences: dict[str, int | None], now: float,
          wait_max_s: float = WAIT_MAX_S) -> list[str]:
    """The users whose recommender state reached their noted offset (or who waited too long)."""
    out = []
    for u, off in fences.items():
        want, since = pending[u]
        if (off is not None and off >= want) or now - since >= wait_max_s:
            out.append(u)
    return out


def drained(entries: list[tuple[str, float]], cursor: float, at_cursor: set[str],
            placements: list[str]) -> tuple[list[str], float, set[str]]:
    """The users of the wanted members read from ``cursor`` on (inclusive: a member added in the same
    millisecond after the last read is not missed), without those already taken at ``cursor``; the
    next cursor and the members taken at it. Members of placements the worker does not keep are skipped."""
    users: list[str] = []
    for member, score in entries:
        if score == cursor and member in at_cursor:
            continue
        placement, user = parse_wanted(member)
        if placement in placements and user:
            users.append(user)
    if entries:
        top = max(score for _m, score in entries)
        if top > cursor:
            cursor, at_cursor = top, set()
        at_cursor = at_cursor | {m for m, score in entries if score == cursor}
    return list(dict.fromkeys(users)), cursor, at_cursor


def asked(users: list[str], placements: list[str], scores: list[float | None], since_ms: float) -> set[str]:
    """The users with a wanted mark (any placement) at or after ``since_ms``; ``scores`` as ZMSCORE
    answers for the members user-major, placement-minor."""
    n = len(placements)
    return {u for i, u in enumerate(users)
            if any(s is not None and float(s) >= since_ms for s in scores[i * n:(i + 1) * n])}


class UserCands:
    """Ranks and stores the pools of the users noted by the behavior owner step; one per worker."""

    def __init__(self, res: Resources) -> None:
        s = res.settings
        self.keys, self.redis = res.keys, res.redis
        self.rec = Ranker(res.redis, res.keys, candidates=s.recs.candidates,
                          factors=ItemFactors(res.redis, res.keys, s.recs.mf_items_refresh_s))
        self.write = res.redis.register_script(WRITE_LUA)
        self.placements = [p.strip() for p in s.recs.user_cands_placements.split(",") if p.strip()]
        self.ttl_ms = int(s.recs.user_cands_ttl_s * 1000)
        self.wanted_ms = s.recs.user_cands_wanted_s * 1000
        self.pending: dict[str, tuple[int, float]] = {}
        self.cursor = time.time() * 1000 - self.wanted_ms  # at start: the asks of the last wanted_s
        self.drain = res.redis.register_script(DRAIN_LUA)
        self.worker_id = uuid.uuid4().hex
        self.at_cursor: set[str] = set()

    def note(self, kept: list[Accepted]) -> None:
        note(self.pending, kept, time.monotonic())

    async def refresh(self, budget_s: float = 1.0) -> int:
        """One tick: take the wanted users (``take_wanted``), then rank them (``rank``)."""
        await self.take_wanted()
        return await self.rank(budget_s)

    async def take_wanted(self) -> None:
        """ONE pipeline over the wanted set: if this worker holds the drain lease (one worker of the
        group drains; ``DRAIN_LUA``), trim what is older than ``recs_user_cands_wanted_s`` and drain the
        members added since its last tick into ``pending`` (ranked at once, whatever their fence); and
        keep of the users noted from this worker's batches only those who asked recently (``ZMSCORE``)."""
        key = self.keys.recs_cands_wanted()
        now_ms = time.time() * 1000
        since = now_ms - self.wanted_ms
        noted = [u for u, (off, _t) in self.pending.items() if off >= 0]  # (drained users: off -1)
        pipe = self.redis.pipeline(transaction=False)
        await self.drain(keys=[key, self.keys.recs_cands_drain_lease()],
                         args=[self.worker_id, DRAIN_LEASE_MS, f"{since:.0f}", f"{max(self.cursor, since):.0f}",
                               DRAIN_MAX], client=pipe)
        members = [wanted_member(pl, u) for u in noted for pl in self.placements]
        if members:
            pipe.execute_command("ZMSCORE", key, *members)
        replies = await pipe.execute()
        users: list[str] = []
        flat = replies[0]
        if flat is not None:  # (None: another worker drains)
            entries = [(m, float(sc)) for m, sc in zip(flat[0::2], flat[1::2], strict=True)]
            users, self.cursor, self.at_cursor = drained(entries, self.cursor, self.at_cursor, self.placements)
        if members:
            keep = asked(noted, self.placements, replies[1], since)
            for u in noted:
                if u not in keep:
                    del self.pending[u]  # never asked (or not lately): no pool, no further cost
        for u in users:
            self.pending.setdefault(u, (-1, -math.inf))  # ranked at once from the state as it is

    async def rank(self, budget_s: float = 1.0) -> int:
        """Rank the pending users that are ready, a chunk at a time, within about ``budget_s``."""
        done, t0 = 0, time.monotonic()
        users = list(self.pending)
        for start in range(0, len(users), CHUNK):
            done += await self.refresh_chunk(users[start:start + CHUNK])
            if time.monotonic() - t0 >= budget_s:
                break
        return done

    async def refresh_chunk(self, users: list[str]) -> int:
        """Three round trips for up to ``CHUNK`` users: fences and state, kNN scripts, fenced writes."""
        rec = self.rec
        await rec.prepare(self.placements)  # the batch lists per placement, the MF item factors
        reqs = {pl: [Request(u, placement=pl, limit=CANDS_LIMIT) for u in users] for pl in self.placements}
        pipe = self.redis.pipeline(transaction=False)
        for u in users:  # the fence first: a state read after it is at least as new
            pipe.execute_command("HGET", self.keys.recs_user_state(u), "_off")
        layout: list[tuple[str, int, int]] = []  # placement, first global command, commands per user
        for pl, rs in reqs.items():
            cmds = rec.first_commands(rs[0])
            layout.append((pl, len(cmds) - 7, 6))
            for cmd in [cmds[0], *cmds[7:]]:  # placement, trending, popular: once per placement
                pipe.execute_command(*cmd)
            for r in rs:
                for cmd in rec.first_commands(r)[1:7]:
                    pipe.execute_command(*cmd)
        raw = await pipe.execute()
        fences = {u: (int(v) if v is not None else None) for u, v in zip(users, raw[:len(users)], strict=True)}
        now = time.monotonic()
        ok = set(ready(self.pending, fences, now))
        pos = len(users)
        plans = []
        for pl, n_global, per_user in layout:
            glob = raw[pos:pos + 1 + n_global]
            pos += 1 + n_global
            for r in reqs[pl]:
                mine = raw[pos:pos + per_user]
                pos += per_user
                if r.user_id in ok:
                    plans.append(rec.plan(r, [glob[0], *mine, *glob[1:]]))
        if not plans:
            return 0
        pipe = self.redis.pipeline(transaction=False)
        for p in plans:
            rec.queue_second(pipe, p)
        replies = await pipe.execute() if len(pipe) else []
        pipe = self.redis.pipeline(transaction=False)
        pos = 0
        wall_ms = int(time.time() * 1000)
        for m, p in enumerate(plans):
            if m and m % YIELD_EVERY == 0:
                await asyncio.sleep(0)  # the worker's loop is shared with the behavior agent: let it run
            n = rec.queued_replies(p)
            rec.absorb_queued(p, replies[pos:pos + n])
            pos += n
            record = pool_record(rec.choose(p), SOURCES)
            uid = p.req.user_id or ""
            key = self.keys.recs_user_cands(uid, p.req.placement)
            if record is None:  # an id with the separator: served by the full ranking
                pipe.delete(key)
                continue
            fence = fences[uid]
            args: list[Any] = [-1 if fence is None else fence, wall_ms, self.ttl_ms]
            for name, value in record.items():
                args += [name, value]
            await self.write(keys=[key, self.keys.recs_user_state(uid)], args=args, client=pipe)
        await pipe.execute()
        for u in ok:  # a batch noted meanwhile (higher offset) stays pending
            want = self.pending.get(u)
            fence = fences[u]
            if want is not None and (fence is None or want[0] <= fence or now - want[1] >= WAIT_MAX_S):
                del self.pending[u]
        return len(ok)

    async def refresh_safely(self) -> None:
        try:
            await self.refresh()
        except Exception:  # noqa: BLE001 - a timer must survive a slow Redis; users stay pending
            log.exception("ranking user candidate pools failed; retried on the next tick")


def register(app: Any, res: Resources) -> list[Owner]:
    """What streams/app.py adds to the behavior fan-out: the owner step that notes users, and the timer
    that takes the wanted users and ranks their pools; nothing when ``recs_user_cands`` is off."""
    s = res.settings
    if not s.recs.user_cands:
        return []
    cands = UserCands(res)

    async def note_user_cands(b: Batch) -> None:
        cands.note(b.kept)

    @app.timer(interval=max(0.05, s.recs.user_cands_interval_s))
    async def rank_user_cands() -> None:
        await cands.refresh_safely()

    return [("user candidates", note_user_cands)]

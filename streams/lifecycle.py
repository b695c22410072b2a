"""The idle-user sweep: users who send no events reach the lifecycle stages at-risk and churned, and
their segment memberships are re-evaluated as of now.

Owns no key of its own beyond the sweep lease (``RedisKeys.lifecycle_sweep_lease``); it writes the
profile state (``user_state``, aura/state/profile_codec.py) through the version compare-and-set of
streams/profiles.py, and the segment sets and Cassandra rows through its ``ProfileStore``.

The fold only sees events, so it cannot notice that a user stopped sending them. Every
``AURA_LIFECYCLE_SWEEP_INTERVAL_S`` one worker of the group (whoever takes the lease) scans the
profile keys in batches (``SCAN MATCH`` + one pipeline of reads per batch + one pipeline of
compare-and-set writes; no index, so it costs no memory per user; under Redis Cluster the scan runs
per primary). For a user idle beyond ``AURA_LIFECYCLE_AT_RISK_DAYS`` (or ``..._CHURN_DAYS``) it sets
the profile's ``idle`` stage and re-evaluates the segments as of now (stage at-risk/churned,
engagement decayed to now), then reconciles the segment sets and copies the state to Cassandra.
Idempotent: a second pass over the same users changes nothing. A concurrent fold wins the
compare-and-set (its event clears ``idle``); the user is looked at again by the next sweep.

Segment backfills use the same scan: when a segment is created, changed or deleted through the API
(serving/routes/segments.py), the API queues a backfill (``segment_backfill_queue``); every
``AURA_SEGMENT_BACKFILL_INTERVAL_S`` one worker (a lease) takes the rules in force and re-evaluates
every profile's segments (as of its last event, or as of now for an idle user, as the fold and the
sweep do), writing the users whose segments change, and records its progress per segment in
``segment_backfill`` (scanned, changed, state pending -> running -> done). A request made while a
backfill runs stays queued and runs again, with the newer rules. When a rule tests identity
attributes, every pass reads the attributes it tests with the states (same pipeline), and the
backfill also scans the identity hashes for users known only by identity events (no behavior yet):
one who matches a segment gets a profile state holding its segments.

``resegment_users``: the identity agent's re-evaluation of the users whose attributes changed
(streams/identity.py), with the same compare-and-set and retries as the fold.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any

import faust

from aura.state import segments as segment_rules
from aura.state.profile_codec import next_version
from aura.state.profiles import Profile, ProfileConfig, idle_stage, segment_view
from streams.profiles import ProfileStore, lua_args
from streams.runtime import Owner, Resources, transient
from streams.segments import LiveRules

log = logging.getLogger(__name__)
BACKFILL_LEASE_MS = 60_000  # renewed after every batch of the scan


@dataclass
class SweepResult:
    scanned: int = 0
    changed: int = 0
    conflicts: int = 0


def sweep_user(p: Profile, now_ms: int, cfg: ProfileConfig, attrs: dict[str, Any] | None = None) -> bool:
    """Set ``p``'s idle stage and segments as of ``now_ms``; True when anything changed (pure)."""
    stage = idle_stage(p, now_ms, cfg)
    if not stage and not p.idle:
        return False
    before = (p.idle, list(p.segments))
    p.idle = stage
    p.segments = segment_rules.evaluate(cfg.rules, segment_view(p, cfg, now_ms if stage else None, attrs))
    return (p.idle, p.segments) != before


def _escape_glob(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def resegment(p: Profile, now_ms: int, cfg: ProfileConfig, attrs: dict[str, Any] | None = None) -> bool:
    """Re-evaluate ``p``'s segments with the rules of ``cfg`` (as of the last event; as of now for an
    idle user) and the user's identity ``attrs``; True when they changed (pure)."""
    before = list(p.segments)
    p.segments = segment_rules.evaluate(cfg.rules, segment_view(p, cfg, now_ms if p.idle else None, attrs))
    return p.segments != before


Visit = Callable[[Profile, int, ProfileConfig, dict[str, Any] | None], bool]


async def sweep(store: ProfileStore, now_ms: int, batch: int = 1000, dry_run: bool = False,
                visit: Visit = sweep_user,
                progress: Callable[[SweepResult], Awaitable[None]] | None = None,
                identity_only: bool = False, result: SweepResult | None = None,
                origin: str = "sweep") -> SweepResult:
    """One pass over every profile in Redis (see the module doc); returns what it did (with
    ``dry_run``: what it would do, writing nothing; ``changed`` counts the users it would move).
    ``visit`` changes one profile (default: the idle stage); ``progress`` is told after each batch.
    ``identity_only``: scan the identity hashes instead and visit only the users without a state
    (an empty profile, written when ``visit`` changes it); ``result`` continues an earlier count."""
    redis, keys, cfg = store.redis, store.keys, store.cfg
    if identity_only:
        head, tail = keys.user_attrs("").split("{}")  # "<prefix>:user:{<user>}:attrs"
        head, tail = head + "{", "}" + tail
    else:
        head, tail = keys.user_state("")[:-1], "}"  # "<prefix>:u:{<user>}"
    pattern = _escape_glob(head) + "*" + _escape_glob(tail)
    result = result if result is not None else SweepResult()
    pending: list[str] = []

    async def flush(names: list[str]) -> None:
        users = list(dict.fromkeys(n[len(head):-len(tail)] for n in names))
        states, attrs = await store.read_with_attrs(users)
        result.scanned += len(users)
        pipe = redis.pipeline(transaction=False)
        order: list[str] = []
        for u in users:
            p = states[u]
            if bool(p.version) == identity_only:  # deleted between SCAN and GET; or has a state (seen)
                continue
            expected = p.version or None
            if not visit(p, now_ms, cfg, attrs.get(u)):
                continue
            if dry_run:
                result.changed += 1
                continue
            p.version = next_version(p.version)
            order.append(u)
            await store.apply_script(keys=[keys.user_state(u)], args=lua_args(expected, p), client=pipe)
        if not order:
            if progress is not None:
                await progress(result)
            return
        done = {u: states[u] for u, ok in zip(order, await pipe.execute(), strict=True) if ok}
        result.conflicts += len(order) - len(done)
        result.changed += len(done)
        if done:
            await store.segments.reconcile(done, set(), origin=origin)
            await store.write_durable(done)
        if progress is not None:
            await progress(result)

    async for name in redis.scan_iter(match=pattern, count=batch):
        pending.append(name)
        if len(pending) >= batch:
            await flush(pending)
            pending = []
    if pending:
        await flush(pending)
    return result


async def resegment_users(store: ProfileStore, users: Collection[str], replayed: Collection[str] = (),
                          attempts: int = 8) -> int:
    """Re-evaluate the segments of ``users`` now (their identity attributes changed): one pipeline
    reads their states and the attributes the rules test, one pipeline of compare-and-set writes the
    ones whose segments change (a user without a state gets one when it joins a segment), a conflict
    (a concurrent fold or merge) re-reads and retries; then the member sets are reconciled. Users in
    ``replayed`` (their change was applied by an earlier attempt, which may have stopped before this)
    have their whole membership rewritten, absolute: ``HISTORY_LUA`` counts no change twice.
    Returns the number of users whose segments changed."""
    keys, pending, now_ms = store.keys, sorted(set(users)), int(time.time() * 1000)
    changed: dict[str, Profile] = {}
    before: dict[str, list[str]] = {}
    settled: dict[str, Profile] = {}
    for _attempt in range(attempts):
        if not pending:
            break
        states, attrs = await store.read_with_attrs(pending)
        pipe = store.redis.pipeline(transaction=False)
        order: list[str] = []
        for u in pending:
            p = states[u]
            before[u] = list(p.segments)
            expected = p.version or None
            if not resegment(p, now_ms, store.cfg, attrs.get(u)):
                if p.version:
                    settled[u] = p
                continue
            p.version = next_version(p.version)
            order.append(u)
            await store.apply_script(keys=[keys.user_state(u)], args=lua_args(expected, p), client=pipe)
        results = await pipe.execute() if order else []
        for u, ok in zip(order, results, strict=True):
            if ok:
                changed[u] = settled[u] = states[u]
        pending = [u for u, ok in zip(order, results, strict=True) if not ok]
    else:
        if pending:
            raise RuntimeError(f"profile version conflicts did not settle for {len(pending)} users")
    await store.segments.reconcile(settled, set(), before=before, full=set(replayed) & set(settled))
    if changed:
        await store.write_durable(changed)
    return len(changed)


async def run_backfills(store: ProfileStore, res: Resources, token: str, batch: int) -> SweepResult | None:
    """Run the asked-for segment backfills (all at once: one scan re-evaluates every segment) if this
    worker gets the lease; None when there was nothing to do or another worker runs them."""
    redis, keys = res.redis, res.keys
    asked = await redis.zrange(keys.segment_backfill_queue(), 0, -1)
    if not asked:
        return None
    lease = keys.segment_backfill_lease()
    if not await redis.set(lease, token, nx=True, px=BACKFILL_LEASE_MS):
        return None
    try:
        ver = await store.sync_rules()  # the rules in force, at least as new as every request queued so far
        started = int(time.time() * 1000)
        pipe = redis.pipeline(transaction=False)
        for name in asked:
            pipe.hset(keys.segment_backfill(name), mapping={"state": "running", "started_at": started,
                                                            "scanned": 0, "changed": 0, "ran_version": ver or ""})
        await pipe.execute()

        async def progress(r: SweepResult) -> None:
            p = redis.pipeline(transaction=False)
            for name in asked:
                p.hset(keys.segment_backfill(name), mapping={"scanned": r.scanned, "changed": r.changed})
            p.pexpire(lease, BACKFILL_LEASE_MS)
            await p.execute()

        result = await sweep(store, started, batch, visit=resegment, progress=progress, origin="backfill")
        if segment_rules.uses_attributes(store.cfg.rules):  # users known by identity events only
            result = await sweep(store, started, batch, visit=resegment, progress=progress,
                                 identity_only=True, result=result, origin="backfill")
        finished = int(time.time() * 1000)
        pipe = redis.pipeline(transaction=False)
        for name in asked:
            pipe.hget(keys.segment_backfill(name), "version")
        for name in asked:
            pipe.scard(keys.segment_members(name))
        got = await pipe.execute()
        requested, members = got[:len(asked)], got[len(asked):]
        pipe = redis.pipeline(transaction=False)
        for name, want, n in zip(asked, requested, members, strict=True):
            fresh = ver is not None and want is not None and int(want) <= int(ver)
            pipe.hset(keys.segment_backfill(name), mapping={
                "state": "done" if fresh else "pending", "finished_at": finished, "scanned": result.scanned,
                "changed": result.changed, "members": n})
            if fresh:  # asked again meanwhile (a newer version): stays queued, runs again
                pipe.zrem(keys.segment_backfill_queue(), name)
        await pipe.execute()
        log.info("segment backfill of %s: %d profiles scanned, %d changed, %d conflicts",
                 ", ".join(asked), result.scanned, result.changed, result.conflicts)
        return result
    finally:
        await redis.delete(lease)


def register(app: faust.App, res: Resources) -> list[Owner]:
    """The periodic sweep in the worker: one worker of the group per interval (a Redis lease). It
    feeds no owner of the behavior agent."""
    s = res.settings
    cfg = ProfileConfig.from_settings(s)
    store = ProfileStore(res.redis, res.session, res.keys, cfg)
    store.live = LiveRules(cfg.rules, res.redis, res.keys, res.session)
    token = uuid.uuid4().hex

    if s.profiles.segment_backfill_interval_s > 0:
        @app.timer(interval=s.profiles.segment_backfill_interval_s, name="backfill_segments")
        async def backfill_segments() -> None:
            try:
                await run_backfills(store, res, token, s.profiles.lifecycle_sweep_batch)
            except Exception as exc:
                if not transient(exc):
                    raise
                # a store that cannot answer now (Redis restarting, loading): the next tick asks again
                log.warning("segment backfills skipped this tick (%s: %s)", type(exc).__name__, exc)

    if s.profiles.lifecycle_sweep_interval_s <= 0:
        return []

    @app.timer(interval=s.profiles.lifecycle_sweep_interval_s, name="sweep_idle_users")
    async def sweep_idle_users() -> None:
        lease_ms = max(int(s.profiles.lifecycle_sweep_interval_s * 900), 1000)
        t0 = time.monotonic()
        try:
            if not await res.redis.set(res.keys.lifecycle_sweep_lease(), token, nx=True, px=lease_ms):
                return
            await store.sync_rules()
            r = await sweep(store, int(time.time() * 1000), s.profiles.lifecycle_sweep_batch)
        except Exception as exc:
            if not transient(exc):
                raise
            log.warning("idle sweep skipped until its next interval (%s: %s)", type(exc).__name__, exc)
            return
        log.info("idle sweep: %d profiles scanned, %d moved, %d conflicts, %.1f s",
                 r.scanned, r.changed, r.conflicts, time.monotonic() - t0)

    return []

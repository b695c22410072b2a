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
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass

import faust

from aura.state import segments as segment_rules
from aura.state.profile_codec import next_version
from aura.state.profiles import Profile, ProfileConfig, segment_view
from streams.profiles import ProfileStore, lua_args
from streams.runtime import Owner, Resources

log = logging.getLogger(__name__)


@dataclass
class SweepResult:
    scanned: int = 0
    changed: int = 0
    conflicts: int = 0


def idle_stage(p: Profile, now_ms: int, cfg: ProfileConfig) -> str:
    """"churned", "at-risk" or "" (not idle) for ``p`` as of ``now_ms``."""
    if p.last_seen is None:
        return ""
    idle = now_ms - p.last_seen
    if idle > cfg.churn_ms:
        return "churned"
    if idle > cfg.at_risk_ms:
        return "at-risk"
    return ""


def sweep_user(p: Profile, now_ms: int, cfg: ProfileConfig) -> bool:
    """Set ``p``'s idle stage and segments as of ``now_ms``; True when anything changed (pure)."""
    stage = idle_stage(p, now_ms, cfg)
    if not stage and not p.idle:
        return False
    before = (p.idle, list(p.segments))
    p.idle = stage
    p.segments = segment_rules.evaluate(cfg.rules, segment_view(p, cfg, now_ms if stage else None))
    return (p.idle, p.segments) != before


def _escape_glob(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


async def sweep(store: ProfileStore, now_ms: int, batch: int = 1000, dry_run: bool = False) -> SweepResult:
    """One pass over every profile in Redis (see the module doc); returns what it did (with
    ``dry_run``: what it would do, writing nothing; ``changed`` counts the users it would move)."""
    redis, keys, cfg = store.redis, store.keys, store.cfg
    head = keys.user_state("")[:-2]  # "<prefix>:u:" (the key is "<prefix>:u:{<user>}")
    pattern = _escape_glob(head) + "{*}"
    result = SweepResult()
    pending: list[str] = []

    async def flush(names: list[str]) -> None:
        users = [n[len(head) + 1:-1] for n in names]
        states = await store.read(users)
        result.scanned += len(users)
        pipe = redis.pipeline(transaction=False)
        order: list[str] = []
        for u in users:
            p = states[u]
            if not p.version:  # deleted between SCAN and GET (erase, merge)
                continue
            expected = p.version
            if not sweep_user(p, now_ms, cfg):
                continue
            if dry_run:
                result.changed += 1
                continue
            p.version = next_version(p.version)
            order.append(u)
            await store.apply_script(keys=[keys.user_state(u)], args=lua_args(expected, p), client=pipe)
        if not order:
            return
        done = {u: states[u] for u, ok in zip(order, await pipe.execute(), strict=True) if ok}
        result.conflicts += len(order) - len(done)
        result.changed += len(done)
        if done:
            await store.segments.reconcile(done, set())
            await store.write_durable(done)

    async for name in redis.scan_iter(match=pattern, count=batch):
        pending.append(name)
        if len(pending) >= batch:
            await flush(pending)
            pending = []
    if pending:
        await flush(pending)
    return result


def register(app: faust.App, res: Resources) -> list[Owner]:
    """The periodic sweep in the worker: one worker of the group per interval (a Redis lease). It
    feeds no owner of the behavior agent."""
    s = res.settings
    if s.profiles.lifecycle_sweep_interval_s <= 0:
        return []
    store = ProfileStore(res.redis, res.session, res.keys, ProfileConfig.from_settings(s))
    token = uuid.uuid4().hex

    @app.timer(interval=s.profiles.lifecycle_sweep_interval_s, name="sweep_idle_users")
    async def sweep_idle_users() -> None:
        lease_ms = max(int(s.profiles.lifecycle_sweep_interval_s * 900), 1000)
        if not await res.redis.set(res.keys.lifecycle_sweep_lease(), token, nx=True, px=lease_ms):
            return
        t0 = time.monotonic()
        r = await sweep(store, int(time.time() * 1000), s.profiles.lifecycle_sweep_batch)
        log.info("idle sweep: %d profiles scanned, %d moved, %d conflicts, %.1f s",
                 r.scanned, r.changed, r.conflicts, time.monotonic() - t0)

    return []

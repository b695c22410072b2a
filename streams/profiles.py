"""The writer of user profiles: the profile fold and the stores it writes through.

Owner of the per-user Redis key ``user_state`` (its format: aura/state/profile_codec.py), of the
segment member sets (via streams/segments.py) and of the Cassandra tables ``user_activity`` and
``user_profile``. What a profile means (model, decay, engagement, lifecycle) is in
aura/state/profiles.py, shared with the API; this module only changes profiles.

Exactly-once effects from at-least-once delivery: each user's state carries, per source partition,
the last Kafka offset folded into it. Per batch: one pipeline reads every touched user's state; the
pure ``fold_user`` applies the events above the fences in offset order (the same function the
reference recomputation in the tests uses); one pipeline writes each user's new absolute state with a
compare-and-set Lua script on the version (a concurrent writer makes it retry); then segment sets and
the Cassandra copies follow with absolute values. Replays of an already folded batch change nothing
and re-copy the same absolute values.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aura.keys import RedisKeys
from aura.layout import Tables
from aura.state import profile_search
from aura.state import segments as segment_rules
from aura.state.profile_codec import durable_doc, next_version, pack, queue_read, unpack, version_head
from aura.state.profiles import (
    ItemAttrs,
    ItemLookup,
    Profile,
    ProfileConfig,
    add_decayed,
    decay,
    f32,
    price_band,
    segment_view,
    session_key,
)
from streams.durable import execute_grouped
from streams.intake import Accepted
from streams.segments import LiveRules, SegmentStore

# Actions whose item goes into the user's recent items.
RECENT_ACTIONS = frozenset({"view", "click", "add_to_cart", "purchase", "rating", "recommendation_click"})
# Engagement points per action (before decay); see docs/state.md.
ENGAGEMENT_POINTS = {
    "view": 1.0, "click": 2.0, "recommendation_click": 2.0, "add_to_cart": 4.0, "purchase": 10.0, "rating": 3.0,
    "search": 1.0, "message_open": 1.0, "message_click": 2.0, "custom": 1.0,
}
# Implicit affinity weight per action (ratings: value - 3).
AFFINITY_WEIGHTS = {"view": 1.0, "click": 2.0, "recommendation_click": 2.0, "add_to_cart": 3.0, "purchase": 5.0}
AFFINITY_MAX = 32  # affinity keys kept per user (the smallest weights are dropped)
JOURNEY_MAX = 6  # steps of a session path that are tracked


@dataclass(frozen=True, slots=True)
class Fact:
    """What the profile fold learned about one event that analytics needs (user context)."""

    acc: Accepted
    session_start: int
    journey: tuple[str, str] | None = None  # (previous path or "", new path) of the event's session
    attributed: tuple[str, str, str, str] | None = None  # (recommendation_id, experiment, variant, placement)
    category: str | None = None  # the event item's catalog category (minute aggregates per category)


# ---------------------------------------------------------------------------------------------
# The fold (pure)


def _step(ev: Any) -> str | None:
    ctx = ev.raw.get("context") or {}
    return ev.placement or ctx.get("page")


def fold_user(p: Profile, events: Iterable[Accepted], cfg: ProfileConfig, items: ItemLookup,
              attrs: dict[str, Any] | None = None) -> list[Fact]:
    """Fold ``events`` (one user's, any order) above ``p.fences`` into ``p``; returns facts per folded
    event. ``attrs``: the user's identity attributes the segment rules test (``read_with_attrs``)."""
    facts: list[Fact] = []
    for acc in sorted(events, key=lambda a: (a.partition, a.offset)):
        if acc.offset <= p.fences.get(acc.partition, -1):
            continue
        ev = acc.event
        t = ev.event_time
        raw = ev.raw
        p.fences[acc.partition] = acc.offset
        p.idle = ""
        p.counts[ev.event_type] = p.counts.get(ev.event_type, 0) + 1
        prev_last = p.last_seen
        p.first_seen = t if p.first_seen is None else min(p.first_seen, t)
        p.last_seen = t if prev_last is None else max(prev_last, t)
        # lifecycle (event time)
        if prev_last is None:
            p.stage, p.stage_at = "new", t
        elif t - prev_last > cfg.churn_ms:
            p.stage, p.stage_at = "reactivated", t
        elif p.stage in ("new", "reactivated") and t - p.stage_at > cfg.new_ms:
            p.stage, p.stage_at = "active", t
        # sessions: a new session id, or a gap of inactivity when the client sends none
        sid = session_key((raw.get("context") or {}).get("session_id") or "")
        if prev_last is None or (sid and sid != p.session_id) or (not sid and t - prev_last > cfg.session_gap_ms):
            p.sessions += 1
            p.session_id = sid or f"g{t}"
            p.session_start = t
            p.path = []
        journey = None
        step = _step(ev)
        if step and (not p.path or p.path[-1] != step) and len(p.path) < JOURNEY_MAX:
            before = ">".join(p.path)
            p.path.append(step)
            journey = (before, ">".join(p.path))
        # recent items
        if ev.event_type in RECENT_ACTIONS and ev.item_id:
            if ev.item_id in p.recent:
                p.recent.remove(ev.item_id)
            p.recent.insert(0, ev.item_id)
            del p.recent[cfg.recent_max:]
        # engagement
        pts = ENGAGEMENT_POINTS.get(ev.event_type, 0.0)
        if pts:
            p.eng, p.eng_t = add_decayed(p.eng, p.eng_t, pts, t, cfg.engagement_half_life_ms)
            p.eng = f32(p.eng)
        # implicit affinities
        _learn_affinity(p, ev, cfg, items)
        # orders, lifetime value, attribution
        attributed = None
        if ev.event_type == "recommendation_click":
            p.last_rec = "|".join([str(t), raw.get("recommendation_id") or "", raw.get("experiment_id") or "",
                                   raw.get("variant_id") or "", ev.placement or ""])
        elif ev.event_type == "purchase":
            p.orders += 1
            p.ltv = round(p.ltv + ev.revenue, 6)
            if p.last_rec:
                rt, rec, exp, var, pl = p.last_rec.split("|")
                if 0 <= t - int(rt) <= cfg.attribution_window_ms:
                    attributed = (rec, exp, var, pl)
        category = (items(ev.item_id) or ItemAttrs()).category if ev.item_id else None
        facts.append(Fact(acc, p.session_start, journey, attributed, category))
    if facts:
        p.segments = segment_rules.evaluate(cfg.rules, segment_view(p, cfg, attrs=attrs))
    return facts


def _learn_affinity(p: Profile, ev: Any, cfg: ProfileConfig, items: ItemLookup) -> None:
    if ev.event_type == "rating" and ev.value is not None:
        w = float(ev.value) - 3.0
    else:
        w = AFFINITY_WEIGHTS.get(ev.event_type, 0.0)
    if not w or not ev.item_id:
        return
    attrs = items(ev.item_id) or ItemAttrs()
    price = attrs.price
    if price is None and ev.event_type == "purchase":
        for line in (ev.raw.get("order") or {}).get("lines") or ():
            if line.get("item_id") == ev.item_id:
                price = line.get("unit_price")
    dims = []
    if attrs.category:
        dims.append(f"category:{attrs.category}")
    if attrs.brand:
        dims.append(f"brand:{attrs.brand}")
    if price is not None:
        dims.append(f"price:{price_band(float(price), cfg.price_bands)}")
    if not dims:
        return
    t = ev.event_time
    if t > p.aff_t:
        for k in p.aff:
            p.aff[k] = decay(p.aff[k], p.aff_t, t, cfg.affinity_half_life_ms)
        p.aff_t = t
        scale = 1.0
    else:
        scale = decay(1.0, t, p.aff_t, cfg.affinity_half_life_ms)
    for d in dims:
        p.aff[d] = p.aff.get(d, 0.0) + w * scale
    for k in p.aff:  # float32: 4 bytes in Redis, and the same whatever the batching
        p.aff[k] = f32(p.aff[k])
    if len(p.aff) > AFFINITY_MAX:
        for k in sorted(p.aff, key=lambda k: (abs(p.aff[k]), k))[: len(p.aff) - AFFINITY_MAX]:
            del p.aff[k]


# ---------------------------------------------------------------------------------------------
# The compare-and-set write of a profile (every writer of ``user_state``: this module,
# streams/identity.py, streams/lifecycle.py)


# One compare-and-set per user and batch: the stored string starts with its 4-byte version; a
# concurrent writer (a merge, a worker that has not noticed a rebalance yet, the idle sweep) changed
# it and the caller re-reads and re-folds. ARGV[1]: the expected head ("" = no state yet).
APPLY_LUA = """
if redis.call('GETRANGE', KEYS[1], 0, 3) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
return 1
"""


def lua_args(expected: int | None, p: Profile) -> list[Any]:
    """ARGV of APPLY_LUA: the expected version head, the new stored state (``p.version`` is its version)."""
    return [version_head(expected), pack(p)]


# ---------------------------------------------------------------------------------------------
# The store


class ProfileStore:
    """Reads and writes profiles in Redis and Cassandra.

    Its Cassandra rows are written at once (the identity merge, the idle sweep); the behavior
    owner's ``BufferedProfileStore`` (streams/profiles_owner.py) hands them to the write-behind."""

    owner = "profiles"
    # where the segment member rows of ``apply`` go: None, written at once; else a write-behind's sink
    segment_buffer: Callable[[dict[tuple[str, str], bool]], None] | None = None
    # (partition, offset) -> whether that event is refolded after Redis lost its effects (the
    # worker's redis-loss guard): its users' segment rows are written whole, as on a replay, because
    # Cassandra may hold memberships of the lost timeline that no difference from Redis would undo
    refolded: Callable[[int, int], bool] | None = None

    def __init__(self, redis: Any, session: Any, keys: RedisKeys, cfg: ProfileConfig) -> None:
        self.redis = redis
        self.session = session
        self.keys = keys
        self.cfg = cfg
        self.apply_script = redis.register_script(APPLY_LUA)
        self.upsert_activity = session.prepare(
            f"INSERT INTO {Tables.USER_ACTIVITY} (user_id, counts, first_seen, last_seen, recent_items, "
            "applied_offset, updated_at) VALUES (?, ?, ?, ?, ?, ?, toTimestamp(now()))"
        )
        self.upsert_profile = session.prepare(
            f"INSERT INTO {Tables.USER_PROFILE} (user_id, doc, version, updated_at) "
            "VALUES (?, ?, ?, toTimestamp(now()))"
        )
        self.upsert_search = session.prepare(profile_search.profile_cql())
        self.segments = SegmentStore(redis, session, keys, list(cfg.rules))
        self.live: LiveRules | None = None  # when set, the rules in force are re-read per batch

    async def sync_rules(self) -> str | None:
        """Take the segment rules in force (``live``) before a batch; returns their config version."""
        if self.live is None:
            return None
        rules, ver = await self.live.current()
        if rules is not self.cfg.rules:
            self.cfg = dataclasses.replace(self.cfg, rules=rules)
            self.segments.names = sorted(rules)
        return ver

    async def read(self, users: list[str]) -> dict[str, Profile]:
        pipe = self.redis.pipeline(transaction=False)
        for u in users:
            queue_read(pipe, self.keys, u)
        return {u: unpack(raw) for u, raw in zip(users, await pipe.execute(), strict=True)}

    async def read_with_attrs(self, users: list[str]) -> tuple[dict[str, Profile], dict[str, dict[str, Any]]]:
        """The states of ``users`` and, when a segment rule in force tests identity attributes, the
        attributes it tests (HMGET, in the same pipeline: one round trip); else no attributes."""
        names = segment_rules.attribute_names(self.cfg.rules)
        if not names:
            return await self.read(users), {}
        fields = [f"x:{n}" for n in names]
        pipe = self.redis.pipeline(transaction=False)
        for u in users:
            queue_read(pipe, self.keys, u)
            pipe.hmget(self.keys.user_attrs(u), fields)
        got = await pipe.execute()
        return ({u: unpack(got[2 * i]) for i, u in enumerate(users)},
                {u: segment_rules.attributes_view(names, got[2 * i + 1]) for i, u in enumerate(users)})

    async def apply(self, events: list[Accepted], items: ItemLookup,
                    before_commit: Callable[[list[Fact]], Awaitable[Any]] | None = None,
                    ) -> tuple[dict[str, Profile], list[Fact]]:
        """Fold ``events`` into state exactly once; returns every touched user's state and the new facts.

        ``before_commit`` receives the facts of each attempt before the profiles are written: the
        analytics counters (fenced per partition) are applied first, so a partition's analytics fence
        is never behind the fences of its users, and a replay recomputes the same facts.
        """
        await self.sync_rules()
        by_user: dict[str, list[Accepted]] = {}
        for a in events:
            by_user.setdefault(a.event.user_id, []).append(a)
        pending = sorted(by_user)
        states: dict[str, Profile] = {}
        facts: list[Fact] = []
        seg_before: dict[str, list[str]] = {}  # the segments each user's fold started from
        replayed: set[str] = set()  # an earlier attempt at some of their events may have stopped before its reconcile
        for _attempt in range(8):
            if not pending:
                break
            current, attrs = await self.read_with_attrs(pending)  # attrs re-read with the state per attempt
            pipe = self.redis.pipeline(transaction=False)
            order: list[str] = []
            new_facts: dict[str, list[Fact]] = {}
            for u in pending:
                p = current[u]
                seg_before[u] = list(p.segments)
                if any(a.offset <= p.fences.get(a.partition, -1) for a in by_user[u]) or (
                        self.refolded is not None and any(self.refolded(a.partition, a.offset) for a in by_user[u])):
                    replayed.add(u)
                expected = p.version if p.version else None
                f = fold_user(p, by_user[u], self.cfg, items, attrs.get(u))
                states[u] = p
                if not f:
                    continue
                p.version = next_version(p.version)
                new_facts[u] = f
                order.append(u)
                await self.apply_script(keys=[self.keys.user_state(u)], args=lua_args(expected, p), client=pipe)
            if before_commit is not None and new_facts:
                await before_commit([f for u in order for f in new_facts[u]])
            results = await pipe.execute() if order else []
            conflicts = [u for u, ok in zip(order, results, strict=True) if not ok]
            for u, ok in zip(order, results, strict=True):
                if ok:
                    facts.extend(new_facts[u])
            pending = conflicts
        else:
            raise RuntimeError(f"profile version conflicts did not settle for {len(pending)} users")
        # a user whose segments equal those of ``seg_before`` writes nothing (an empty difference)
        await asyncio.gather(self.segments.reconcile(states, set(), self.segment_buffer,
                                                     before=seg_before, full=replayed),
                             self.write_durable(states))
        return states, facts

    def durable_statements(self, states: dict[str, Profile]) -> list[Any]:
        """The Cassandra rows of ``states`` (absolute values), tagged with their partition: a user's
        activity and profile rows share ``("user", user_id)`` and are written as one mutation."""
        stmts: list[Any] = []
        ts = profile_search.now_us()
        for u, p in states.items():
            stmts.append((("user", u), self.upsert_search, profile_search.profile_params(u, p, ts)))
            stmts.append((("user", u), self.upsert_activity,
                          (u, p.counts, p.first_seen, p.last_seen, p.recent,
                           max(p.fences.values()) if p.fences else None)))
            stmts.append((("user", u), self.upsert_profile,
                          (u, json.dumps(durable_doc(p), separators=(",", ":")), p.version)))
        return stmts

    async def write_durable(self, states: dict[str, Profile]) -> None:
        """Copy the absolute state of ``states`` to Cassandra (idempotent upserts, one batch per user)."""
        if not states:
            return
        await execute_grouped(self.session, self.durable_statements(states))


class CatalogCache:
    """Item attributes for the affinity fold, read from the catalog agent's ``recs_item_meta`` hashes
    (streams/catalog.py) once per batch for the items not cached in-process in the last ``ttl_s``."""

    def __init__(self, redis: Any, keys: RedisKeys, ttl_s: float = 60.0, max_items: int = 200_000) -> None:
        self.redis = redis
        self.keys = keys
        self.ttl_ms = ttl_s * 1000
        self.max_items = max_items
        self.cache: dict[str, tuple[int, ItemAttrs | None]] = {}

    async def prefetch(self, item_ids: set[str], now_ms: int) -> None:
        missing = [i for i in item_ids if i not in self.cache or now_ms - self.cache[i][0] > self.ttl_ms]
        if not missing:
            return
        if len(self.cache) + len(missing) > self.max_items:
            self.cache.clear()
        pipe = self.redis.pipeline(transaction=False)
        for i in missing:
            pipe.hmget(self.keys.recs_item_meta(i), ["categories", "brand", "price", "deleted"])
        for i, (cats, brand, price, deleted) in zip(missing, await pipe.execute(), strict=True):
            attrs = None
            if cats is not None or brand or price:
                try:
                    first = (json.loads(cats or "[]") or [None])[0]
                except (ValueError, TypeError):
                    first = None
                attrs = ItemAttrs(category=first, brand=brand or None, price=float(price) if price else None)
            self.cache[i] = (now_ms, None if deleted == "1" else attrs)

    def get(self, item_id: str) -> ItemAttrs | None:
        hit = self.cache.get(item_id)
        return hit[1] if hit else None

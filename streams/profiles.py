"""User profiles: activity (counts per action, first/last seen, recent items), sessions, orders and
lifetime value, time-decayed engagement and implicit affinities, lifecycle stage and segments.

Owner of the per-user Redis keys ``user_counts`` (counts, first/last seen, fences ``_off:<p>``,
version ``_v``), ``user_recent`` (list) and ``user_profile`` (derived fields, affinities ``a:*``), of
the segment member sets (via streams/segments.py) and of the Cassandra tables ``user_activity``,
``user_profile`` and ``segment_members``.

Exactly-once effects from at-least-once delivery: each user's hash carries, per source partition,
the last Kafka offset folded into it (``_off:<partition>``). Per batch: one pipeline reads every
touched user's state; the pure ``fold_user`` applies the events above the fences in offset order
(the same function the reference recomputation in the tests uses); one pipeline writes each user's
new absolute state with a compare-and-set Lua script on the version ``_v`` (a concurrent writer makes
it retry); then segment sets and one concurrent Cassandra write copy absolute values. Replays of an
already folded batch change nothing and re-copy the same absolute values.
"""

from __future__ import annotations

import asyncio
import json
import math
from bisect import bisect_right
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aura.layout import APPLIED_OFFSET, FIRST_SEEN, LAST_SEEN, RedisKeys, Tables
from aura.settings import Settings
from streams import segments
from streams.intake import Accepted

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
DAY_MS = 24 * 3600 * 1000
VERSION = "_v"
FENCE = APPLIED_OFFSET + ":"  # field prefix: "_off:<partition>"


@dataclass(frozen=True)
class ProfileConfig:
    """The knobs of the profile fold, from settings."""

    recent_max: int = 50
    session_gap_ms: int = 1800 * 1000
    engagement_half_life_ms: float = 7 * DAY_MS
    engagement_scale: float = 20.0
    affinity_half_life_ms: float = 14 * DAY_MS
    price_bands: tuple[float, ...] = (25.0, 100.0, 250.0)
    new_ms: float = 7 * DAY_MS
    at_risk_ms: float = 14 * DAY_MS
    churn_ms: float = 30 * DAY_MS
    attribution_window_ms: int = 24 * 3600 * 1000
    rules: dict[str, list[list[Any]]] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, s: Settings) -> ProfileConfig:
        return cls(
            recent_max=s.recent_items_max, session_gap_ms=s.session_gap_s * 1000,
            engagement_half_life_ms=s.engagement_half_life_days * DAY_MS, engagement_scale=s.engagement_scale,
            affinity_half_life_ms=s.affinity_half_life_days * DAY_MS,
            price_bands=tuple(float(x) for x in s.price_bands.split(",") if x.strip()),
            new_ms=s.lifecycle_new_days * DAY_MS, at_risk_ms=s.lifecycle_at_risk_days * DAY_MS,
            churn_ms=s.lifecycle_churn_days * DAY_MS, attribution_window_ms=s.attribution_window_s * 1000,
            rules=segments.parse_rules(s.segment_rules),
        )


@dataclass(frozen=True, slots=True)
class ItemAttrs:
    """What the profile fold needs of a catalog item."""

    category: str | None = None
    brand: str | None = None
    price: float | None = None


ItemLookup = Callable[[str], ItemAttrs | None]


@dataclass
class Profile:
    """One user's folded state (plain data; stored as three Redis keys)."""

    counts: dict[str, int] = field(default_factory=dict)
    first_seen: int | None = None
    last_seen: int | None = None
    recent: list[str] = field(default_factory=list)  # newest first
    fences: dict[int, int] = field(default_factory=dict)  # partition -> last folded offset
    version: int = 0
    sessions: int = 0
    session_id: str = ""
    session_start: int = 0
    path: list[str] = field(default_factory=list)
    orders: int = 0
    ltv: float = 0.0
    eng: float = 0.0  # decayed engagement points as of eng_t
    eng_t: int = 0
    aff: dict[str, float] = field(default_factory=dict)  # "category:x" / "brand:y" / "price:band" -> weight
    aff_t: int = 0
    stage: str = ""
    stage_at: int = 0
    last_rec: str = ""  # "t|recommendation_id|experiment_id|variant_id|placement" of the last rec click
    segments: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Fact:
    """What the profile fold learned about one event that analytics needs (user context)."""

    acc: Accepted
    session_start: int
    journey: tuple[str, str] | None = None  # (previous path or "", new path) of the event's session
    attributed: tuple[str, str, str, str] | None = None  # (recommendation_id, experiment, variant, placement)


# ---------------------------------------------------------------------------------------------
# Pure math


def sig6(v: float) -> float:
    return float(f"{v:.6g}")


def decay(value: float, from_t: int, to_t: int, half_life_ms: float) -> float:
    """``value`` observed at ``from_t`` as seen at ``to_t`` (exponential decay with a half-life)."""
    if to_t <= from_t or value == 0.0:
        return value
    return value * math.pow(2.0, -(to_t - from_t) / half_life_ms)


def add_decayed(total: float, total_t: int, amount: float, t: int, half_life_ms: float) -> tuple[float, int]:
    """Add ``amount`` happening at ``t`` to a decayed sum kept as of ``total_t``; returns (sum, as_of)."""
    if t >= total_t:
        return decay(total, total_t, t, half_life_ms) + amount, t
    return total + decay(amount, t, total_t, half_life_ms), total_t


def engagement_score(points: float, points_t: int, now_ms: int, cfg: ProfileConfig) -> float:
    """Engagement in [0, 100]: 100 * (1 - exp(-decayed_points / scale)), decayed to ``now_ms``."""
    current = decay(points, points_t, max(now_ms, points_t), cfg.engagement_half_life_ms)
    return round(100.0 * (1.0 - math.exp(-max(current, 0.0) / cfg.engagement_scale)), 2)


def price_band(price: float, bands: tuple[float, ...]) -> str:
    i = bisect_right(bands, price)
    lo = "0" if i == 0 else f"{bands[i - 1]:g}"
    return f"{lo}-{bands[i]:g}" if i < len(bands) else f"{lo}+"


def lifecycle(p: Profile, now_ms: int, cfg: ProfileConfig) -> str:
    """The stage as of ``now_ms``: time without events turns a stored stage into at-risk or churned."""
    if p.last_seen is None:
        return "unknown"
    idle = now_ms - p.last_seen
    if idle > cfg.churn_ms:
        return "churned"
    if idle > cfg.at_risk_ms:
        return "at-risk"
    return p.stage or "new"


def _step(ev: Any) -> str | None:
    ctx = ev.raw.get("context") or {}
    return ev.placement or ctx.get("page")


def fold_user(p: Profile, events: Iterable[Accepted], cfg: ProfileConfig, items: ItemLookup) -> list[Fact]:
    """Fold ``events`` (one user's, any order) above ``p.fences`` into ``p``; returns facts per folded event."""
    facts: list[Fact] = []
    for acc in sorted(events, key=lambda a: (a.partition, a.offset)):
        if acc.offset <= p.fences.get(acc.partition, -1):
            continue
        ev = acc.event
        t = ev.event_time
        raw = ev.raw
        p.fences[acc.partition] = acc.offset
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
        sid = (raw.get("context") or {}).get("session_id") or ""
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
            p.eng = sig6(p.eng)
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
        facts.append(Fact(acc, p.session_start, journey, attributed))
    if facts:
        p.segments = segments.evaluate(cfg.rules, segment_view(p, cfg))
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
    for k in p.aff:  # 6 significant digits: shorter in Redis, and the same whatever the batching
        p.aff[k] = sig6(p.aff[k])
    if len(p.aff) > AFFINITY_MAX:
        for k in sorted(p.aff, key=lambda k: (abs(p.aff[k]), k))[: len(p.aff) - AFFINITY_MAX]:
            del p.aff[k]


def segment_view(p: Profile, cfg: ProfileConfig) -> dict[str, Any]:
    """The fields segment rules may test, as of the user's last event (event time)."""
    view: dict[str, Any] = {
        "ltv": p.ltv, "orders": p.orders, "sessions": p.sessions, "stage": p.stage,
        "engagement": engagement_score(p.eng, p.eng_t, p.last_seen or 0, cfg),
    }
    for k, v in p.counts.items():
        view[f"count.{k}"] = v
    for k, v in p.aff.items():
        view[f"affinity.{k}"] = v
    return view


# ---------------------------------------------------------------------------------------------
# Redis encoding


def encode(p: Profile) -> tuple[dict[str, str], list[str], dict[str, str]]:
    """Profile -> (counts hash, recent list newest first, profile hash); floats as exact reprs."""
    counts = {k: str(v) for k, v in p.counts.items()}
    if p.first_seen is not None:
        counts[FIRST_SEEN] = str(p.first_seen)
        counts[LAST_SEEN] = str(p.last_seen)
    for part, off in p.fences.items():
        counts[f"{FENCE}{part}"] = str(off)
    prof = {
        "sessions": str(p.sessions), "sid": p.session_id, "sst": str(p.session_start), "path": ">".join(p.path),
        "orders": str(p.orders), "ltv": repr(p.ltv), "eng": repr(p.eng), "eng_t": str(p.eng_t),
        "aff_t": str(p.aff_t), "stage": p.stage, "stage_at": str(p.stage_at), "lrec": p.last_rec,
        "seg": ",".join(p.segments),
    }
    for k, v in p.aff.items():
        prof[f"a:{k}"] = repr(v)
    return counts, list(p.recent), prof


def decode(counts: dict[str, str], recent: list[str], prof: dict[str, str]) -> Profile:
    p = Profile(recent=list(recent))
    for k, v in counts.items():
        if k == VERSION:
            p.version = int(v)
        elif k.startswith(FENCE):
            p.fences[int(k[len(FENCE):])] = int(v)
        elif k == FIRST_SEEN:
            p.first_seen = int(v)
        elif k == LAST_SEEN:
            p.last_seen = int(v)
        elif not k.startswith("_"):
            p.counts[k] = int(v)
    if prof:
        p.sessions = int(prof.get("sessions", 0))
        p.session_id = prof.get("sid", "")
        p.session_start = int(prof.get("sst", 0))
        p.path = [s for s in prof.get("path", "").split(">") if s]
        p.orders = int(prof.get("orders", 0))
        p.ltv = float(prof.get("ltv", 0.0))
        p.eng = float(prof.get("eng", 0.0))
        p.eng_t = int(prof.get("eng_t", 0))
        p.aff_t = int(prof.get("aff_t", 0))
        p.stage = prof.get("stage", "")
        p.stage_at = int(prof.get("stage_at", 0))
        p.last_rec = prof.get("lrec", "")
        p.segments = [s for s in prof.get("seg", "").split(",") if s]
        p.aff = {k[2:]: float(v) for k, v in prof.items() if k.startswith("a:")}
    return p


def parse_state(counts: dict[str, str], recent: list[str]) -> dict[str, Any]:
    """Redis hash + list -> the activity document served by the API and stored in Cassandra."""
    p = decode(counts, recent, {})
    return {
        "counts": dict(p.counts), FIRST_SEEN: p.first_seen, LAST_SEEN: p.last_seen, "recent_items": p.recent,
        "applied_offset": max(p.fences.values()) if p.fences else None,
    }


def parse_attrs(attrs: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The identity hash (streams/identity.py) -> (attributes, preferences)."""
    a = {k[2:]: json.loads(v) for k, v in attrs.items() if k.startswith("x:")}
    p = {k[2:]: json.loads(v) for k, v in attrs.items() if k.startswith("p:")}
    return a, p


def document(p: Profile, now_ms: int, cfg: ProfileConfig) -> dict[str, Any]:
    """The full profile as served by the API (engagement and lifecycle evaluated at ``now_ms``)."""
    return {
        "counts": dict(p.counts), "first_seen": p.first_seen, "last_seen": p.last_seen,
        "recent_items": list(p.recent), "sessions": p.sessions, "orders": p.orders, "lifetime_value": p.ltv,
        "engagement": engagement_score(p.eng, p.eng_t, now_ms, cfg),
        "lifecycle": lifecycle(p, now_ms, cfg), "lifecycle_at_last_event": p.stage or None,
        "affinities": {k: round(decay(v, p.aff_t, max(now_ms, p.aff_t), cfg.affinity_half_life_ms), 6)
                       for k, v in sorted(p.aff.items(), key=lambda kv: -kv[1])},
        "segments": list(p.segments),
    }


# One compare-and-set per user and batch. The new state travels as one JSON argument (all values
# strings, so floats keep their exact repr): packing one argument per field costs more Python time
# than the whole fold.
APPLY_LUA = """
local v = redis.call('HGET', KEYS[1], '_v') or ''
if v ~= ARGV[1] then return 0 end
local d = cjson.decode(ARGV[3])
redis.call('HSET', KEYS[1], '_v', ARGV[2], unpack(d.c))
redis.call('DEL', KEYS[2])
if #d.r > 0 then redis.call('RPUSH', KEYS[2], unpack(d.r)) end
redis.call('DEL', KEYS[3])
redis.call('HSET', KEYS[3], unpack(d.p))
return 1
"""


def lua_args(expected: int | None, p: Profile) -> list[Any]:
    counts, recent, prof = encode(p)
    blob = {"c": [x for kv in counts.items() for x in kv], "r": recent, "p": [x for kv in prof.items() for x in kv]}
    return ["" if expected is None else str(expected), str(p.version), json.dumps(blob, separators=(",", ":"))]


# ---------------------------------------------------------------------------------------------
# The store


class ProfileStore:
    """Reads and writes profiles in Redis and Cassandra; one instance per worker."""

    owner = "profiles"

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
        self.segments = segments.SegmentStore(redis, session, keys, list(cfg.rules))

    async def read(self, users: list[str]) -> dict[str, Profile]:
        pipe = self.redis.pipeline(transaction=False)
        for u in users:
            pipe.hgetall(self.keys.user_counts(u))
            pipe.lrange(self.keys.user_recent(u), 0, -1)
            pipe.hgetall(self.keys.user_profile(u))
        raw = await pipe.execute()
        return {u: decode(raw[3 * i], raw[3 * i + 1], raw[3 * i + 2]) for i, u in enumerate(users)}

    async def apply(self, events: list[Accepted], items: ItemLookup,
                    before_commit: Callable[[list[Fact]], Awaitable[Any]] | None = None,
                    ) -> tuple[dict[str, Profile], list[Fact]]:
        """Fold ``events`` into state exactly once; returns every touched user's state and the new facts.

        ``before_commit`` receives the facts of each attempt before the profiles are written: the
        analytics counters (fenced per partition) are applied first, so a partition's analytics fence
        is never behind the fences of its users, and a replay recomputes the same facts.
        """
        by_user: dict[str, list[Accepted]] = {}
        for a in events:
            by_user.setdefault(a.event.user_id, []).append(a)
        pending = sorted(by_user)
        states: dict[str, Profile] = {}
        facts: list[Fact] = []
        same_segments: set[str] = set()
        seg_before: dict[str, list[str]] = {}
        for _attempt in range(8):
            if not pending:
                break
            current = await self.read(pending)
            pipe = self.redis.pipeline(transaction=False)
            order: list[str] = []
            new_facts: dict[str, list[Fact]] = {}
            for u in pending:
                p = current[u]
                seg_before[u] = list(p.segments)
                expected = p.version if p.version else None
                f = fold_user(p, by_user[u], self.cfg, items)
                states[u] = p
                if not f:
                    continue
                p.version += 1
                new_facts[u] = f
                order.append(u)
                await self.apply_script(keys=[self.keys.user_counts(u), self.keys.user_recent(u),
                                              self.keys.user_profile(u)], args=lua_args(expected, p), client=pipe)
            if before_commit is not None and new_facts:
                await before_commit([f for u in order for f in new_facts[u]])
            results = await pipe.execute() if order else []
            conflicts = [u for u, ok in zip(order, results, strict=True) if not ok]
            for u, ok in zip(order, results, strict=True):
                if ok:
                    facts.extend(new_facts[u])
                    if states[u].segments == seg_before[u]:
                        same_segments.add(u)
            pending = conflicts
        else:
            raise RuntimeError(f"profile version conflicts did not settle for {len(pending)} users")
        await asyncio.gather(self.segments.reconcile(states, same_segments), self.write_durable(states))
        return states, facts

    async def write_durable(self, states: dict[str, Profile]) -> None:
        """Copy the absolute state of ``states`` to Cassandra (idempotent upserts)."""
        if not states:
            return
        from cassandra.concurrent import execute_concurrent

        stmts: list[tuple[Any, tuple[Any, ...]]] = []
        for u, p in states.items():
            stmts.append((self.upsert_activity, (u, p.counts, p.first_seen, p.last_seen, p.recent,
                                                 max(p.fences.values()) if p.fences else None)))
            _, _, prof = encode(p)
            stmts.append((self.upsert_profile, (u, json.dumps(prof, separators=(",", ":")), p.version)))
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: execute_concurrent(self.session, stmts, concurrency=64, raise_on_first_error=True))


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

"""User profiles: activity (counts per action, first/last seen, recent items), sessions, orders and
lifetime value, time-decayed engagement and implicit affinities, lifecycle stage and segments.

Owner of the per-user Redis key ``user_state`` (ONE string per user: a 4-byte version, then the whole
state as a msgpack array, see ``pack``/``unpack``; the offset fences ``<partition> -> offset`` are in
it), of the segment member sets (via streams/segments.py) and of the Cassandra tables
``user_activity``, ``user_profile`` and ``segment_members``. Every reader (the worker, serving/,
tests, benches) goes through ``unpack`` (Redis) or ``from_durable`` (the Cassandra copy): the formats
are spelled here only.

Exactly-once effects from at-least-once delivery: each user's state carries, per source partition,
the last Kafka offset folded into it. Per batch: one pipeline reads every touched user's state; the
pure ``fold_user`` applies the events above the fences in offset order (the same function the
reference recomputation in the tests uses); one pipeline writes each user's new absolute state with a
compare-and-set Lua script on the version (a concurrent writer makes it retry); then segment sets and
one concurrent Cassandra write copy absolute values. Replays of an already folded batch change
nothing and re-copy the same absolute values.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import struct
from bisect import bisect_right
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import msgpack

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
FENCE = APPLIED_OFFSET + ":"  # field prefix of the fences in the durable document: "_off:<partition>"
SESSION_ID_MAX = 16  # longer client session ids are kept as a 64-bit digest ("#" + 16 hex digits)


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
    """One user's folded state (plain data; stored as one Redis string, ``pack``)."""

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
    idle: str = ""  # "at-risk" / "churned" set by the idle sweep (streams/lifecycle.py); cleared by any event


@dataclass(frozen=True, slots=True)
class Fact:
    """What the profile fold learned about one event that analytics needs (user context)."""

    acc: Accepted
    session_start: int
    journey: tuple[str, str] | None = None  # (previous path or "", new path) of the event's session
    attributed: tuple[str, str, str, str] | None = None  # (recommendation_id, experiment, variant, placement)


# ---------------------------------------------------------------------------------------------
# Pure math


_F32 = struct.Struct("<f")


def f32(v: float) -> float:
    """``v`` rounded to the nearest float32: decayed sums are kept at this precision (~7 significant
    digits) so that the stored 4-byte form is exact and the result does not depend on batching."""
    return _F32.unpack(_F32.pack(v))[0]


def session_key(sid: str) -> str:
    """The session id as kept in the profile: as sent when short, else a 64-bit digest (compared only)."""
    if len(sid) <= SESSION_ID_MAX:
        return sid
    return "#" + hashlib.blake2b(sid.encode(), digest_size=8).hexdigest()


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
    for k in p.aff:  # float32: 4 bytes in Redis, and the same whatever the batching
        p.aff[k] = f32(p.aff[k])
    if len(p.aff) > AFFINITY_MAX:
        for k in sorted(p.aff, key=lambda k: (abs(p.aff[k]), k))[: len(p.aff) - AFFINITY_MAX]:
            del p.aff[k]


def segment_view(p: Profile, cfg: ProfileConfig, now_ms: int | None = None) -> dict[str, Any]:
    """The fields segment rules may test, as of the user's last event (event time), or as of
    ``now_ms`` (the idle sweep: engagement decayed to now, stage at-risk/churned)."""
    at = (p.last_seen or 0) if now_ms is None else now_ms
    view: dict[str, Any] = {
        "ltv": p.ltv, "orders": p.orders, "sessions": p.sessions, "stage": p.idle or p.stage,
        "engagement": engagement_score(p.eng, p.eng_t, at, cfg),
    }
    for k, v in p.counts.items():
        view[f"count.{k}"] = v
    for k, v in p.aff.items():
        view[f"affinity.{k}"] = v
    return view


# ---------------------------------------------------------------------------------------------
# Redis encoding: ONE string per user (``RedisKeys.user_state``)
#
#   4 bytes   version, big-endian (the compare-and-set of APPLY_LUA reads only these)
#   msgpack   array, positional (no field names), trailing defaults dropped:
#     0 format (1)          1 fences [p, off, ...]      2 counts [action code or name, n, ...]
#     3 last_seen (ms)      4 first_seen                5 recent items, newest first
#     6 sessions            7 session id (nil: the gap session "g<start>"; 8 bytes: a digest)
#     8 session start       9 path                      10 orders
#     11 ltv (micro-units)  12 eng_t                    13 aff_t
#     14 affinity keys ("c"/"b"/"p" + value for category:/brand:/price:)
#     15 float32 little-endian: engagement points, then one weight per affinity key
#     16 stage code         17 stage_at                 18 last rec click [t, rec, exp, var, placement]
#     19 segments           20 idle stage code
#   Times other than last_seen are stored as last_seen - t (nil for 0): 5 bytes instead of 9.

FORMAT = 1
_HEAD = struct.Struct(">I")
# Append-only: the position is the stored code of an action (unknown actions are stored by name).
ACTION_CODES = ("view", "click", "add_to_cart", "remove_from_cart", "purchase", "rating", "search",
                "impression", "recommendation_click", "message_open", "message_click", "custom")
_ACTION_INDEX = {a: i for i, a in enumerate(ACTION_CODES)}
STAGE_CODES = ("", "new", "active", "reactivated", "at-risk", "churned")  # append-only
_STAGE_INDEX = {a: i for i, a in enumerate(STAGE_CODES)}
_AFF_PREFIX = {"category:": "c", "brand:": "b", "price:": "p"}
_AFF_NAME = {v: k for k, v in _AFF_PREFIX.items()}
_FIELDS = 21
_DEFAULTS: tuple[Any, ...] = (FORMAT, [], [], None, None, [], 0, None, None, [], 0, 0, None, None, [], b"", 0,
                              None, None, [], 0)


def next_version(v: int) -> int:
    """The version after ``v`` (1 .. 2**32 - 1: 0 means "no state yet")."""
    return v % 0xFFFFFFFF + 1


def version_head(version: int | None) -> bytes:
    """The 4 bytes a stored state of ``version`` starts with (b"" for none: the key must not exist)."""
    return _HEAD.pack(version) if version else b""


def _aff_key(k: str) -> str:
    for long, short in _AFF_PREFIX.items():
        if k.startswith(long):
            return short + k[len(long):]
    return "~" + k


def _is_default(value: Any, default: Any) -> bool:
    return value is None if default is None else (value is not None and value == default)


def pack(p: Profile) -> bytes:
    """Profile -> the stored string (version head + msgpack). Lossless for every state the fold makes."""
    ls = p.last_seen

    def rel(t: int | None) -> int | None:
        return None if not t or ls is None else ls - t

    sid: Any = p.session_id
    if sid == f"g{p.session_start}":
        sid = None
    elif sid.startswith("#") and len(sid) == 17:
        sid = bytes.fromhex(sid[1:])
    last_rec: Any = None
    if p.last_rec:
        rt, *rest = p.last_rec.split("|")
        last_rec = [rel(int(rt)), *rest]
    counts: list[Any] = []
    for a, n in p.counts.items():
        counts += [_ACTION_INDEX.get(a, a), n]
    body = [FORMAT, [x for kv in p.fences.items() for x in kv], counts, ls, rel(p.first_seen), p.recent,
            p.sessions, sid, rel(p.session_start), p.path, p.orders, round(p.ltv * 1e6), rel(p.eng_t),
            rel(p.aff_t), [_aff_key(k) for k in p.aff], struct.pack(f"<{1 + len(p.aff)}f", p.eng, *p.aff.values()),
            _STAGE_INDEX[p.stage], rel(p.stage_at), last_rec, p.segments, _STAGE_INDEX[p.idle]]
    while len(body) > 1 and _is_default(body[-1], _DEFAULTS[len(body) - 1]):
        body.pop()
    return _HEAD.pack(p.version) + msgpack.packb(body)


def unpack(raw: bytes | None) -> Profile:
    """The stored string -> Profile (an empty Profile, version 0, when there is none)."""
    if not raw:
        return Profile()
    body = msgpack.unpackb(raw[4:])
    if body[0] != FORMAT:
        raise ValueError(f"unknown profile format {body[0]!r}")
    body += [list(d) if isinstance(d, list) else d for d in _DEFAULTS[len(body):]]
    (_fmt, fences, counts, ls, first, recent, sessions, sid, sst, path, orders, ltv, eng_t, aff_t, aff_keys,
     floats, stage, stage_at, last_rec, segs, idle) = body

    def ab(d: int | None) -> int:
        return 0 if d is None else ls - d

    p = Profile(version=_HEAD.unpack_from(raw)[0], last_seen=ls, first_seen=None if first is None else ls - first,
                recent=list(recent), sessions=sessions, session_start=ab(sst), path=list(path), orders=orders,
                ltv=ltv / 1e6, eng_t=ab(eng_t), aff_t=ab(aff_t), stage=STAGE_CODES[stage], stage_at=ab(stage_at),
                segments=list(segs), idle=STAGE_CODES[idle])
    p.fences = dict(zip(fences[::2], fences[1::2], strict=True))
    p.counts = {(ACTION_CODES[a] if isinstance(a, int) else a): n for a, n in zip(counts[::2], counts[1::2],
                                                                                   strict=True)}
    p.session_id = (f"g{p.session_start}" if sid is None else "#" + sid.hex() if isinstance(sid, bytes) else sid)
    if last_rec:
        p.last_rec = "|".join([str(ab(last_rec[0])), *last_rec[1:]])
    vals = struct.unpack(f"<{len(floats) // 4}f", floats) if floats else (0.0,)
    p.eng = vals[0]
    p.aff = {(_AFF_NAME[k[0]] + k[1:] if k[0] in _AFF_NAME else k[1:]): v
             for k, v in zip(aff_keys, vals[1:], strict=True)}
    return p


def queue_read(pipe: Any, keys: RedisKeys, user_id: str) -> None:
    """Queue the read of ``user_id``'s stored state on ``pipe`` (raw bytes, whatever the client's
    ``decode_responses``); its result goes to ``unpack``."""
    pipe.execute_command("GET", keys.user_state(user_id), NEVER_DECODE=True)


def read_sync(redis: Any, keys: RedisKeys, user_id: str) -> Profile | None:
    """One user's state through a synchronous client (tests, benches, jobs); None when absent."""
    raw = redis.execute_command("GET", keys.user_state(user_id), NEVER_DECODE=True)
    return unpack(raw) if raw else None


def write_sync(client: Any, keys: RedisKeys, user_id: str, p: Profile) -> None:
    """Store ``p`` as ``user_id``'s state, unconditionally (tests and benches seeding a profile; the
    worker writes through APPLY_LUA). ``client``: a synchronous client or pipeline."""
    client.set(keys.user_state(user_id), pack(p))


def durable_doc(p: Profile) -> dict[str, str]:
    """The derived profile as the JSON document of the Cassandra ``user_profile`` row (text fields,
    floats as exact reprs; the counts, seen times and recent items are in ``user_activity``)."""
    doc = {
        "sessions": str(p.sessions), "sid": p.session_id, "sst": str(p.session_start), "path": ">".join(p.path),
        "orders": str(p.orders), "ltv": repr(p.ltv), "eng": repr(p.eng), "eng_t": str(p.eng_t),
        "aff_t": str(p.aff_t), "stage": p.stage, "stage_at": str(p.stage_at), "lrec": p.last_rec,
        "seg": ",".join(p.segments),
    }
    if p.idle:
        doc["idle"] = p.idle
    for k, v in p.aff.items():
        doc[f"a:{k}"] = repr(v)
    return doc


def from_durable(counts: dict[str, int], first_seen: int | None, last_seen: int | None, recent: list[str],
                 doc: dict[str, str]) -> Profile:
    """The Cassandra copy (``user_activity`` row + ``user_profile`` document) -> Profile (no fences)."""
    p = Profile(counts=dict(counts), first_seen=first_seen, last_seen=last_seen, recent=list(recent))
    if doc:
        p.sessions = int(doc.get("sessions", 0))
        p.session_id = doc.get("sid", "")
        p.session_start = int(doc.get("sst", 0))
        p.path = [x for x in doc.get("path", "").split(">") if x]
        p.orders = int(doc.get("orders", 0))
        p.ltv = float(doc.get("ltv", 0.0))
        p.eng = float(doc.get("eng", 0.0))
        p.eng_t = int(doc.get("eng_t", 0))
        p.aff_t = int(doc.get("aff_t", 0))
        p.stage = doc.get("stage", "")
        p.stage_at = int(doc.get("stage_at", 0))
        p.last_rec = doc.get("lrec", "")
        p.segments = [x for x in doc.get("seg", "").split(",") if x]
        p.idle = doc.get("idle", "")
        p.aff = {k[2:]: float(v) for k, v in doc.items() if k.startswith("a:")}
    return p


def activity(p: Profile) -> dict[str, Any]:
    """The activity document served by the API (``/profiles/{id}/activity``)."""
    return {"counts": dict(p.counts), FIRST_SEEN: p.first_seen, LAST_SEEN: p.last_seen, "recent_items": p.recent}


def rule_fields(p: Profile) -> dict[str, str]:
    """The profile as the flat text fields personalization rules test (aura/rules.py ``profile.<name>``):
    ``count.<action>``, ``first_seen``, ``last_seen`` and the fields of ``durable_doc`` (``ltv``,
    ``orders``, ``sessions``, ``stage``, ``a:<dim>``, ...)."""
    out = {f"count.{k}": str(v) for k, v in p.counts.items()}
    if p.first_seen is not None:
        out[FIRST_SEEN] = str(p.first_seen)
        out[LAST_SEEN] = str(p.last_seen)
    return {**out, **durable_doc(p)}


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
    """Reads and writes profiles in Redis and Cassandra; one instance per worker."""

    owner = "profiles"
    # where the segment member rows of ``apply`` go: None, written in the batch; a write-behind's sink
    segment_buffer: Callable[[dict[tuple[str, str], bool]], None] | None = None

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
            queue_read(pipe, self.keys, u)
        return {u: unpack(raw) for u, raw in zip(users, await pipe.execute(), strict=True)}

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
        seg_before: dict[str, list[str]] = {}  # the segments each user's fold started from
        replayed: set[str] = set()  # an earlier attempt at some of their events may have stopped before its reconcile
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
                if any(a.offset <= p.fences.get(a.partition, -1) for a in by_user[u]):
                    replayed.add(u)
                expected = p.version if p.version else None
                f = fold_user(p, by_user[u], self.cfg, items)
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
        for u, p in states.items():
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
        from streams.durable import execute_grouped

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

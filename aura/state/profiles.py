"""One user's profile: the model, its pure math, and the views the API serves.

A profile holds the user's activity (counts per action, first/last seen, recent items), sessions,
orders and lifetime value, time-decayed engagement and implicit affinities, lifecycle stage and
segments. The worker's fold (streams/profiles.py) writes it; the API (serving/routes/profiles.py,
serving/decisions.py) reads it. Both import this module and aura/state/profile_codec.py (its stored
forms) and never each other, so what a profile means is spelled once, here.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aura.layout import APPLIED_OFFSET, FIRST_SEEN, LAST_SEEN
from aura.settings import Settings
from aura.state import segments

DAY_MS = 24 * 3600 * 1000
SESSION_ID_MAX = 16  # longer client session ids are kept as a 64-bit digest ("#" + 16 hex digits)
# The identity hash (``RedisKeys.user_attrs``, written by streams/identity.py): attributes ``x:<name>``
# and preferences ``p:<what>`` as JSON, and the identity topic's fences ``_off:<partition>``.
ATTRS_FENCE = APPLIED_OFFSET + ":"


@dataclass(frozen=True)
class ProfileConfig:
    """The knobs of the profile fold and of the views, from settings."""

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
    rules: segments.Rules = field(default_factory=dict)

    @classmethod
    def from_settings(cls, s: Settings) -> ProfileConfig:
        p = s.profiles
        return cls(
            recent_max=p.recent_items_max, session_gap_ms=p.session_gap_s * 1000,
            engagement_half_life_ms=p.engagement_half_life_days * DAY_MS, engagement_scale=p.engagement_scale,
            affinity_half_life_ms=p.affinity_half_life_days * DAY_MS,
            price_bands=tuple(float(x) for x in p.price_bands.split(",") if x.strip()),
            new_ms=p.lifecycle_new_days * DAY_MS, at_risk_ms=p.lifecycle_at_risk_days * DAY_MS,
            churn_ms=p.lifecycle_churn_days * DAY_MS, attribution_window_ms=p.attribution_window_s * 1000,
            rules=segments.parse_rules(p.segment_rules),
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
    """One user's folded state (plain data; stored as one Redis string, ``profile_codec.pack``)."""

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
    """The band of ``price`` among ``bands`` (ascending upper bounds): "0-25", "25-100", ..., "250+"."""
    i = bisect_right(bands, price)
    lo = "0" if i == 0 else f"{bands[i - 1]:g}"
    return f"{lo}-{bands[i]:g}" if i < len(bands) else f"{lo}+"


def idle_stage(p: Profile, now_ms: int, cfg: ProfileConfig) -> str:
    """"churned", "at-risk" or "" (not idle, or never seen) for ``p`` as of ``now_ms``."""
    if p.last_seen is None:
        return ""
    idle = now_ms - p.last_seen
    if idle > cfg.churn_ms:
        return "churned"
    if idle > cfg.at_risk_ms:
        return "at-risk"
    return ""


def lifecycle(p: Profile, now_ms: int, cfg: ProfileConfig) -> str:
    """The stage as of ``now_ms``: time without events turns a stored stage into at-risk or churned."""
    if p.last_seen is None:
        return "unknown"
    return idle_stage(p, now_ms, cfg) or p.stage or "new"


def segment_view(p: Profile, cfg: ProfileConfig, now_ms: int | None = None,
                 attrs: dict[str, Any] | None = None) -> dict[str, Any]:
    """The fields segment rules may test, as of the user's last event (event time), or as of
    ``now_ms`` (the idle sweep: engagement decayed to now, stage at-risk/churned); ``attrs``: the
    user's decoded identity attributes (``attr.<name>``), when a rule in force tests them."""
    at = (p.last_seen or 0) if now_ms is None else now_ms
    view: dict[str, Any] = {
        "ltv": p.ltv, "orders": p.orders, "sessions": p.sessions, "stage": p.idle or p.stage,
        "engagement": engagement_score(p.eng, p.eng_t, at, cfg),
    }
    for k, v in p.counts.items():
        view[f"count.{k}"] = v
    for k, v in p.aff.items():
        view[f"affinity.{k}"] = v
    return segments.with_attributes(view, attrs)


# ---------------------------------------------------------------------------------------------
# Views served by the API


def activity(p: Profile) -> dict[str, Any]:
    """The activity document served by the API (``/profiles/{id}/activity``)."""
    return {"counts": dict(p.counts), FIRST_SEEN: p.first_seen, LAST_SEEN: p.last_seen, "recent_items": p.recent}


def parse_attrs(attrs: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The identity hash (streams/identity.py: ``x:<name>``, ``p:<what>`` as JSON) -> (attributes,
    preferences)."""
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

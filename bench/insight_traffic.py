"""Synthetic shop traffic for the insight benchmark and tests: minute aggregates with injected
incidents of known start, size and dimension, and campaign snapshots with injected failure or click
changes (bench/insights.py scores the detectors on them).

Traffic: minute aggregates of a shop (``--views`` product views per minute at the daily peak, a
daily cycle down to 35 % at night, 4 % of views convert, orders of lognormal value) over cells of
device x channel x country x category, and recommendation impressions/clicks per placement x
experiment variant; every cell is drawn (Poisson views, binomial orders and clicks), so the
marginals of every dimension are consistent. Each scenario simulates ``--days`` days; the first 6
hours are clean (warm-up), then one incident every ~3 hours, each a random kind:

* ``conversion``: conversion x (1 - ``--drop``) on one device;
* ``revenue``: order value x 3 on one category (a price error);
* ``views``: views x 2.5 on one category (a surge);
* ``ctr``: click-through x 0.4 on one placement (a collapse);
* ``variant`` (only with ``--kinds``): the conversion of one experiment variant's recommendation
  clicks x 0.4 (10 % of its clicks lead to an attributed order otherwise);

lasting 30-90 minutes, then back to normal. One clean day per seed measures false alerts: the last day
of a clean run as long as the scenarios (at least two days), so the engine has seen the days before
(its hour-of-day factors) as a running one has.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aura.insights.campaigns import COUNTERS
from aura.insights.engine import MINUTE

DEVICES = ("mobile", "desktop", "tablet")
DEVICE_SHARE = (0.55, 0.35, 0.10)
CHANNELS = ("web", "app")
CHANNEL_SHARE = (0.7, 0.3)
COUNTRIES = ("US", "FR", "DE", "JP")
COUNTRY_SHARE = (0.5, 0.2, 0.2, 0.1)
CATEGORIES = ("electronics", "books", "home", "fashion", "sports", "beauty", "toys", "grocery")
CATEGORY_SHARE = (0.2, 0.15, 0.15, 0.15, 0.1, 0.1, 0.08, 0.07)
PLACEMENTS = ("homepage", "product_page", "cart", "search_results", "email")
PLACEMENT_SHARE = (0.35, 0.3, 0.1, 0.2, 0.05)
VARIANTS = ("exp-homepage:A", "exp-homepage:B")
KINDS = ("conversion", "revenue", "views", "ctr")
ALL_KINDS = (*KINDS, "variant")  # "variant": a scenario kind only when asked for (--kinds)
DAY_MIN = 1440
WARMUP_MIN = 360


@dataclass(frozen=True)
class Incident:
    metric: str
    dimension: str
    value: str
    start: int      # minute index
    end: int        # exclusive
    size: float     # multiplier


@dataclass
class Scenario:
    seed: int
    minutes: int
    incidents: list[Incident] = field(default_factory=list)


def make_scenario(seed: int, days: int, drop: float, clean: bool = False,
                  kinds: tuple[str, ...] = KINDS) -> Scenario:
    rng = np.random.default_rng(seed)
    sc = Scenario(seed, days * DAY_MIN)
    if clean:
        return sc
    t = WARMUP_MIN
    while t < sc.minutes - 120:
        kind = kinds[int(rng.integers(len(kinds)))]
        dur = int(rng.integers(30, 91))
        if kind == "conversion":
            inc = Incident("conversion", "device", DEVICES[int(rng.integers(2))], t, t + dur, 1 - drop)
        elif kind == "revenue":
            inc = Incident("revenue", "category", CATEGORIES[int(rng.integers(4))], t, t + dur, 3.0)
        elif kind == "views":
            inc = Incident("views", "category", CATEGORIES[int(rng.integers(len(CATEGORIES)))], t, t + dur, 2.5)
        elif kind == "ctr":
            inc = Incident("ctr", "placement", PLACEMENTS[int(rng.integers(3))], t, t + dur, 0.4)
        else:
            inc = Incident("variant_conversion", "experiment", VARIANTS[int(rng.integers(2))], t, t + dur, 0.4)
        sc.incidents.append(inc)
        t += dur + int(rng.integers(120, 240))
    return sc


def _active(sc: Scenario, minute: int) -> list[Incident]:
    return [i for i in sc.incidents if i.start <= minute < i.end]


T0_MS = 1_767_225_600_000
MinuteRecords = tuple[int, list[dict[str, Any]]]


def records(sc: Scenario, views_peak: float, t0_ms: int = T0_MS) -> Iterator[MinuteRecords]:
    """Per minute: (window start ms, the minute_metrics records of that minute)."""
    key = (sc.seed, sc.minutes, tuple(sc.incidents), views_peak, t0_ms)
    if _CACHE.get("key") != key:  # the engine and the baseline read the same scenario in turn
        _CACHE["key"], _CACHE["minutes"] = key, list(_records(sc, views_peak, t0_ms))
    yield from _CACHE["minutes"]


_CACHE: dict[str, Any] = {}


def _records(sc: Scenario, views_peak: float, t0_ms: int) -> Iterator[MinuteRecords]:
    rng = np.random.default_rng(sc.seed + 1000)
    vrng = np.random.default_rng(sc.seed + 2000)
    cells = [(d, c, k, g, ds * cs * ks * gs)
             for d, ds in zip(DEVICES, DEVICE_SHARE, strict=True) for c, cs in zip(CHANNELS, CHANNEL_SHARE, strict=True)
             for k, ks in zip(COUNTRIES, COUNTRY_SHARE, strict=True)
             for g, gs in zip(CATEGORIES, CATEGORY_SHARE, strict=True)]
    shares = np.array([c[4] for c in cells])
    # per dimension: its values and each cell's value index (the marginals are sums over cells)
    groups: dict[str, tuple[list[str], np.ndarray]] = {"all": ([""], np.zeros(len(cells), dtype=int))}
    for pos, dim in enumerate(("device", "channel", "country", "category")):
        names = sorted({c[pos] for c in cells})
        groups[dim] = (names, np.array([names.index(c[pos]) for c in cells]))
    base_ctr = {"homepage": 0.05, "product_page": 0.08, "cart": 0.04, "search_results": 0.06, "email": 0.03}
    for minute in range(sc.minutes):
        start = t0_ms + minute * MINUTE
        daily = 0.35 + 0.65 * (0.5 - 0.5 * np.cos(2 * np.pi * ((minute % DAY_MIN) / DAY_MIN - 0.1)))
        active = _active(sc, minute)
        lam = views_peak * daily * shares
        conv = np.full(len(cells), 0.04)
        value = np.full(len(cells), 1.0)
        for inc in active:
            idx = {"device": 0, "channel": 1, "country": 2, "category": 3}.get(inc.dimension)
            if idx is None:
                continue
            mask = np.array([c[idx] == inc.value for c in cells])
            if inc.metric == "views":
                lam = np.where(mask, lam * inc.size, lam)
            elif inc.metric == "conversion":
                conv = np.where(mask, conv * inc.size, conv)
            elif inc.metric == "revenue":
                value = np.where(mask, value * inc.size, value)
        views = rng.poisson(lam)
        orders = rng.binomial(views, conv)
        sizes = rng.lognormal(3.6, 0.6, int(orders.sum()))
        revenue = np.bincount(np.repeat(np.arange(len(cells)), orders), weights=sizes, minlength=len(cells)) * value
        dims: dict[tuple[str, str], list[float]] = {}
        for dim, (names, idx) in groups.items():
            sums = [np.bincount(idx, weights=x, minlength=len(names)) for x in (views, orders, revenue)]
            for j, val in enumerate(names):
                dims[(dim, val)] = [float(sums[0][j]), float(sums[1][j]), float(sums[2][j])]
        imps_total, clicks_total = 0, 0
        recs: list[dict[str, Any]] = []
        exp_acc = {v: [0, 0] for v in VARIANTS}
        for pl, ps in zip(PLACEMENTS, PLACEMENT_SHARE, strict=True):
            imps = int(rng.poisson(views_peak * 1.5 * daily * ps))
            ctr = base_ctr[pl] * (0.9 + 0.2 * daily)
            ctr *= next((i.size for i in active if i.metric == "ctr" and i.value == pl), 1.0)
            clicks = int(rng.binomial(imps, ctr))
            imps_total += imps
            clicks_total += clicks
            recs.append(_rec(start, "placement", pl, {"impression": imps, "recommendation_click": clicks}))
            if pl == "homepage":
                a = int(rng.binomial(imps, 0.5))
                ca = int(rng.binomial(clicks, a / imps)) if imps else 0
                exp_acc[VARIANTS[0]] = [a, ca]
                exp_acc[VARIANTS[1]] = [imps - a, clicks - ca]
        for v, (i, c) in exp_acc.items():
            # orders attributed to the variant's clicks (their own generator: the other cells are drawn
            # as before, whatever the variants do)
            conv_v = 0.1 * next((inc.size for inc in active if inc.metric == "variant_conversion"
                                 and inc.value == v), 1.0)
            o = int(vrng.binomial(c, conv_v))
            r = float(vrng.lognormal(3.6, 0.6, o).sum())
            recs.append(_rec(start, "experiment", v, {"impression": i, "recommendation_click": c},
                             orders=o, revenue=round(r, 2)))
        for (dim, val), (v, o, r) in dims.items():
            ev = {"view": int(v), "purchase": int(o)}
            if dim == "all":
                ev |= {"impression": imps_total, "recommendation_click": clicks_total}
            recs.append(_rec(start, dim, val, ev, orders=int(o), revenue=round(r, 2)))
        yield start, recs


def _rec(start: int, dim: str, val: str, events: dict[str, int], orders: int = 0,
         revenue: float = 0.0) -> dict[str, Any]:
    return {"window_start": start, "window_end": start + MINUTE, "dimension": dim, "dimension_value": val,
            "events": events, "users": 0, "orders": orders, "revenue": revenue, "revision": 1, "emitted_at": start}


def campaign_snapshots(minutes: int, seed: int, fail: dict[str, tuple[int, int, float]] | None = None,
                       click: dict[str, tuple[int, int, float]] | None = None, t0_ms: int = T0_MS,
                       names: tuple[str, str] = ("welcome", "promo")) -> Iterator[MinuteRecords]:
    """Per minute: the agg.campaigns records of two campaigns sending ~150 and ~250 messages a
    minute (1 % failures, 5 % clicks) as running totals published about once a minute;
    ``fail``/``click``: campaign -> (from minute, to minute, rate) overrides."""
    rng = np.random.default_rng(seed)
    tot = {c: dict.fromkeys(COUNTERS, 0) for c in names}
    for minute in range(minutes):
        recs = []
        for cid, n in zip(names, (150, 250), strict=True):
            p_fail, p_click = 0.01, 0.05
            lo, hi, r = (fail or {}).get(cid, (0, 0, 0.0))
            p_fail = r if lo <= minute < hi else p_fail
            lo, hi, r = (click or {}).get(cid, (0, 0, 0.0))
            p_click = r if lo <= minute < hi else p_click
            attempts = int(rng.poisson(n))
            failed = int(rng.binomial(attempts, p_fail))
            sent = attempts - failed
            clicked = int(rng.binomial(sent, p_click))
            t = tot[cid]
            t["sent"] += sent
            t["failed"] += failed
            t["opened"] += 3 * clicked
            t["clicked"] += clicked
            emitted = t0_ms + minute * MINUTE + 20_000 + int(rng.integers(0, 20_000))
            whole = {"campaign_id": cid, "variant": None, "status": "running", "channel": "email",
                     "goal_event_type": "purchase", **t, "emitted_at": emitted}
            # a content variant's record is not watched (no opens or clicks per variant)
            recs += [whole, {**whole, "variant": "A"}]
        yield t0_ms + minute * MINUTE, recs

"""Analytics routes: engagement (active users, events), funnel, revenue, attribution, journeys and
per-item / per-placement stats over an event-time range, from the counters streams/analytics.py
keeps (Redis hot windows, read through aura/state/analytics.py; Cassandra ``analytics_totals``
snapshots when Redis has expired them or is down)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query

from aura.bootstrap import cassandra_rows
from aura.layout import Tables
from aura.state import analytics
from aura.state.analytics import BucketTotals
from serving.deps import State
from serving.timeparams import parse_time, time_query

log = logging.getLogger(__name__)
router = APIRouter(prefix="/analytics", tags=["analytics"])

Grain = Literal["minute", "hour", "day"]
MAX_BUCKETS = 2000


TIMEFRAME_UNITS = {"m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 7 * 86_400_000}


class Window:
    """The timeframe query parameters shared by every analytics route: ``from``/``to`` (epoch ms or ISO
    dates), or ``timeframe`` (``30d``: the last 30 days up to ``to``); the grain defaults to hours, or
    days when hours would exceed the bucket limit."""

    def __init__(self, grain: Grain | None = Query(None, description="Bucket size (default: hour, or day "  # noqa: B008
                                                                      "for long ranges)"),
                 from_ms: int | str | None = time_query("from", "Start (default: 24 h ago)"),  # noqa: B008
                 to_ms: int | str | None = time_query("to", "End, exclusive (default: now)"),  # noqa: B008
                 timeframe: str | None = Query(None, pattern=r"^\d{1,5}[mhdw]$",  # noqa: B008
                                               description="The last N minutes/hours/days/weeks, e.g. 30d "
                                                           "(instead of from)")):
        now = int(time.time() * 1000)
        start = parse_time(str(from_ms), "from") if from_ms is not None else None
        end = parse_time(str(to_ms), "to") if to_ms is not None else None
        if timeframe is not None and start is not None:
            raise HTTPException(422, [{"loc": ["query", "timeframe"], "msg": "give timeframe or from, not both",
                                       "type": "value_error"}])
        self.to_ms = end if end is not None else now
        if timeframe is not None:
            start = max(0, self.to_ms - int(timeframe[:-1]) * TIMEFRAME_UNITS[timeframe[-1]])
        self.from_ms = start if start is not None else self.to_ms - 24 * 3600 * 1000
        if self.from_ms >= self.to_ms:
            raise HTTPException(422, [{"loc": ["query", "from"], "msg": "from must be before to",
                                      "type": "value_error"}])
        if grain is None:
            grain = "hour" if (self.to_ms - self.from_ms) // analytics.GRAINS["hour"] <= MAX_BUCKETS else "day"
        self.grain = grain
        if (self.to_ms - self.from_ms) // analytics.GRAINS[grain] > MAX_BUCKETS:
            raise HTTPException(422, [{"loc": ["query", "grain"], "msg": f"more than {MAX_BUCKETS} buckets",
                                      "type": "value_error"}])
        self.starts = analytics.bucket_starts(grain, self.from_ms, self.to_ms, MAX_BUCKETS)


WindowDep = Annotated[Window, Depends()]


async def _buckets(state: Any, w: Window) -> tuple[list[BucketTotals], str]:
    try:
        got = await analytics.read_buckets(state.redis, state.keys, state.settings.kafka.topic_partitions, w.grain,
                                           w.starts)
        if any(b.metrics for b in got) or state.cassandra is None:
            return got, "redis"
    except Exception as exc:  # noqa: BLE001 - Redis down: Cassandra snapshots
        log.warning("redis read failed, falling back to cassandra: %s", exc)
    if state.cassandra is None:
        raise HTTPException(503, "analytics stores unavailable")
    st = state.statements.get("analytics_totals")
    if st is None:
        st = state.statements["analytics_totals"] = state.cassandra.prepare(
            f"SELECT toUnixTimestamp(bucket) AS bucket, metric, value FROM {Tables.ANALYTICS_TOTALS} "
            "WHERE grain = ? AND period = ? AND bucket >= ? AND bucket <= ?")
    ranges = analytics.period_ranges(w.grain, w.starts)
    pages = await asyncio.gather(*(cassandra_rows(state.cassandra, st.bind((w.grain, p, lo, hi)))
                                   for p, lo, hi in ranges))
    rows = [(r.bucket, r.metric, r.value) for page in pages for r in page]
    return analytics.totals_from_rows(w.grain, w.starts, rows), "cassandra"


def _series(buckets: list[BucketTotals], fn: Any) -> list[dict[str, Any]]:
    return [{"start": b.start, **fn(b.metrics, b.users)} for b in buckets]


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 6) if b else None


@router.get("/engagement", summary="Active users and events by type per bucket")
async def engagement(state: State, w: WindowDep) -> dict[str, Any]:
    buckets, source = await _buckets(state, w)
    total = analytics.merge_totals(buckets)
    users = await analytics.distinct_users(state.redis, state.keys, state.settings.kafka.topic_partitions, w.grain,
                                           w.starts) if source == "redis" else None
    return {"grain": w.grain, "from": w.from_ms, "to": w.to_ms, "source": source, "active_users": users,
            "events": {k[3:]: v for k, v in total.items() if k.startswith("ev:")},
            "series": _series(buckets, lambda m, u: {"active_users": u.get("active", 0), "events": m.get("ev", 0)})}


@router.get("/funnel", summary="view -> add_to_cart -> purchase: events, distinct users and conversion")
async def funnel(state: State, w: WindowDep) -> dict[str, Any]:
    buckets, source = await _buckets(state, w)
    total = analytics.merge_totals(buckets)
    steps = []
    for s in analytics.FUNNEL:
        users = await analytics.distinct_users(state.redis, state.keys, state.settings.kafka.topic_partitions, w.grain,
                                               w.starts, f"f:{s}") if source == "redis" else None
        steps.append({"name": s, "events": total.get(f"ev:{s}", 0), "users": users})
    for prev, step in zip(steps, steps[1:], strict=False):
        step["conversion_from_previous"] = _ratio(step["users"] or 0, prev["users"] or 0)
    return {"grain": w.grain, "from": w.from_ms, "to": w.to_ms, "source": source, "steps": steps}


@router.get("/revenue", summary="Revenue, orders and average order value")
async def revenue(state: State, w: WindowDep) -> dict[str, Any]:
    buckets, source = await _buckets(state, w)
    total = analytics.merge_totals(buckets)
    rev, orders = round(total.get("rev", 0.0), 6), int(total.get("orders", 0))
    return {"grain": w.grain, "from": w.from_ms, "to": w.to_ms, "source": source, "revenue": rev, "orders": orders,
            "average_order_value": _ratio(rev, orders),
            "series": _series(buckets, lambda m, u: {"revenue": m.get("rev", 0.0), "orders": m.get("orders", 0)})}


@router.get("/attribution", summary="Purchases attributed to a recommendation click within the window")
async def attribution(state: State, w: WindowDep) -> dict[str, Any]:
    buckets, source = await _buckets(state, w)
    t = analytics.merge_totals(buckets)
    variants = []
    for k, v in sorted(t.items()):
        if k.startswith("ao:exp:"):
            exp, var = k[7:].rsplit(":", 1)
            variants.append({"experiment_id": exp, "variant_id": var, "orders": int(v),
                             "revenue": round(t.get(f"ar:exp:{exp}:{var}", 0.0), 6),
                             "impressions": int(t.get(f"xi:{exp}:{var}", 0)),
                             "recommendation_clicks": int(t.get(f"xc:{exp}:{var}", 0))})
    return {"grain": w.grain, "from": w.from_ms, "to": w.to_ms, "source": source,
            "window_s": state.settings.profiles.attribution_window_s,
            "total_revenue": round(t.get("rev", 0.0), 6), "attributed_revenue": round(t.get("ar:rec", 0.0), 6),
            "attributed_orders": int(t.get("ao:rec", 0)),
            "by_placement": {k[6:]: round(v, 6) for k, v in t.items() if k.startswith("ar:pl:")},
            "by_variant": variants}


@router.get("/journeys", summary="Top session paths (page/placement steps), by session start day")
async def journeys(state: State, w: WindowDep, limit: int = Query(10, ge=1, le=100)) -> dict[str, Any]:
    if w.grain != "day":
        w = Window(grain="day", from_ms=w.from_ms, to_ms=w.to_ms, timeframe=None)
    buckets, source = await _buckets(state, w)
    t = analytics.merge_totals(buckets)
    paths = sorted(((k[2:], int(v)) for k, v in t.items() if k.startswith("j:") and v > 0), key=lambda kv: -kv[1])
    return {"from": w.from_ms, "to": w.to_ms, "source": source,
            "journeys": [{"path": p.split(">"), "sessions": n} for p, n in paths[:limit]]}


@router.get("/placements", summary="Impressions, recommendation clicks and CTR per placement")
async def placements(state: State, w: WindowDep) -> dict[str, Any]:
    buckets, source = await _buckets(state, w)
    t = analytics.merge_totals(buckets)
    names = sorted({k[3:] for k in t if k.startswith(("pi:", "pc:"))})
    return {"grain": w.grain, "from": w.from_ms, "to": w.to_ms, "source": source, "placements": [
        {"placement": n, "impressions": int(t.get(f"pi:{n}", 0)), "clicks": int(t.get(f"pc:{n}", 0)),
         "ctr": _ratio(t.get(f"pc:{n}", 0), t.get(f"pi:{n}", 0))} for n in names]}


@router.get("/items", summary="Per-item views, clicks, impressions, CTR, carts, purchases (hour/day grains)")
async def items(state: State, w: WindowDep, item_id: str | None = Query(None, max_length=256),
                limit: int = Query(20, ge=1, le=500)) -> dict[str, Any]:
    if w.grain == "minute":
        raise HTTPException(422, [{"loc": ["query", "grain"], "msg": "per-item stats exist for hour and day",
                                   "type": "value_error"}])
    buckets, source = await _buckets(state, w)
    t = analytics.merge_totals(buckets)
    per: dict[str, dict[str, float]] = {}
    for k, v in t.items():
        if k[:3] in ("iv:", "ic:", "ia:", "ii:", "ip:", "ir:") and (item_id is None or k[3:] == item_id):
            per.setdefault(k[3:], {})[k[:2]] = v
    rows = [{"item_id": i, "views": int(s.get("iv", 0)), "clicks": int(s.get("ic", 0)),
             "impressions": int(s.get("ii", 0)), "ctr": _ratio(s.get("ic", 0), s.get("ii", 0)),
             "add_to_carts": int(s.get("ia", 0)), "units": int(s.get("ip", 0)), "revenue": round(s.get("ir", 0.0), 6)}
            for i, s in per.items()]
    rows.sort(key=lambda r: (-r["views"], r["item_id"]))
    return {"grain": w.grain, "from": w.from_ms, "to": w.to_ms, "source": source, "items": rows[:limit]}


def _dimension(t: dict[str, float], prefix: str) -> dict[str, dict[str, Any]]:
    per: dict[str, dict[str, Any]] = {}
    for k, v in t.items():
        if k.startswith(prefix):
            value, step = k[len(prefix):].rsplit(":", 1)
            per.setdefault(value, {s: 0 for s in analytics.FUNNEL})[step] = int(v)
    for counts in per.values():
        counts["conversion"] = _ratio(counts["purchase"], counts["view"])
    return dict(sorted(per.items()))


@router.get("/conversion", summary="Conversion by funnel step, device, channel, placement and experiment")
async def conversion(state: State, w: WindowDep) -> dict[str, Any]:
    """Steps: distinct users per funnel step and the share who reached the next one. Device and
    channel (of the event's context): funnel-step events and purchases per view. Placement and
    experiment variant: impressions, recommendation clicks, CTR, purchases attributed to a clicked
    list (within the attribution window), their revenue, and orders per click."""
    buckets, source = await _buckets(state, w)
    t = analytics.merge_totals(buckets)
    steps = []
    for s in analytics.FUNNEL:
        users = await analytics.distinct_users(state.redis, state.keys, state.settings.kafka.topic_partitions, w.grain,
                                               w.starts, f"f:{s}") if source == "redis" else None
        steps.append({"name": s, "events": int(t.get(f"ev:{s}", 0)), "users": users})
    for prev, step in zip(steps, steps[1:], strict=False):
        step["conversion_from_previous"] = _ratio(step["users"] or 0, prev["users"] or 0)
    first, last = steps[0]["users"] or 0, steps[-1]["users"] or 0
    placements = sorted({k[3:] for k in t if k.startswith(("pi:", "pc:"))}
                        | {k[6:] for k in t if k.startswith("ao:pl:")})
    by_placement = [{"placement": n, "impressions": int(t.get(f"pi:{n}", 0)), "clicks": int(t.get(f"pc:{n}", 0)),
                     "ctr": _ratio(t.get(f"pc:{n}", 0), t.get(f"pi:{n}", 0)),
                     "attributed_orders": int(t.get(f"ao:pl:{n}", 0)),
                     "attributed_revenue": round(t.get(f"ar:pl:{n}", 0.0), 6),
                     "conversion": _ratio(t.get(f"ao:pl:{n}", 0), t.get(f"pc:{n}", 0))} for n in placements]
    variants = sorted({k[3:] for k in t if k.startswith(("xi:", "xc:"))}
                      | {k[7:] for k in t if k.startswith("ao:exp:")})
    by_experiment = []
    for key in variants:
        exp, var = key.rsplit(":", 1)
        clicks = t.get(f"xc:{key}", 0)
        by_experiment.append({"experiment_id": exp, "variant_id": var, "impressions": int(t.get(f"xi:{key}", 0)),
                              "clicks": int(clicks), "ctr": _ratio(clicks, t.get(f"xi:{key}", 0)),
                              "orders": int(t.get(f"ao:exp:{key}", 0)),
                              "revenue": round(t.get(f"ar:exp:{key}", 0.0), 6),
                              "conversion": _ratio(t.get(f"ao:exp:{key}", 0), clicks)})
    return {"grain": w.grain, "from": w.from_ms, "to": w.to_ms, "source": source, "steps": steps,
            "overall": _ratio(last, first), "by_device": _dimension(t, "fd:"), "by_channel": _dimension(t, "fc:"),
            "by_placement": by_placement, "by_experiment": by_experiment}

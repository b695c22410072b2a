"""Analytics routes: engagement (active users, events), funnel, revenue, attribution, journeys and
per-item / per-placement stats over an event-time range, from the counters streams/analytics.py
keeps (Redis hot windows, read through aura/state/analytics.py; Cassandra ``analytics_counters``
snapshots when Redis has expired them or is down)."""

from __future__ import annotations

import logging
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query

from aura.bootstrap import cassandra_execute
from aura.layout import Tables
from aura.state import analytics
from aura.state.analytics import BucketTotals
from serving.deps import State

log = logging.getLogger(__name__)
router = APIRouter(prefix="/analytics", tags=["analytics"])

Grain = Literal["minute", "hour", "day"]
MAX_BUCKETS = 2000
MAX_EPOCH_MS = 253_402_300_799_999  # 9999-12-31: beyond it a bucket start overflows Cassandra's timestamp (fuzzer)


class Window:
    """The timeframe query parameters shared by every analytics route."""

    def __init__(self, grain: Grain = Query("hour", description="Bucket size"),  # noqa: B008
                 from_ms: int | None = Query(None, alias="from", ge=0, le=MAX_EPOCH_MS,
                                             description="Start, epoch ms (default: 24 h ago)"),
                 to_ms: int | None = Query(None, alias="to", ge=0, le=MAX_EPOCH_MS,
                                           description="End (exclusive), epoch ms (default: now)")):
        now = int(time.time() * 1000)
        self.grain = grain
        self.to_ms = to_ms if to_ms is not None else now
        self.from_ms = from_ms if from_ms is not None else self.to_ms - 24 * 3600 * 1000
        if self.from_ms >= self.to_ms:
            raise HTTPException(422, [{"loc": ["query", "from"], "msg": "from must be before to",
                                      "type": "value_error"}])
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
    st = state.statements.get("analytics_bucket")
    if st is None:
        st = state.statements["analytics_bucket"] = state.cassandra.prepare(
            f"SELECT metric, value FROM {Tables.ANALYTICS_COUNTERS} WHERE grain = ? AND bucket = ?")
    out = []
    for b in w.starts:
        rows = await cassandra_execute(state.cassandra, st.bind((w.grain, b)))
        metrics = {r.metric: r.value for r in rows if not r.metric.startswith("u:")}
        users = {r.metric[2:]: int(r.value) for r in rows if r.metric.startswith("u:")}
        out.append(BucketTotals(w.grain, b, metrics, users))
    return out, "cassandra"


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
        w = Window(grain="day", from_ms=w.from_ms, to_ms=w.to_ms)
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

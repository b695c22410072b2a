"""Acquisition cohorts and retention (``GET /v1/analytics/cohorts``): per week or month of first
sight, the users acquired and, per following period, the users active, retention, orders, revenue
and cumulative revenue per acquired user, from the counters streams/retention.py keeps (format in
aura/state/retention.py; partitions' shares summed here, in one pipeline).
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query

from aura.state import retention
from serving.deps import State
from serving.timeparams import parse_time, time_query

router = APIRouter(prefix="/analytics/cohorts", tags=["analytics"])

_EXAMPLE = {"grain": "week", "from": 1793404800000, "to": 1796083200000, "cohorts": [
    {"cohort": "2026-11-02", "cohort_start": 1793577600000, "users": 1200, "periods": [
        {"period": 0, "start": "2026-11-02", "active": 1200, "retention": 1.0, "orders": 310, "revenue": 15200.5,
         "cumulative_revenue_per_user": 12.6671},
        {"period": 1, "start": "2026-11-09", "active": 420, "retention": 0.35, "orders": 95, "revenue": 4810.0,
         "cumulative_revenue_per_user": 16.6754}]}]}
DEFAULT_PERIODS = {"week": 12, "month": 12}


@router.get("", summary="Acquisition cohorts (week or month of first sight): retention and revenue per period",
            responses={200: {"content": {"application/json": {"example": _EXAMPLE}}}})
async def cohorts(
        state: State,
        grain: Annotated[Literal["week", "month"], Query(description="Cohort and period grain")] = "week",
        from_ms: int | str | None = time_query("from", "Cohorts acquired from (default: 12 periods back)"),
        to_ms: int | str | None = time_query("to", "Cohorts acquired before (default: now)"),
        periods: Annotated[int, Query(ge=1, le=retention.MAX_PERIODS, description="Periods per cohort")] = 12,
) -> dict[str, Any]:
    now = int(time.time() * 1000)
    end = parse_time(str(to_ms), "to") if to_ms is not None else None
    begin = parse_time(str(from_ms), "from") if from_ms is not None else None
    to = end if end is not None else now + 1
    start = begin if begin is not None else retention.period_start(now, grain) - _back(grain, now)
    if start >= to:
        raise HTTPException(422, [{"loc": ["query", "from"], "msg": "from must be before to", "type": "value_error"}])
    pipe = state.redis.pipeline(transaction=False)
    for p in range(state.settings.kafka.topic_partitions):
        pipe.hgetall(state.keys.retention_counts(p, grain))
    try:
        shares = await pipe.execute()
    except Exception as exc:  # noqa: BLE001 - Redis down
        raise HTTPException(503, "cohort counters unavailable (Redis)") from exc
    rows = retention.table(retention.merge(shares), grain, start, to, periods, now)
    return {"grain": grain, "from": start, "to": to, "count": len(rows), "cohorts": rows}


def _back(grain: str, now: int) -> int:
    """The span of the default look-back: the 11 periods before the current one."""
    s = retention.period_start(now, grain)
    first = s
    for _ in range(DEFAULT_PERIODS[grain] - 1):
        first = retention.period_start(first - 1, grain)
    return s - first

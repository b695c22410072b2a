"""Acquisition cohorts and retention (``GET /v1/analytics/cohorts``): per week or month of first
sight, the users acquired and, per following period, the users active, retention, orders, revenue
and cumulative revenue per acquired user, from the counters streams/retention.py keeps (format in
aura/state/retention.py; partitions' shares summed here, in one pipeline).

Redis is the source of truth for a partition while it holds the partition's fence and is not behind
the Cassandra copy (``retention_counts``); otherwise (Redis lost it, or is still refolding it) the
partition's counters are read from Cassandra.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query

from aura import layout
from aura.bootstrap import cassandra_execute
from aura.layout import Tables
from aura.state import retention
from serving.deps import State
from serving.timeparams import parse_time, time_query

router = APIRouter(prefix="/analytics/cohorts", tags=["analytics"])

_EXAMPLE = {"grain": "week", "from": 1793404800000, "to": 1796083200000, "sources": ["redis"], "cohorts": [
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
    parts = range(state.settings.kafka.topic_partitions)
    pipe = state.redis.pipeline(transaction=False)
    for p in parts:
        pipe.get(state.keys.retention_fence(p))
        pipe.hgetall(state.keys.retention_counts(p, grain))
    try:
        raw = await pipe.execute()
    except Exception:  # noqa: BLE001 - Redis down: the durable copy answers alone
        raw = None
    fences = {p: int(raw[2 * p]) for p in parts if raw is not None and raw[2 * p] is not None}
    shares = {p: raw[2 * p + 1] for p in parts} if raw is not None else {}
    durable_fences: dict[int, int] = {}
    durable: dict[int, dict[str, float]] = {}
    if state.cassandra is not None:
        try:
            durable_fences, durable = await _durable(state, grain, start, to, fences)
        except Exception as exc:  # noqa: BLE001 - Cassandra down: Redis answers alone
            if raw is None:
                raise HTTPException(503, "cohort counters unavailable (Redis and Cassandra)") from exc
    elif raw is None:
        raise HTTPException(503, "cohort counters unavailable (Redis)")
    source = retention.pick_sources(fences, durable_fences)
    chosen = [durable.get(p, {}) if source.get(p) == "durable" else shares.get(p, {}) for p in parts]
    rows = retention.table(retention.merge(chosen), grain, start, to, periods, now)
    return {"grain": grain, "from": start, "to": to, "count": len(rows), "cohorts": rows,
            "sources": sorted(set(source.values()))}


async def _durable(state: Any, grain: str, lo: int, hi: int, fences: dict[int, int]
                   ) -> tuple[dict[int, int], dict[int, dict[str, float]]]:
    """The Cassandra copy: every partition's fence, and the counters of the cohorts in [lo, hi) of
    the partitions Redis lacks or is behind on (none read when Redis is current everywhere)."""
    st = state.statements.get("retention_counts")
    if st is None:
        st = state.statements["retention_counts"] = state.cassandra.prepare(
            f"SELECT part, counter, value FROM {Tables.RETENTION_COUNTS} WHERE source = ? AND grain = ? AND cohort = ?")
    src = layout.topic(state.settings, layout.BEHAVIOR)
    rows = await cassandra_execute(state.cassandra, st.bind((src, grain, retention.FENCE_COHORT)))
    dfences = {r.part: int(r.value) for r in rows if r.counter == retention.FENCE_COUNTER}
    wanted = {p for p, s in retention.pick_sources(fences, dfences).items() if s == "durable"}
    out: dict[int, dict[str, float]] = {}
    if not wanted:
        return dfences, out
    cohorts = retention.cohort_starts(lo, hi, grain)
    results = await asyncio.gather(*(cassandra_execute(state.cassandra, st.bind((src, grain, c))) for c in cohorts))
    for res in results:
        for r in res:
            if r.part in wanted:
                out.setdefault(r.part, {})[r.counter] = r.value
    return dfences, out


def _back(grain: str, now: int) -> int:
    """The span of the default look-back: the 11 periods before the current one."""
    s = retention.period_start(now, grain)
    first = s
    for _ in range(DEFAULT_PERIODS[grain] - 1):
        first = retention.period_start(first - 1, grain)
    return s - first

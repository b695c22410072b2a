"""Insight routes (``/v1/analytics/insights``): the insights the stream found (GET, from the Cassandra
history the insight agent writes) and an on-demand run (POST, as in the seed: a timeframe and a
focus) that runs the same engine (aura/insights) over the minute counters of the timeframe's most
recent hours, next to the stored history of the whole timeframe.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field

from aura.bootstrap import cassandra_execute
from aura.insights.engine import FOCUSES, METRICS, MINUTE, SEVERITIES, Engine
from aura.layout import Tables
from aura.state import analytics
from aura.state import insights as istate
from serving.deps import State
from serving.timeparams import parse_time, time_query

router = APIRouter(prefix="/analytics/insights", tags=["analytics"])

T0 = 1795784400000  # 2026-11-27 09:00 UTC
_INSIGHT = {
    "insight_id": f"conversion-{T0}", "metric": "conversion", "focus": "conversion", "kind": "level_shift",
    "direction": -1, "status": "open", "severity": "critical", "started_at": T0, "detected_at": T0 + 240_000,
    "updated_at": T0 + 600_000, "ended_at": None, "before": 0.041, "after": 0.026, "dimension": "device",
    "dimension_value": "mobile", "explained_share": 0.8, "segment_before": 0.04, "segment_after": 0.019,
    "causes": [{"dimension": "device", "value": "mobile", "share": 0.8, "surprise": 0.0123, "before": 0.04,
                "after": 0.019}],
    "series": ["conversion|device|mobile"], "revision": 7,
    "text": "Checkout conversion fell from 4.10% to 2.60% since 09:00 UTC; 80% of the drop is on device mobile "
            "(4.00% to 1.90%).",
}
_LIST_EXAMPLE = {"from": T0 - 86_400_000, "to": T0 + 660_000, "count": 1, "insights": [_INSIGHT]}
_RUN_EXAMPLE = {"timeframe": "6h", "focus": ["conversion"], "metrics": ["conversion", "variant_conversion"],
                "analysed": {"from": T0 - 5 * 3_600_000, "to": T0 + 3_600_000, "minutes_with_data": 360},
                "detected": [_INSIGHT], "insights": [_INSIGHT]}


def _example(body: dict[str, Any]) -> dict[int | str, dict[str, Any]]:
    return {200: {"content": {"application/json": {"example": body}}}}

MAX_TIMEFRAME_DAYS = 90
ONDEMAND_MAX_MIN = 6 * 60       # minutes analysed by an on-demand run (the most recent of the timeframe)
ONDEMAND_WARMUP_MIN = 120       # minutes read before them to warm the models up
TIMEFRAME = re.compile(r"^(\d{1,4})([mhd])$")
UNIT_MS = {"m": MINUTE, "h": 60 * MINUTE, "d": 24 * 60 * MINUTE}
Focus = Literal["conversion", "revenue", "engagement", "views", "ctr", "variant_conversion", "variant_revenue",
                "campaign_failures", "campaign_clicks"]
Severity = Literal["info", "warning", "critical"]
Status = Literal["open", "closed"]


def timeframe_ms(tf: str) -> int:
    m = TIMEFRAME.match(tf)
    if m is None:
        raise HTTPException(422, [{"loc": ["timeframe"], "msg": "timeframe must look like 30m, 24h or 30d",
                                   "type": "value_error"}])
    ms = int(m.group(1)) * UNIT_MS[m.group(2)]
    if ms <= 0 or ms > MAX_TIMEFRAME_DAYS * UNIT_MS["d"]:
        raise HTTPException(422, [{"loc": ["timeframe"], "msg": f"timeframe must be within {MAX_TIMEFRAME_DAYS}d",
                                   "type": "value_error"}])
    return ms


def metrics_of(focus: list[str]) -> tuple[str, ...]:
    """The metrics of the on-demand run: those of the minute counters (campaign figures are not in
    them) matching the focus."""
    return tuple(name for name, m in METRICS.items() if m.source == "minute"
                 and (not focus or m.focus in focus or name in focus))


async def history(state: Any, from_ms: int, to_ms: int, focus: list[str], severity: str | None,
                  status: str | None, limit: int) -> list[dict[str, Any]]:
    """Stored insights started in [from_ms, to_ms), newest first."""
    if state.cassandra is None:
        raise HTTPException(503, "insight history unavailable (Cassandra)")
    st = state.statements.get("insights_day")
    if st is None:
        st = state.statements["insights_day"] = state.cassandra.prepare(
            f"SELECT doc FROM {Tables.INSIGHTS} WHERE day = ? AND started_at >= ? AND started_at < ?")
    out: list[dict[str, Any]] = []
    for day in istate.days(from_ms, to_ms):
        for r in await cassandra_execute(state.cassandra, st.bind((day, from_ms, to_ms))):
            doc = json.loads(r.doc)
            if (not focus or any(istate.matches(doc, f, None, None) for f in focus)) \
                    and istate.matches(doc, None, severity, status):
                out.append(doc)
                if len(out) >= limit:
                    return out
    return out


@router.get("", summary="Insights found by the stream: anomalies, level shifts and trends, each explained",
            responses=_example(_LIST_EXAMPLE))
async def list_insights(
        state: State,
        from_ms: int | str | None = time_query("from", "Start (default: from timeframe)"),
        to_ms: int | str | None = time_query("to", "End, exclusive (default: now)"),
        timeframe: Annotated[str, Query(max_length=8, description="Look-back when from is not given")] = "24h",
        focus: Annotated[list[Focus] | None, Query(description="conversion, revenue, engagement (or a metric)")] = None,
        severity: Annotated[Severity | None, Query(description="Minimum severity")] = None,
        status: Annotated[Status | None, Query(description="open or closed")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
    end = parse_time(str(to_ms), "to") if to_ms is not None else None
    begin = parse_time(str(from_ms), "from") if from_ms is not None else None
    to = end if end is not None else int(time.time() * 1000) + MINUTE
    start = begin if begin is not None else max(0, to - timeframe_ms(timeframe))
    if start >= to:
        raise HTTPException(422, [{"loc": ["query", "from"], "msg": "from must be before to", "type": "value_error"}])
    found = await history(state, start, to, list(focus or []), severity, status, limit)
    return {"from": start, "to": to, "count": len(found), "insights": found}


class InsightRun(BaseModel):
    """An on-demand insight run (the seed's ``POST /analytics/insights``)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"timeframe": "6h", "focus": ["conversion", "engagement"], "severity": "warning"}]})
    timeframe: str = Field("24h", max_length=8, description="e.g. 30m, 6h, 24h, 30d")
    focus: list[Focus] = Field(default_factory=list, max_length=5,
                               description="conversion, revenue, engagement (or a metric); empty: all")
    severity: Severity | None = None


def run_engine(frames: list[tuple[int, Any]], metrics: tuple[str, ...], report_from: int) -> list[dict[str, Any]]:
    """The engine over ``frames`` (CPU work: called on a thread); insights detected from ``report_from``."""
    eng = Engine(metrics=metrics, settle_ms=0)
    found: dict[str, dict[str, Any]] = {}
    for start, frame in frames:
        for ins in eng.step(start, frame):
            if ins.detected_at >= report_from:
                found[ins.insight_id] = istate.to_record(ins)
    return sorted(found.values(), key=lambda d: -d["started_at"])


@router.post("", summary="Run insight detection now over a timeframe (and list the stored insights in it)",
             responses=_example(_RUN_EXAMPLE))
async def run_insights(state: State, body: InsightRun) -> dict[str, Any]:
    now = int(time.time() * 1000)
    tf = timeframe_ms(body.timeframe)
    metrics = metrics_of(list(body.focus))
    end = now - now % MINUTE
    analysed = min(tf // MINUTE, ONDEMAND_MAX_MIN)
    first = end - (analysed + ONDEMAND_WARMUP_MIN) * MINUTE
    starts = analytics.bucket_starts("minute", first, end, ONDEMAND_MAX_MIN + ONDEMAND_WARMUP_MIN)
    try:
        buckets = await analytics.read_buckets(state.redis, state.keys, state.settings.kafka.topic_partitions,
                                               "minute", starts, hlls=())
    except Exception as exc:  # noqa: BLE001 - Redis down
        raise HTTPException(503, "minute counters unavailable (Redis)") from exc
    frames = [(b.start, istate.frame_of(b)) for b in buckets if b.metrics]
    detected = await asyncio.to_thread(run_engine, frames, metrics, end - analysed * MINUTE)
    if body.severity:
        detected = [d for d in detected if SEVERITIES.index(d["severity"]) >= SEVERITIES.index(body.severity)]
    stored = await history(state, now - tf, now + MINUTE, list(body.focus), body.severity, None, 1000) \
        if state.cassandra is not None else []
    return {"timeframe": body.timeframe, "focus": list(body.focus) or list(FOCUSES), "metrics": list(metrics),
            "analysed": {"from": end - analysed * MINUTE, "to": end, "minutes_with_data": len(frames)},
            "detected": detected, "insights": stored}

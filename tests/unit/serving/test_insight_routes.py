"""The insight routes' pure parts: timeframes, focus, and the on-demand run over minute frames."""

from __future__ import annotations

import pytest
from fastapi import HTTPException

from aura.insights.engine import MINUTE
from aura.state import insights as istate
from aura.state.analytics import BucketTotals
from bench.insight_traffic import T0_MS, Incident, Scenario, records
from serving.routes.insights import metrics_of, run_engine, timeframe_ms


def test_timeframes() -> None:
    assert timeframe_ms("30m") == 30 * MINUTE and timeframe_ms("24h") == 1440 * MINUTE
    assert timeframe_ms("90d") == 90 * 1440 * MINUTE
    for bad in ("", "1w", "91d", "0h", "-1h", "1.5h"):
        with pytest.raises(HTTPException):
            timeframe_ms(bad)


def test_focus_picks_metrics() -> None:
    # campaign figures are not in the minute counters the on-demand run reads
    assert metrics_of([]) == ("conversion", "revenue", "views", "ctr", "variant_conversion", "variant_revenue")
    assert metrics_of(["engagement"]) == ("views", "ctr")
    assert metrics_of(["conversion"]) == ("conversion", "variant_conversion")
    assert metrics_of(["conversion", "ctr"]) == ("conversion", "ctr", "variant_conversion")
    assert metrics_of(["campaign_failures"]) == ()


def test_on_demand_run_finds_the_incident_from_the_counters() -> None:
    sc = Scenario(seed=5, minutes=200, incidents=[Incident("ctr", "placement", "homepage", 120, 170, 0.4)])
    frames = []
    for start, recs in records(sc, 3000.0):
        # the counters as the analytics hashes hold them, turned back into frames by the state module
        m: dict[str, float] = {}
        for r in recs:
            ev, dim, val = r["events"], r["dimension"], r["dimension_value"]
            if dim == "all":
                m |= {"ev:view": ev.get("view", 0), "orders": r["orders"], "rev": r["revenue"],
                      "ev:impression": ev.get("impression", 0),
                      "ev:recommendation_click": ev.get("recommendation_click", 0)}
            elif dim in ("placement", "experiment"):
                p = "p" if dim == "placement" else "x"
                m |= {f"{p}i:{val}": ev.get("impression", 0), f"{p}c:{val}": ev.get("recommendation_click", 0)}
            else:
                m |= {f"dm:{dim}={val}:view": ev.get("view", 0), f"do:{dim}={val}": r["orders"],
                      f"dr:{dim}={val}": r["revenue"]}
        frames.append((start, istate.frame_of(BucketTotals("minute", start, m, {}))))
    found = run_engine(frames, ("ctr",), T0_MS + 100 * MINUTE)
    assert [(d["metric"], d["dimension"], d["dimension_value"]) for d in found] == [("ctr", "placement", "homepage")]
    assert found[0]["status"] == "closed"
    assert run_engine(frames, ("ctr",), T0_MS + 190 * MINUTE) == []  # nothing detected after the window start

"""Per-minute campaign figures from the running totals on ``agg.campaigns`` (pure).

The campaign drainer publishes each campaign's cumulative counters (sent, failed, opened, clicked,
conversions) about once a minute (``AURA_CAMPAIGN_AGG_INTERVAL_S``); the insight engine watches
rates per minute, so it differences consecutive snapshots of a campaign and books the increase on
the minute of the later snapshot's ``emitted_at`` (the campaign clock is the wall clock, which is
event time for messages sent now). Only whole-campaign records (variant null) are used: opens and
clicks are counted per campaign only. A total that goes down (a campaign re-created under its id, a
counter reset) restarts the differencing without a point; a snapshot older than the last one seen
(another partition's order, a replay) is ignored.
"""

from __future__ import annotations

from typing import Any

COUNTERS = ("sent", "failed", "opened", "clicked", "treated_conversions")
CAMPAIGN_ID_MAX = 80  # campaign ids longer than this are not watched (bounded series names)


class CampaignRecordError(ValueError):
    """A malformed agg.campaigns record (the agent dead-letters it)."""


def totals(rec: dict[str, Any]) -> dict[str, float]:
    """The cumulative counters of one record; raises CampaignRecordError on a malformed one."""
    out: dict[str, float] = {}
    for k in COUNTERS:
        v = rec.get(k, 0)
        if isinstance(v, bool) or not isinstance(v, int | float) or not (0 <= v < 1e15):
            raise CampaignRecordError(f"counter {k} out of range: {v!r}")
        out[k] = float(v)
    return out


def delta(last: dict[str, float] | None, now: dict[str, float]) -> dict[str, float] | None:
    """The increase since the previous snapshot as engine counters (None: no point: the first
    snapshot, or totals that went down)."""
    if last is None or any(now[k] < last.get(k, 0.0) for k in COUNTERS):
        return None
    d = {k: now[k] - last.get(k, 0.0) for k in COUNTERS}
    return {"sent": d["sent"], "failed": d["failed"], "attempts": d["sent"] + d["failed"],
            "opened": d["opened"], "clicked": d["clicked"], "conversions": d["treated_conversions"]}

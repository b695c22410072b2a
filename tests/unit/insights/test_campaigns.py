"""Campaign figures in the insight engine: the running totals of agg.campaigns differenced per
minute; a delivery-failure spike or a click-rate collapse of one campaign is one insight naming it."""

from __future__ import annotations

import pytest

from aura.insights import campaigns
from aura.insights.engine import MINUTE, Engine
from aura.state import insights as state
from bench.insight_traffic import T0_MS as T0
from bench.insight_traffic import campaign_snapshots as snapshots


def run(minutes: int, seed: int, **kw) -> tuple[Engine, dict[str, list]]:
    eng = Engine()
    seen: dict[str, list] = {}
    for start, recs in snapshots(minutes, seed, **kw):
        for r in recs:
            assert eng.add_campaign(r)
        for ins in eng.flush(start + eng.settle_ms):
            seen.setdefault(ins.insight_id, []).append((ins.status, ins.dimension, ins.dimension_value, ins.text))
    return eng, seen


def test_deltas_of_the_running_totals() -> None:
    a = campaigns.totals({"sent": 10, "failed": 1, "opened": 4, "clicked": 2, "treated_conversions": 1})
    b = campaigns.totals({"sent": 30, "failed": 5, "opened": 9, "clicked": 3, "treated_conversions": 1})
    assert campaigns.delta(None, a) is None
    assert campaigns.delta(a, b) == {"sent": 20, "failed": 4, "attempts": 24, "opened": 5, "clicked": 1,
                                     "conversions": 0}
    assert campaigns.delta(b, a) is None  # a reset: no point
    with pytest.raises(campaigns.CampaignRecordError):
        campaigns.totals({"sent": -1})
    with pytest.raises(campaigns.CampaignRecordError):
        campaigns.totals({"sent": float("nan")})


def test_snapshots_book_their_increase_on_their_minute_once() -> None:
    eng = Engine()
    base = {"campaign_id": "c1", "variant": None, "failed": 0, "opened": 0, "clicked": 0, "treated_conversions": 0}
    assert eng.add_campaign({**base, "sent": 100, "emitted_at": T0 + 5_000})
    assert eng.add_campaign({**base, "sent": 160, "emitted_at": T0 + MINUTE + 5_000})
    assert eng.add_campaign({**base, "sent": 160, "emitted_at": T0 + MINUTE + 5_000})  # replayed: ignored
    assert eng.add_campaign({**base, "sent": 150, "emitted_at": T0 + 30_000})  # older: ignored
    assert eng.pending == {T0 + MINUTE: {("campaign", "c1"): {
        "sent": 60.0, "failed": 0.0, "attempts": 60.0, "opened": 0.0, "clicked": 0.0, "conversions": 0.0}}}
    eng.flush(T0 + 10 * MINUTE)
    assert not eng.add_campaign({**base, "sent": 200, "emitted_at": T0 + MINUTE + 50_000})  # its minute is final
    for bad in ({**base, "campaign_id": ""}, {**base, "campaign_id": 7}, {**base, "sent": -3, "emitted_at": T0},
                {**base, "sent": 1}):
        with pytest.raises((ValueError, KeyError)):
            eng.add_campaign(bad)


def test_a_failure_spike_of_one_campaign_is_one_insight_naming_it() -> None:
    eng, seen = run(200, seed=3, fail={"promo": (110, 140, 0.2)})
    assert list(k.split("-")[0] for k in seen) == ["campaign_failures"], seen
    (iid, history), = seen.items()
    assert T0 + 105 * MINUTE <= int(iid.split("-")[1]) <= T0 + 115 * MINUTE
    assert history[0][1:3] == ("campaign", "promo")
    assert "Campaign delivery failures rose from " in history[0][3] and "is on campaign promo" in history[0][3]
    assert history[-1][0] == "closed" and not eng.open


def test_a_click_rate_collapse_of_one_campaign_is_one_insight_naming_it() -> None:
    eng, seen = run(200, seed=4, click={"welcome": (110, 150, 0.01)})
    assert list(k.split("-")[0] for k in seen) == ["campaign_clicks"], seen
    history = next(iter(seen.values()))
    assert history[-1][1:3] == ("campaign", "welcome") and "Campaign click rate fell" in history[-1][3]
    assert history[-1][0] == "closed"


def test_clean_campaigns_raise_nothing_and_the_state_keeps_the_totals() -> None:
    eng, seen = run(240, seed=5)
    assert seen == {}
    back = state.unpack(state.pack(state.Saved(eng)), 1).engine
    assert back.campaign_last == eng.campaign_last and len(back.campaign_last) == 2

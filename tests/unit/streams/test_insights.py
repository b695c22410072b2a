"""The insight agent's pure steps (streams/insights.py): decoding with dead letters, applying above
the saved offsets, and the minute aggregates per dimension it reads (streams/aggregates.py,
streams/analytics.py)."""

from __future__ import annotations

from aura.insights.engine import Engine
from aura.state import analytics
from aura.state import insights as state
from aura.state.analytics import BucketTotals
from schemas.codec import codec
from schemas.events import Behavior
from streams import aggregates
from streams.analytics import event_metrics
from streams.insights import apply, decode
from streams.intake import Accepted
from streams.profiles import Fact

T = 1_700_000_100_000
DEC = codec("agg_minute_metrics")


class Msg:
    def __init__(self, partition: int, offset: int, value: bytes | None) -> None:
        self._p, self._o, self._v = partition, offset, value

    def topic(self) -> str:
        return "t.agg.minute_metrics"

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def key(self) -> bytes:
        return b"k"

    def value(self) -> bytes | None:
        return self._v

    def error(self) -> None:
        return None


def rec(start: int, views: int, **kw) -> dict:
    return {"window_start": start, "window_end": start + 60_000, "dimension": "all", "dimension_value": "",
            "events": {"view": views}, "orders": 1, "revenue": 3.0, "revision": 1, "emitted_at": start, **kw}


def test_decode_dead_letters_garbage_and_skips_tombstones() -> None:
    msgs = [Msg(0, 1, DEC.encode(rec(T, 10))), Msg(0, 2, b"\x00garbage"), Msg(1, 5, None)]
    d = decode(msgs, DEC)
    assert [r[0].offset for r in d.records] == [1]
    assert [(x.reason, x.record.offset) for x in d.dead] == [("bad_aggregate", 2)]


def test_apply_skips_what_the_saved_offsets_cover_and_dead_letters_bad_counters() -> None:
    saved = state.Saved(Engine(), {0: 5})
    good = DEC.encode(rec(T, 10))
    bad = DEC.encode(rec(T, 10, events={"view": -3}))
    d = decode([Msg(0, 5, good), Msg(0, 6, good), Msg(0, 7, bad)], DEC)
    insights, dead = apply(saved, d)
    assert saved.offsets == {0: 7}
    assert [x.record.offset for x in dead] == [7] and "out of range" in dead[0].detail
    assert list(saved.engine.pending) == [T] and insights == []
    # a replay of the same records changes nothing
    before = dict(saved.engine.pending[T][("all", "")])
    apply(saved, d)
    assert saved.engine.pending[T][("all", "")] == before


def test_idle_flushes_every_pending_minute() -> None:
    saved = state.Saved(Engine(), {})
    apply(saved, decode([Msg(0, 1, DEC.encode(rec(T, 10)))], DEC))
    assert saved.engine.pending
    apply(saved, decode([], DEC), idle=True)
    assert not saved.engine.pending and saved.engine.last_minute == T


def test_minute_records_per_dimension_are_valid_avro() -> None:
    m = {"ev": 5, "ev:view": 4, "xi:exp:A": 7, "xc:exp:A": 1,
         "dm:device=mobile:view": 3, "dm:device=mobile:purchase": 1, "do:device=mobile": 1, "dr:device=mobile": 9.5,
         "dm:category=toys:view": 2}
    recs = aggregates.records(BucketTotals("minute", analytics.bucket_start(T, "minute"), m, {"active": 1}), T)
    by_key = {r.key.split("|", 1)[1]: r.value for r in recs}
    assert by_key["device|mobile"]["events"] == {"view": 3, "purchase": 1}
    assert by_key["device|mobile"]["revenue"] == 9.5 and by_key["device|mobile"]["orders"] == 1
    assert by_key["category|toys"]["events"] == {"view": 2}
    assert by_key["experiment|exp:A"]["events"] == {"impression": 7, "recommendation_click": 1}
    for r in recs:
        assert DEC.decode(DEC.encode(r.value))["dimension_value"] == r.value["dimension_value"]


def test_event_metrics_count_views_and_purchases_per_dimension() -> None:
    raw = {"context": {"device": "mobile", "channel": "app", "locale": "fr-FR"},
           "order": {"order_id": "o", "lines": [{"item_id": "i1", "quantity": 2, "unit_price": 5.0}]}}
    ev = Behavior(event_id="e", event_type="purchase", user_id="u", item_id="i1", event_time=T, revenue=10.0, raw=raw)
    out = {(g, m): a for g, _b, m, a in event_metrics(Fact(Accepted(ev, 0, 1), T, category="toys"))}
    for dim, val in (("device", "mobile"), ("channel", "app"), ("country", "FR"), ("category", "toys")):
        assert out[("minute", f"dm:{dim}={val}:purchase")] == 1
        assert out[("minute", f"do:{dim}={val}")] == 1 and out[("minute", f"dr:{dim}={val}")] == 10.0
    assert not any(m.startswith("dm:") for g, m in out if g != "minute")
    long_device = {**raw, "context": {"device": "x" * 41}}
    ev2 = Behavior(event_id="e2", event_type="view", user_id="u", item_id="i1", event_time=T, raw=long_device)
    assert not any(m.startswith("dm:device") for _g, _b, m, _a in event_metrics(Fact(Accepted(ev2, 0, 2), T)))


CDEC = codec("agg_campaign")


class CampaignMsg(Msg):
    def topic(self) -> str:
        return "t.agg.campaigns"


def campaign(sent: int, at: int, **kw) -> dict:
    return {"campaign_id": "promo", "variant": None, "status": "running", "channel": "email",
            "goal_event_type": "purchase", "sent": sent, "failed": 1, "emitted_at": at, **kw}


def test_campaign_records_are_applied_once_above_their_own_offsets() -> None:
    saved = state.Saved(Engine(), {0: 9})
    msgs = [Msg(0, 9, DEC.encode(rec(T, 10))),  # covered by the minute_metrics offset
            CampaignMsg(0, 3, CDEC.encode(campaign(100, T))),
            CampaignMsg(0, 4, CDEC.encode(campaign(180, T + 60_000))),
            CampaignMsg(0, 5, b"\x00garbage"),
            CampaignMsg(1, 2, CDEC.encode(campaign(5, T + 60_000, campaign_id="")))]
    d = decode(msgs, DEC, CDEC, "t.agg.campaigns")
    assert [r[0].offset for r in d.campaigns] == [3, 4, 2] and [r[0].offset for r in d.records] == [9]
    assert [x.record.offset for x in d.dead] == [5]
    _ins, dead = apply(saved, d)
    assert [x.record.offset for x in dead] == [2] and "campaign_id" in dead[0].detail
    assert saved.offsets == {0: 9} and saved.campaign_offsets == {0: 4, 1: 2}
    minute = T + 60_000 - (T + 60_000) % 60_000
    assert saved.engine.pending == {minute: {("campaign", "promo"): {
        "sent": 80.0, "failed": 0.0, "attempts": 80.0, "opened": 0.0, "clicked": 0.0, "conversions": 0.0}}}
    # restored from its saved state, a replay of the round changes nothing
    back = state.unpack(state.pack(saved), 2)
    assert back.campaign_offsets == {0: 4, 1: 2}
    apply(back, d)
    assert back.engine.pending == saved.engine.pending

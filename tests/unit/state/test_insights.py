"""The insight state format: the saved engine with its offsets, the record, the history rows, the
API's filters and the frame built from the minute counters."""

from __future__ import annotations

import pytest

from aura.insights.engine import Engine, Insight
from aura.state import insights as state
from aura.state.analytics import BucketTotals, country_of, parse_dim_metric
from schemas.codec import codec


def insight(**kw) -> Insight:
    base = dict(insight_id="conversion-60000", metric="conversion", focus="conversion", kind="level_shift",
                direction=-1, started_at=60_000, detected_at=240_000, updated_at=300_000, severity="critical",
                before=0.041, after=0.026, dimension="device", dimension_value="mobile", explained_share=0.8,
                segment_before=0.04, segment_after=0.019, series=["conversion|device|mobile"],
                causes=[{"dimension": "device", "value": "mobile", "share": 0.8, "surprise": 0.01, "before": 0.04,
                         "after": 0.019}], text="Checkout conversion fell.", revision=3)
    base.update(kw)
    return Insight(**base)


def test_pack_unpack_round_trip_keeps_offsets_and_engine() -> None:
    eng = Engine()
    eng.add({"window_start": 0, "dimension": "all", "events": {"view": 5}, "orders": 1, "revenue": 2.0})
    saved = state.unpack(state.pack(state.Saved(eng, {0: 41, 3: 7})), 9)
    assert saved.offsets == {0: 41, 3: 7} and saved.seq == 9
    assert saved.engine.pending == eng.pending


@pytest.mark.parametrize("blob", [b"", b"XXXX", state.MAGIC + b"not a pickle"])
def test_unreadable_state_is_a_clear_error(blob: bytes) -> None:
    with pytest.raises(state.StateFormatError):
        state.unpack(blob, 1)


def test_redis_value_carries_the_sequence() -> None:
    assert state.split_redis_value(None) == (None, None)
    blob = state.MAGIC + b"\n\x00\x80"
    assert state.split_redis_value("12\n" + state.redis_blob(blob)) == (12, blob)
    with pytest.raises(state.StateFormatError):
        state.split_redis_value("12\n!!not base64")


def test_record_is_valid_avro_and_the_row_its_doc() -> None:
    ins = insight()
    c = codec("agg_insight")
    back = c.decode(c.encode(state.to_record(ins)))
    assert back["insight_id"] == "conversion-60000" and back["causes"][0]["value"] == "mobile"
    assert back["ended_at"] is None and back["segment_after"] == pytest.approx(0.019)
    row = state.row(ins)
    assert row[:3] == (0, 60_000, "conversion-60000") and row[6] == "open" and row[8] == 3


def test_days_newest_first_and_filters() -> None:
    day = state.DAY_MS
    assert state.days(day + 5, 3 * day + 1) == [3, 2, 1]
    doc = state.to_record(insight())
    assert state.matches(doc, "conversion", "warning", "open")
    assert not state.matches(doc, "revenue", None, None)
    assert not state.matches({**doc, "severity": "info"}, None, "warning", None)
    assert not state.matches(doc, None, None, "closed")


def test_dimension_metric_names() -> None:
    assert parse_dim_metric("dm:device=mobile:view") == ("device", "mobile", "view")
    assert parse_dim_metric("dr:category=home:garden") == ("category", "home:garden", "revenue")
    assert parse_dim_metric("do:country=US") == ("country", "US", "orders")
    assert parse_dim_metric("dm:planet=mars:view") is None and parse_dim_metric("ev:view") is None
    assert country_of("en-US") == "US" and country_of("fr_FR") == "FR" and country_of("en") is None


def test_frame_of_a_minute_bucket() -> None:
    m = {"ev:view": 100, "orders": 4, "rev": 80.0, "ev:impression": 50, "ev:recommendation_click": 5,
         "pi:homepage": 30, "pc:homepage": 3, "xi:exp:A": 20, "xc:exp:A": 2,
         "ao:exp:exp:A": 1, "ar:exp:exp:A": 25.0,
         "dm:device=mobile:view": 60, "dm:device=mobile:purchase": 3, "do:device=mobile": 3, "dr:device=mobile": 60.0}
    f = state.frame_of(BucketTotals("minute", 0, m, {}))
    assert f[("all", "")]["views"] == 100 and f[("all", "")]["clicks"] == 5
    assert f[("placement", "homepage")] == {"impressions": 30.0, "clicks": 3.0}
    assert f[("experiment", "exp:A")] == {"impressions": 20.0, "clicks": 2.0, "orders": 1.0, "revenue": 25.0}
    assert f[("device", "mobile")] == {"views": 60.0, "add_to_cart": 0.0, "orders": 3.0, "revenue": 60.0}

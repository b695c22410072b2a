"""The profile model's math and the views the API serves (aura/state/profiles.py)."""

from __future__ import annotations

import json

import pytest

from aura.settings import Settings
from aura.state import profiles
from aura.state.profiles import ATTRS_FENCE, Profile, ProfileConfig
from tests.unit.state.test_profile_codec import FULL

DAY = profiles.DAY_MS
CFG = ProfileConfig()


def test_config_from_settings():
    s = Settings().replace(price_bands="10, 50", segment_rules='{"vip": [["ltv", ">", 1]]}')
    cfg = ProfileConfig.from_settings(s)
    assert cfg.price_bands == (10.0, 50.0) and cfg.rules == {"vip": [["ltv", ">", 1]]}
    half_life_days = Settings().profiles.engagement_half_life_days
    assert ProfileConfig.from_settings(Settings()).engagement_half_life_ms == half_life_days * DAY


def test_decay_math():
    assert profiles.decay(8.0, 0, 2 * DAY, DAY) == 2.0
    assert profiles.decay(8.0, 5, 5, DAY) == 8.0 and profiles.decay(8.0, 9, 5, DAY) == 8.0  # never grows
    assert profiles.add_decayed(4.0, DAY, 4.0, 0, DAY) == (6.0, DAY)  # an older amount counts decayed
    assert profiles.add_decayed(4.0, 0, 4.0, DAY, DAY) == (6.0, DAY)
    assert profiles.f32(0.1) != 0.1 and profiles.f32(profiles.f32(0.1)) == profiles.f32(0.1)
    assert profiles.engagement_score(0.0, 0, 0, CFG) == 0.0 and profiles.engagement_score(1e9, 0, 0, CFG) == 100.0


@pytest.mark.parametrize(("price", "band"), [(0.0, "0-25"), (24.99, "0-25"), (25.0, "25-100"), (250.0, "250+")])
def test_price_bands(price, band):
    assert profiles.price_band(price, CFG.price_bands) == band


def test_session_key_keeps_short_ids_and_digests_long_ones():
    assert profiles.session_key("s-1") == "s-1"
    long = profiles.session_key("x" * (profiles.SESSION_ID_MAX + 1))
    assert long.startswith("#") and len(long) == 17 and long == profiles.session_key("x" * 17)


def test_lifecycle_as_of_now():
    p = Profile(last_seen=0, stage="active")
    assert profiles.lifecycle(Profile(), 0, CFG) == "unknown"
    assert profiles.lifecycle(p, 1, CFG) == "active"
    assert profiles.lifecycle(p, int(CFG.at_risk_ms) + 1, CFG) == "at-risk"
    assert profiles.lifecycle(p, int(CFG.churn_ms) + 1, CFG) == "churned"
    assert profiles.lifecycle(Profile(last_seen=0), 1, CFG) == "new"


def test_segment_view_fields():
    view = profiles.segment_view(FULL, CFG)
    assert view == {"ltv": 59.97, "orders": 1, "sessions": 2, "stage": "at-risk",  # the sweep's idle stage wins
                    "engagement": profiles.engagement_score(12.5, FULL.eng_t, FULL.last_seen, CFG),
                    "count.view": 3, "count.purchase": 1, "count.a-new-action": 2, "affinity.category:books": 1.5,
                    "affinity.brand:acme": -0.5, "affinity.price:0-25": 2.0, "affinity.~odd": 0.25}
    later = profiles.segment_view(FULL, CFG, FULL.last_seen + 30 * DAY)
    assert later["engagement"] < view["engagement"]


def test_activity_and_document_views():
    assert profiles.activity(FULL) == {"counts": FULL.counts, "first_seen": FULL.first_seen,
                                       "last_seen": FULL.last_seen, "recent_items": ["i2", "i1"]}
    now = FULL.aff_t + int(CFG.affinity_half_life_ms)
    doc = profiles.document(FULL, now, CFG)
    assert list(doc) == ["counts", "first_seen", "last_seen", "recent_items", "sessions", "orders", "lifetime_value",
                         "engagement", "lifecycle", "lifecycle_at_last_event", "affinities", "segments"]
    assert doc["affinities"] == {"price:0-25": 1.0, "category:books": 0.75, "~odd": 0.125, "brand:acme": -0.25}
    assert doc["lifecycle"] == "reactivated" and doc["lifecycle_at_last_event"] == "reactivated"
    assert (doc["lifetime_value"], doc["segments"]) == (59.97, ["buyer", "vip"])


def test_parse_attrs_reads_attributes_and_preferences_and_skips_fences():
    attrs = {"x:name": json.dumps("Kim"), "p:locale": json.dumps("nb-NO"), f"{ATTRS_FENCE}3": "17"}
    assert profiles.parse_attrs(attrs) == ({"name": "Kim"}, {"locale": "nb-NO"})

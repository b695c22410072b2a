"""Identity folds: attributes and preferences, and the anonymous-to-known profile merge."""

from __future__ import annotations

import json

from aura.state.profiles import Profile, ProfileConfig, parse_attrs
from schemas.events import Identity
from streams.identity import apply_identity, merge_profiles

CFG = ProfileConfig(rules={"buyer": [["orders", ">=", 1]]})


def ident(etype, **kw):
    return Identity(event_id="e", event_type=etype, user_id="u", event_time=1, **kw)


def test_attributes_set_and_removed_preferences_merged():
    a = apply_identity({}, ident("create", attributes={"name": "Kim", "age": 30}))
    a = apply_identity(a, ident("update", attributes={"age": None, "city": "Oslo"}))
    a = apply_identity(a, ident("preferences", preferences={"categories": {"books": 1.0}, "channels": {"sms": False},
                                                            "blocked_items": ["i9"], "locale": "nb-NO"}))
    a = apply_identity(a, ident("preferences", preferences={"categories": {"toys": -1.0}, "blocked_items": ["i1"]}))
    attrs, prefs = parse_attrs(a)
    assert attrs == {"name": "Kim", "city": "Oslo"}
    assert prefs == {"categories": {"books": 1.0, "toys": -1.0}, "channels": {"sms": False},
                     "blocked_items": ["i1", "i9"], "locale": "nb-NO"}
    assert json.loads(a["x:name"]) == "Kim"


def test_merge_sums_history_unites_fences_and_keeps_the_newer_session():
    known = Profile(counts={"view": 2}, first_seen=100, last_seen=200, recent=["i2"], fences={0: 10}, sessions=1,
                    ltv=10.0, orders=0, eng=2.0, eng_t=200, aff={"brand:a": 1.0}, aff_t=200, stage="active",
                    session_id="k")
    anon = Profile(counts={"view": 1, "purchase": 1}, first_seen=50, last_seen=300, recent=["i1", "i2"],
                   fences={0: 12, 3: 4}, sessions=2, orders=1, ltv=5.5, eng=1.0, eng_t=300, aff={"brand:a": 2.0},
                   aff_t=300, stage="new", session_id="a", last_rec="290|r|X|A|home")
    m = merge_profiles(known, anon, CFG)
    assert m.counts == {"view": 3, "purchase": 1}
    assert (m.first_seen, m.last_seen) == (50, 300)
    assert m.recent == ["i1", "i2"]
    assert m.fences == {0: 12, 3: 4}
    assert (m.sessions, m.orders, m.ltv) == (3, 1, 15.5)
    assert m.session_id == "a" and m.last_rec == "290|r|X|A|home" and m.stage == "active"
    assert m.eng_t == 300 and 2.9 < m.eng < 3.0
    assert m.aff_t == 300 and 2.9 < m.aff["brand:a"] <= 3.0  # float32 (stored form)
    assert m.segments == ["buyer"]
    assert known.counts == {"view": 2}  # inputs untouched


def test_brands_and_price_range_merge_and_replace_clears_a_section():
    a = apply_identity({}, ident("preferences", preferences={"brands": {"acme": 1.0}, "price_range": {"min": 10.0},
                                                            "categories": {"books": 1.0}, "blocked_items": ["i1"]}))
    a = apply_identity(a, ident("preferences", preferences={"brands": {"zeta": -1.0},
                                                            "price_range": {"min": 20.0, "max": 90.0}}))
    _attrs, prefs = parse_attrs(a)
    assert prefs["brands"] == {"acme": 1.0, "zeta": -1.0}
    assert prefs["price_range"] == {"min": 20.0, "max": 90.0}
    # replace: the named sections are exactly what the event carries (empty: cleared); others are kept
    a = apply_identity(a, ident("preferences", preferences={
        "categories": {"toys": 0.5}, "replace": ["categories", "blocked_items", "price_range", "brands"]}))
    _attrs, prefs = parse_attrs(a)
    assert prefs["categories"] == {"toys": 0.5}
    assert "blocked_items" not in prefs and "price_range" not in prefs and "brands" not in prefs
    assert prefs["channels"] == {}

"""The pure profile fold: counts, sessions, lifecycle, engagement, affinities, attribution, fencing."""

from __future__ import annotations

import math

import pytest

from aura.state import profiles
from aura.state.profile_codec import pack, unpack
from aura.state.profiles import ItemAttrs, Profile, ProfileConfig
from schemas.events import Behavior
from streams.intake import Accepted
from streams.profiles import fold_user

DAY = 24 * 3600 * 1000
T0 = 1_700_000_000_000
CFG = ProfileConfig(rules={"vip": [["ltv", ">", 100]], "buyer": [["orders", ">=", 1]]})
ITEMS = {"i1": ItemAttrs("books", "acme", 12.0), "i2": ItemAttrs("toys", "hooli", 300.0)}


def ev(off: int, etype: str, t: int, item: str | None = "i1", part: int = 0, **raw) -> Accepted:
    revenue = 0.0
    if etype == "purchase":
        raw.setdefault("order", {"order_id": f"o{off}", "lines": [{"item_id": item, "quantity": 2,
                                                                     "unit_price": 60.0}]})
        revenue = sum(line["quantity"] * line["unit_price"] for line in raw["order"]["lines"])
    ctx = raw.pop("context", {})
    b = Behavior(event_id=f"e{off}", event_type=etype, user_id="u", item_id=item, event_time=t,
                 value=raw.get("value"), revenue=revenue, placement=ctx.get("placement"),
                 raw={"context": ctx, **raw})
    return Accepted(b, part, off)


def test_counts_recent_first_last_seen_and_fence_skips_replays():
    p = Profile()
    events = [ev(0, "view", T0, "i1"), ev(1, "view", T0 + 5, "i2"), ev(2, "add_to_cart", T0 + 3, "i1")]
    facts = fold_user(p, events, CFG, ITEMS.get)
    assert len(facts) == 3
    assert p.counts == {"view": 2, "add_to_cart": 1}
    assert p.recent == ["i1", "i2"]
    assert (p.first_seen, p.last_seen) == (T0, T0 + 5)
    assert p.fences == {0: 2}
    before = pack(p)
    assert fold_user(p, events, CFG, ITEMS.get) == []  # a replay changes nothing
    assert pack(p) == before


def test_batched_fold_equals_event_by_event_fold_through_redis_encoding():
    events = [ev(i, et, T0 + i * 3_600_000, item, context={"placement": pl} if pl else {},
                 recommendation_id="r1" if et == "recommendation_click" else None)
              for i, (et, item, pl) in enumerate([
                  ("impression", None, "homepage"), ("recommendation_click", "i2", "homepage"), ("view", "i2", None),
                  ("add_to_cart", "i2", None), ("purchase", "i2", None), ("rating", "i1", None),
                  ("view", "i1", None), ("purchase", "i1", None)])]
    events[5] = ev(5, "rating", T0 + 5 * 3_600_000, "i1", value=5.0)
    whole = Profile()
    fold_user(whole, events, CFG, ITEMS.get)
    one = Profile()
    for e in events:  # one event per batch, stored and read back in between
        fold_user(one, [e], CFG, ITEMS.get)
        one = unpack(pack(one))
        one.version = whole.version
    assert one == whole and pack(one) == pack(whole)


def test_orders_ltv_segments_and_attribution_window():
    p = Profile()
    facts = fold_user(p, [
        ev(0, "recommendation_click", T0, "i1", context={"placement": "homepage"}, recommendation_id="r9",
           experiment_id="x", variant_id="B"),
        ev(1, "purchase", T0 + 1000, "i1"),
        ev(2, "purchase", T0 + CFG.attribution_window_ms + 1001, "i1"),
    ], CFG, ITEMS.get)
    assert p.orders == 2 and p.ltv == 240.0
    assert facts[1].attributed == ("r9", "x", "B", "homepage")
    assert facts[2].attributed is None  # outside the window
    assert p.segments == ["buyer", "vip"]


def test_sessions_by_gap_or_session_id_and_journey_paths():
    p = Profile()
    facts = fold_user(p, [
        ev(0, "impression", T0, None, context={"placement": "homepage", "session_id": "s1"}),
        ev(1, "view", T0 + 10, "i1", context={"page": "product", "session_id": "s1"}),
        ev(2, "view", T0 + 20, "i1", context={"page": "product", "session_id": "s1"}),
        ev(3, "view", T0 + 30, "i1", context={"page": "product", "session_id": "s2"}),
        ev(4, "view", T0 + 40 + CFG.session_gap_ms, "i1"),
        ev(5, "view", T0 + 50 + CFG.session_gap_ms, "i1"),
    ], CFG, ITEMS.get)
    assert p.sessions == 3
    assert [f.journey for f in facts[:3]] == [("", "homepage"), ("homepage", "homepage>product"), None]
    assert facts[3].journey == ("", "product")


def test_lifecycle_new_active_reactivated_then_at_risk_and_churned_by_idle_time():
    p = Profile()
    fold_user(p, [ev(0, "view", T0)], CFG, ITEMS.get)
    assert p.stage == "new"
    fold_user(p, [ev(1, "view", T0 + 8 * DAY)], CFG, ITEMS.get)
    assert p.stage == "active"
    fold_user(p, [ev(2, "view", T0 + 40 * DAY)], CFG, ITEMS.get)
    assert p.stage == "reactivated"
    last = T0 + 40 * DAY
    assert profiles.lifecycle(p, last + DAY, CFG) == "reactivated"
    assert profiles.lifecycle(p, last + 15 * DAY, CFG) == "at-risk"
    assert profiles.lifecycle(p, last + 31 * DAY, CFG) == "churned"


def test_engagement_is_bounded_and_decays_with_the_half_life():
    p = Profile()
    fold_user(p, [ev(i, "purchase", T0 + i) for i in range(50)], CFG, ITEMS.get)
    now = p.last_seen
    hot = profiles.engagement_score(p.eng, p.eng_t, now, CFG)
    assert 99 < hot <= 100
    later = profiles.engagement_score(p.eng, p.eng_t, now + 10 * int(CFG.engagement_half_life_ms), CFG)
    assert 0 <= later < 45
    assert profiles.engagement_score(0.0, 0, now, CFG) == 0.0
    # out-of-order: adding an older event counts it decayed, in any order
    a, ta = profiles.add_decayed(0.0, 0, 4.0, T0 + DAY, CFG.engagement_half_life_ms)
    a, ta = profiles.add_decayed(a, ta, 4.0, T0, CFG.engagement_half_life_ms)
    b, tb = profiles.add_decayed(0.0, 0, 4.0, T0, CFG.engagement_half_life_ms)
    b, tb = profiles.add_decayed(b, tb, 4.0, T0 + DAY, CFG.engagement_half_life_ms)
    assert ta == tb and math.isclose(a, b, rel_tol=1e-12)


def test_affinities_category_brand_price_band_decay_and_unknown_items():
    p = Profile()
    fold_user(p, [ev(0, "view", T0, "i1"), ev(1, "purchase", T0 + int(CFG.affinity_half_life_ms), "i2"),
                  ev(2, "view", T0 + 5, "nope")], CFG, ITEMS.get)
    assert p.aff["category:books"] == pytest.approx(0.5)  # one view, one half-life ago
    assert p.aff["category:toys"] == pytest.approx(5.0)
    assert p.aff["brand:hooli"] == pytest.approx(5.0)
    assert p.aff["price:250+"] == pytest.approx(5.0)
    assert p.aff["price:0-25"] == pytest.approx(0.5)
    assert profiles.price_band(25.0, CFG.price_bands) == "25-100"


def test_events_from_two_partitions_are_fenced_separately():
    p = Profile()
    fold_user(p, [ev(10, "view", T0, part=0), ev(3, "view", T0, part=1)], CFG, ITEMS.get)
    assert p.fences == {0: 10, 1: 3}
    assert fold_user(p, [ev(4, "view", T0, part=1)], CFG, ITEMS.get) != []
    assert p.counts["view"] == 3


def test_demo_catalog_and_identity_events_pass_the_event_contract():
    from aura.demo import Storefront, catalog_events, identity_events
    from schemas.codec import codec
    from schemas.events import validate_catalog, validate_identity

    shop = Storefront(seed=1, n_users=10, n_items=5)
    cat = list(catalog_events(shop, T0))
    assert len(cat) == 5
    for ev in cat:
        validate_catalog(codec("catalog_item").decode(codec("catalog_item").encode(ev)), T0)
    ids = list(identity_events(shop, T0, n=3))
    assert [e["user_id"] for e in ids] == shop.users[:3]
    for ev in ids:
        validate_identity(codec("identity_event").decode(codec("identity_event").encode(ev)), T0)

"""Semantic validation of every event kind, partition keys, and the event-time lateness rules."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from aura.errors import AuraError
from schemas.codec import codec
from schemas.events import (
    ALLOWED_LATENESS_MS,
    MAX_FUTURE_MS,
    MAX_PAST_MS,
    InvalidEvent,
    Lateness,
    advance_watermark,
    lateness,
    partition_key,
    split_by_lateness,
    validate,
    validate_behavior,
    validate_catalog,
    validate_delivery,
    validate_exposure,
    validate_identity,
    window_closed,
    window_start,
)

NOW = 1_790_000_000_000


def decoded(schema: str, **fields):
    """A record as the stream sees it: encoded and decoded (defaults filled in, datetimes)."""
    c = codec(schema)
    return c.decode(c.encode(fields))


def refused(fn, record, now=NOW) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as exc:
        fn(record, now)
    return exc.value


# --- behavior -------------------------------------------------------------------------------------

def behavior(**over):
    return decoded("behavior_event", **{"event_id": "e1", "event_type": "view", "user_id": "u1", "item_id": "i1",
                                        "event_time": NOW, **over})


def test_behavior_valid_and_fields():
    b = validate_behavior(behavior(context={"placement": "home"}), NOW)
    assert (b.event_id, b.user_id, b.item_id, b.event_time, b.placement) == ("e1", "u1", "i1", NOW, "home")
    anon = validate_behavior(behavior(user_id=None, anonymous_id="a1"), NOW)
    assert anon.user_id == "a1"


def test_purchase_revenue_comes_from_line_items():
    order = {"order_id": "o1", "currency": "EUR", "lines": [{"item_id": "a", "quantity": 2, "unit_price": 3.5},
                                                            {"item_id": "b", "quantity": 1, "unit_price": 1.25}]}
    b = validate_behavior(behavior(event_type="purchase", order=order), NOW)
    assert b.revenue == 8.25 and b.order_id == "o1"


@pytest.mark.parametrize(("over", "reason", "field"), [
    ({"event_type": "teleport"}, "unknown_event_type", "event_type"),
    ({"event_id": ""}, "bad_event_id", "event_id"),
    ({"event_id": "x" * 257}, "bad_event_id", "event_id"),
    ({"user_id": None}, "missing_user", "user_id"),
    ({"user_id": "u" * 300}, "bad_user_id", "user_id"),
    ({"item_id": None}, "missing_item", "item_id"),
    ({"item_id": ""}, "bad_item_id", "item_id"),
    ({"event_time": NOW + MAX_FUTURE_MS + 1}, "event_time_in_future", "event_time"),
    ({"event_time": NOW - MAX_PAST_MS - 1}, "event_time_too_old", "event_time"),
    ({"event_time": 0}, "event_time_too_old", "event_time"),
    ({"event_type": "impression", "items": ["i"] * 501}, "too_many_items", "items"),
    ({"event_type": "purchase"}, "missing_order", "order"),
    ({"event_type": "purchase", "order": {"order_id": "o", "lines": [{"item_id": "a", "quantity": 0,
                                                                        "unit_price": 1.0}]}},
     "bad_line_item", "order.lines"),
    ({"event_type": "purchase", "order": {"order_id": "o", "lines": [{"item_id": "a", "unit_price": float("nan")}]}},
     "bad_line_item", "order.lines"),
    ({"event_type": "rating"}, "missing_value", "value"),
    ({"event_type": "rating", "value": float("inf")}, "bad_value", "value"),
])
def test_behavior_refusals(over, reason, field):
    exc = refused(validate_behavior, behavior(**over))
    assert (exc.reason, exc.field) == (reason, field)


def test_behavior_time_edges_are_accepted():
    validate_behavior(behavior(event_time=NOW + MAX_FUTURE_MS), NOW)
    validate_behavior(behavior(event_time=NOW - MAX_PAST_MS), NOW)


# --- identity -------------------------------------------------------------------------------------

def identity(**over):
    return decoded("identity_event", **{"event_id": "e1", "event_type": "update", "user_id": "u1",
                                        "event_time": NOW, "attributes": {"plan": "gold", "age": 41,
                                                                          "vip": True, "score": 0.5}, **over})


def test_identity_valid_kinds():
    assert validate_identity(identity(), NOW).attributes == {"plan": "gold", "age": 41, "vip": True, "score": 0.5}
    m = validate_identity(identity(event_type="merge", anonymous_id="anon-1", attributes={}), NOW)
    assert (m.user_id, m.anonymous_id) == ("u1", "anon-1")
    p = validate_identity(identity(event_type="preferences", attributes={}, preferences={
        "channels": {"email": False}, "categories": {"books": 0.9}}), NOW)
    assert p.preferences["channels"] == {"email": False}
    assert validate_identity(identity(event_type="erase", attributes={}), NOW).event_type == "erase"
    assert validate_identity(identity(event_type="create", attributes={}), NOW).event_type == "create"


@pytest.mark.parametrize(("over", "reason", "field"), [
    ({"event_type": "delete"}, "unknown_event_type", "event_type"),
    ({"user_id": ""}, "missing_user", "user_id"),
    ({"event_type": "merge"}, "bad_anonymous_id", "anonymous_id"),
    ({"event_type": "merge", "anonymous_id": "u1"}, "bad_merge", "anonymous_id"),
    ({"attributes": {}}, "missing_attributes", "attributes"),
    ({"attributes": {f"k{i}": "v" for i in range(201)}}, "too_many_values", "attributes"),
    ({"attributes": {"x" * 129: "v"}}, "bad_attribute", "attributes"),
    ({"attributes": {"score": float("nan")}}, "bad_attribute", "attributes.score"),
    ({"event_type": "preferences", "preferences": None}, "missing_preferences", "preferences"),
    ({"event_type": "preferences", "preferences": {"categories": {"books": 3.0}}}, "bad_preference",
     "preferences.categories"),
    ({"event_time": NOW + 3600_000}, "event_time_in_future", "event_time"),
])
def test_identity_refusals(over, reason, field):
    exc = refused(validate_identity, identity(**over))
    assert (exc.reason, exc.field) == (reason, field)


# --- catalog --------------------------------------------------------------------------------------

def catalog(**over):
    item = {"title": "Chef knife", "categories": ["home", "kitchen"], "tags": ["steel"], "brand": "acme",
            "price": 49.0, "stock": 3, "text": "A sharp knife", "metadata": {"color": "black"}}
    return decoded("catalog_item", **{"event_id": "c1", "event_type": "upsert", "item_id": "i1",
                                      "event_time": NOW, "item": item, **over})


def test_catalog_valid_and_old_times_accepted():
    c = validate_catalog(catalog(event_time=NOW - 5 * 365 * 86400_000), NOW)
    assert c.item["title"] == "Chef knife" and c.item["available"] is True
    d = validate_catalog(catalog(event_type="delete", item=None), NOW)
    assert d.item is None


@pytest.mark.parametrize(("over", "item_over", "reason", "field"), [
    ({"event_type": "patch"}, {}, "unknown_event_type", "event_type"),
    ({"item_id": ""}, {}, "missing_item", "item_id"),
    ({"item": None}, None, "missing_item_state", "item"),
    ({}, {"title": " "}, "bad_title", "item.title"),
    ({}, {"price": -1.0}, "bad_price", "item.price"),
    ({}, {"price": float("inf")}, "bad_price", "item.price"),
    ({}, {"stock": -2}, "bad_stock", "item.stock"),
    ({}, {"categories": ["c"] * 51}, "too_many_values", "item.categories"),
    ({}, {"text": "x" * 70_000}, "text_too_long", "item.text"),
])
def test_catalog_refusals(over, item_over, reason, field):
    rec = catalog(**over)
    if item_over:
        rec["item"].update(item_over)
    exc = refused(validate_catalog, rec)
    assert (exc.reason, exc.field) == (reason, field)


# --- decisions ------------------------------------------------------------------------------------

def test_exposure_and_delivery():
    e = validate_exposure(decoded("experiment_exposure", event_id="x1", anonymous_id="a1", experiment_id="exp",
                                  variant_id="B", event_time=NOW), NOW)
    assert (e.user_id, e.variant_id) == ("a1", "B")
    assert refused(validate_exposure, decoded("experiment_exposure", event_id="x1", experiment_id="exp",
                                              variant_id="B", event_time=NOW)).reason == "missing_user"
    d = decoded("campaign_delivery", event_id="d1", user_id="u1", campaign_id="c", message_id="m",
                channel="email", status="delivered", event_time=NOW)
    assert validate_delivery(d, NOW).status == "delivered"
    assert refused(validate_delivery, {**d, "channel": "pigeon"}).field == "channel"
    assert refused(validate_delivery, {**d, "status": "lost"}).field == "status"
    assert refused(validate_delivery, {**d, "campaign_id": ""}).reason == "missing_campaign"


def test_dispatch_and_partition_keys():
    assert validate("behavior_event", behavior(), NOW).user_id == "u1"
    assert partition_key("behavior_event", behavior()) == b"u1"
    assert partition_key("behavior_event", behavior(user_id=None, anonymous_id="a9")) == b"a9"
    assert partition_key("identity_event", identity(event_type="merge", anonymous_id="a9")) == b"u1"
    assert partition_key("catalog_item", catalog()) == b"i1"
    with pytest.raises(KeyError):
        validate("dead_letter", {}, NOW)


# --- event time and lateness ----------------------------------------------------------------------

@dataclass
class Ev:
    name: str
    event_time: int


def test_window_arithmetic():
    assert window_start(125_000, 60_000) == 120_000
    assert not window_closed(180_000, None)
    assert not window_closed(180_000, 180_000 + ALLOWED_LATENESS_MS - 1)
    assert window_closed(180_000, 180_000 + ALLOWED_LATENESS_MS)


def test_lateness_classes():
    wm = 10 * 3600_000
    assert lateness(wm + 5, wm) is Lateness.ON_TIME
    assert lateness(wm, wm) is Lateness.ON_TIME
    assert lateness(123, None) is Lateness.ON_TIME
    assert lateness(wm - 1, wm) is Lateness.LATE
    # the window of (wm - allowed - 60 s) ended more than `allowed` before the watermark
    assert lateness(wm - ALLOWED_LATENESS_MS - 60_001, wm) is Lateness.TOO_LATE
    # an event slightly older than wm - allowed is still LATE when its window is not final yet
    assert lateness(wm - ALLOWED_LATENESS_MS - 1, wm, window_ms=3600_000) is Lateness.LATE


def test_watermark_never_passes_processing_time():
    assert advance_watermark(None, 500) == 500
    assert advance_watermark(1000, 500) == 1000  # monotone
    assert advance_watermark(1000, NOW + MAX_FUTURE_MS, now_ms=NOW) == NOW


def test_split_by_lateness_in_arrival_order():
    t0 = 100 * 60_000
    evs = [Ev("a", t0), Ev("b", t0 + 30 * 60_000), Ev("c", t0 + 1000),  # c: window closed 30 min ago
           Ev("d", t0 + 29 * 60_000), Ev("e", t0 + 31 * 60_000)]
    out = split_by_lateness(evs, None, now_ms=t0 + 3600_000)
    assert [e.name for e in out.on_time] == ["a", "b", "e"]
    assert [e.name for e in out.late] == ["d"]
    assert [e.name for e in out.too_late] == ["c"]
    assert out.watermark == t0 + 31 * 60_000
    # a clock running ahead cannot make the rest of the batch too late
    ahead = split_by_lateness([Ev("future", t0 + 86400_000), Ev("x", t0)], t0, now_ms=t0 + 1)
    assert [e.name for e in ahead.on_time] == ["future"] and [e.name for e in ahead.late] == ["x"]
    assert ahead.watermark == t0 + 1


def test_invalid_event_is_an_aura_error_and_still_a_value_error():
    assert issubclass(InvalidEvent, AuraError) and issubclass(InvalidEvent, ValueError)


@pytest.mark.parametrize("prefs, field", [
    ({"brands": {"acme": 2.0}}, "preferences.brands"),
    ({"price_range": {"min": 50.0, "max": 10.0}}, "preferences.price_range"),
    ({"price_range": {"min": float("nan")}}, "preferences.price_range.min"),
    ({"price_range": {"max": -1.0}}, "preferences.price_range.max"),
    ({"replace": ["categories", "everything"]}, "preferences.replace"),
])
def test_bad_brand_price_range_and_replace_preferences_are_refused(prefs, field):
    with pytest.raises(InvalidEvent) as info:
        validate_identity(identity(event_type="preferences", attributes={}, preferences=prefs), NOW)
    assert info.value.reason == "bad_preference" and info.value.field == field

"""The pure analytics fold: metrics per event, per-partition fencing, buckets, aggregate records."""

from __future__ import annotations

from schemas.events import Behavior
from streams import aggregates, analytics
from streams.analytics import BucketTotals, fold
from streams.intake import Accepted
from streams.profiles import Fact

T = 1_700_000_123_456


def fact(off, etype, part=0, item="i1", user="u1", attributed=None, journey=None, **raw):
    revenue = 0.0
    if etype == "purchase":
        raw["order"] = {"order_id": "o", "lines": [{"item_id": item, "quantity": 3, "unit_price": 10.0}]}
        revenue = 30.0
    ev = Behavior(event_id=f"e{off}", event_type=etype, user_id=user, item_id=item, event_time=T + off,
                  revenue=revenue, placement=raw.get("context", {}).get("placement"),
                  items=tuple(raw.get("items", ())), raw=raw)
    return Fact(Accepted(ev, part, off), T, journey, attributed)


def test_metrics_funnel_revenue_attribution_items_and_placements():
    facts = [fact(0, "impression", item=None, items=["i1", "i2"], context={"placement": "home"}, experiment_id="X",
                  variant_id="A"),
             fact(1, "recommendation_click", context={"placement": "home"}, experiment_id="X", variant_id="A"),
             fact(2, "view", journey=("", "home")),
             fact(3, "purchase", attributed=("r", "X", "A", "home"), journey=("home", "home>checkout"))]
    c = fold(facts, {})[0]
    assert c.offset == 3
    h = c.deltas[("hour", analytics.bucket_start(T, "hour"))]
    assert h["ev"] == 4 and h["ev:view"] == 1 and h["orders"] == 1 and h["rev"] == 30.0
    assert h["pi:home"] == 1 and h["pc:home"] == 1 and h["xi:X:A"] == 1 and h["xc:X:A"] == 1
    assert h["ar:rec"] == 30.0 and h["ao:exp:X:A"] == 1 and h["ar:exp:X:A"] == 30.0 and h["ar:pl:home"] == 30.0
    assert h["ii:i1"] == 1 and h["ii:i2"] == 1 and h["ic:i1"] == 1 and h["iv:i1"] == 1 and h["ip:i1"] == 3
    m = c.deltas[("minute", analytics.bucket_start(T, "minute"))]
    assert not any(k.startswith("i") for k in m)  # no per-item counters per minute
    d = c.deltas[("day", analytics.bucket_start(T, "day"))]
    assert d["j:home"] == 0 and d["j:home>checkout"] == 1  # a session's path is counted once, at its latest
    assert c.users[("day", analytics.bucket_start(T, "day"), "f:purchase")] == {"u1"}


def test_fence_per_partition_skips_what_was_applied():
    facts = [fact(5, "view", part=0), fact(6, "view", part=0), fact(2, "view", part=1)]
    out = fold(facts, {0: 5, 1: 7})
    assert list(out) == [0] and out[0].offset == 6
    assert out[0].deltas[("minute", analytics.bucket_start(T, "minute"))]["ev"] == 1


def test_bucket_starts_cover_the_range():
    assert analytics.bucket_starts("hour", 3_600_000 + 5, 3 * 3_600_000 + 1) == [3_600_000, 7_200_000, 10_800_000]
    assert analytics.bucket_starts("day", 0, 0) == []


def test_aggregate_records_are_valid_avro_for_each_grain():
    from schemas.codec import codec

    now = T + 10_000
    m = {"ev": 3, "ev:view": 2, "ev:purchase": 1, "orders": 1, "rev": 30.0, "pi:home": 4, "pc:home": 1,
         "ao:exp:X:A": 1, "ar:exp:X:A": 30.0, "ar:rec": 30.0, "iv:i1": 2, "ip:i1": 3, "ir:i1": 30.0}
    users = {"active": 2, "f:view": 2, "f:purchase": 1}
    recs = []
    for grain in analytics.GRAINS:
        recs += aggregates.records(BucketTotals(grain, analytics.bucket_start(T, grain), m, users), now)
    names = [r.name for r in recs]
    assert names.count("minute_metrics") == 2 and names.count("revenue") == 2
    assert names.count("funnel") == 1 and names.count("item_daily") == 1
    for r in recs:
        schema = dict(aggregates.AGGREGATES)[r.name][1]
        assert codec(schema).decode(codec(schema).encode(r.value))["revision"] == r.value["revision"]
    item = next(r for r in recs if r.name == "item_daily").value
    assert (item["views"], item["units"], item["revenue"]) == (2, 3, 30.0)
    table = aggregates.render("revenue", {r.key: r.value for r in recs if r.name == "revenue"}, 10)
    assert "attributed_revenue" in table and "30.00" in table

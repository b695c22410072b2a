"""The aggregate records (streams/aggregates.py) of a bucket's totals: valid Avro for each grain."""

from __future__ import annotations

from aura.state import analytics
from aura.state.analytics import BucketTotals
from streams import aggregates

T = 1_700_000_123_456


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
    assert names.count("minute_metrics") == 3 and names.count("revenue") == 2
    assert names.count("funnel") == 1 and names.count("item_daily") == 1
    for r in recs:
        schema = dict(aggregates.AGGREGATES)[r.name][1]
        assert codec(schema).decode(codec(schema).encode(r.value))["revision"] == r.value["revision"]
    item = next(r for r in recs if r.name == "item_daily").value
    assert (item["views"], item["units"], item["revenue"]) == (2, 3, 30.0)
    table = aggregates.render("revenue", {r.key: r.value for r in recs if r.name == "revenue"}, 10)
    assert "attributed_revenue" in table and "30.00" in table


def test_the_experiment_minute_record_carries_the_variants_attributed_orders_and_revenue():
    start = analytics.bucket_start(T, "minute")
    m = {"ev": 9, "xi:X:A": 40, "xc:X:A": 4, "ao:exp:X:A": 2, "ar:exp:X:A": 55.5,
         "xi:X:B": 38, "xc:X:B": 3, "ao:exp:Y:C": 1, "ar:exp:Y:C": 9.0}
    recs = {r.key: r.value for r in aggregates.records(BucketTotals("minute", start, m, {}), T + 10_000)}
    a, b, c = (recs[f"{start}|experiment|{v}"] for v in ("X:A", "X:B", "Y:C"))
    assert a["events"] == {"impression": 40, "recommendation_click": 4} and (a["orders"], a["revenue"]) == (2, 55.5)
    assert (b["orders"], b["revenue"]) == (0, 0.0)
    # an order attributed in a minute without the variant's impressions still counts
    assert c["events"] == {"impression": 0, "recommendation_click": 0} and c["orders"] == 1

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
    assert names.count("minute_metrics") == 2 and names.count("revenue") == 2
    assert names.count("funnel") == 1 and names.count("item_daily") == 1
    for r in recs:
        schema = dict(aggregates.AGGREGATES)[r.name][1]
        assert codec(schema).decode(codec(schema).encode(r.value))["revision"] == r.value["revision"]
    item = next(r for r in recs if r.name == "item_daily").value
    assert (item["views"], item["units"], item["revenue"]) == (2, 3, 30.0)
    table = aggregates.render("revenue", {r.key: r.value for r in recs if r.name == "revenue"}, 10)
    assert "attributed_revenue" in table and "30.00" in table

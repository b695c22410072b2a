"""The pure analytics fold (streams/analytics.py): metrics per event, per-partition fencing."""

from __future__ import annotations

import asyncio
import json

from aura.keys import RedisKeys
from aura.state import analytics
from aura.state.analytics import GRAINS
from schemas.events import Behavior
from streams.analytics import fold, lua_call
from streams.intake import Accepted
from streams.profiles import Fact
from tests.unit.state.test_analytics import FakeRedis

T = 1_700_000_123_456
KEYS = RedisKeys("t")


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


def run_apply_script(r, keys: list[str], args: list[str]) -> None:
    """What APPLY_LUA does with one partition's KEYS and ARGV (fence already checked)."""
    blob = json.loads(args[2])
    k = 1
    for _ttl, ints, floats in blob["h"]:
        h = r.hashes.setdefault(keys[k], {})
        for m, v in [*zip(ints[::2], ints[1::2], strict=True), *zip(floats[::2], floats[1::2], strict=True)]:
            total = float(h.get(m, 0)) + float(v)
            h[m] = str(int(total)) if total.is_integer() else repr(total)
        k += 1
    for _ttl, users in blob["u"]:
        r.hlls.setdefault(keys[k], set()).update(users)
        k += 1


def test_what_the_writer_stores_is_what_the_readers_sum():
    facts = [fact(0, "view", part=0, user="u1"), fact(1, "purchase", part=0, user="u1"),
             fact(0, "view", part=1, user="u2", item="i2"), fact(1, "add_to_cart", part=1, user="u2", item="i2")]
    r = FakeRedis()
    contributions = fold(facts, {})
    ttls = dict.fromkeys(GRAINS, 60)
    for c in contributions.values():
        keys, args = lua_call(KEYS, c, None, ttls)
        assert keys[0] == KEYS.analytics_fence(c.partition) and args[:2] == ["", str(c.offset)]
        run_apply_script(r, keys, args)
    for grain in GRAINS:
        start = analytics.bucket_start(T, grain)
        (got,) = asyncio.run(analytics.read_buckets(r, KEYS, 2, grain, [start]))
        want: dict[str, float] = {}
        for c in contributions.values():
            for m, v in c.deltas[(grain, start)].items():
                want[m] = want.get(m, 0) + v
        assert got.metrics == {m: v for m, v in want.items() if v}
        assert got.users["active"] == 2 and got.users["f:view"] == 2 and got.users["f:purchase"] == 1

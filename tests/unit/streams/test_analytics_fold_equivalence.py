"""The analytics fold (streams/analytics.py) against a straightforward reference: per event, every
(grain, bucket, metric, amount) listed one by one and added up. On varied events (demo storefront
traffic spread over months, and hand-made edge cases) both give the same contributions, in the same
order (buckets, metrics, HyperLogLogs: the script arguments and each hash's field order follow it),
with the same float sums, hence the same script arguments."""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Any

from aura.demo import Storefront
from aura.keys import RedisKeys
from aura.settings import get_settings
from aura.state.analytics import (
    DIM_EVENTS,
    DIM_VALUE_MAX,
    FUNNEL,
    GRAINS,
    ITEM_GRAINS,
    bucket_start,
    country_of,
    dimension_value,
)
from aura.state.profiles import ItemAttrs, Profile, ProfileConfig
from schemas.codec import codec
from schemas.events import Behavior
from streams import analytics
from streams.intake import Accepted, RawRecord, split
from streams.profiles import Fact, fold_user

DAY = 86_400_000
T = 1_700_000_123_456
KEYS = RedisKeys("t")
TTLS = dict.fromkeys(GRAINS, 60)


def ref_event_metrics(fact: Fact) -> list[tuple[str, int, str, float]]:
    ev = fact.acc.event
    raw = ev.raw
    out: list[tuple[str, int, str, float]] = []
    exp, var = raw.get("experiment_id"), raw.get("variant_id")
    et = ev.event_type
    for grain in GRAINS:
        b = bucket_start(ev.event_time, grain)
        out.append((grain, b, "ev", 1))
        out.append((grain, b, f"ev:{et}", 1))
        if et in FUNNEL:
            ctx = raw.get("context") or {}
            for dim, key in (("fd", "device"), ("fc", "channel")):
                value = dimension_value(ctx.get(key))
                if value:
                    out.append((grain, b, f"{dim}:{value}:{et}", 1))
        if et == "impression":
            if ev.placement:
                out.append((grain, b, f"pi:{ev.placement}", 1))
            if exp:
                out.append((grain, b, f"xi:{exp}:{var or ''}", 1))
        elif et == "recommendation_click":
            if ev.placement:
                out.append((grain, b, f"pc:{ev.placement}", 1))
            if exp:
                out.append((grain, b, f"xc:{exp}:{var or ''}", 1))
        elif et == "purchase":
            out.append((grain, b, "orders", 1))
            out.append((grain, b, "rev", ev.revenue))
            if fact.attributed:
                _rec, aexp, avar, apl = fact.attributed
                out.append((grain, b, "ao:rec", 1))
                out.append((grain, b, "ar:rec", ev.revenue))
                if apl:
                    out.append((grain, b, f"ar:pl:{apl}", ev.revenue))
                    out.append((grain, b, f"ao:pl:{apl}", 1))
                if aexp:
                    out.append((grain, b, f"ao:exp:{aexp}:{avar}", 1))
                    out.append((grain, b, f"ar:exp:{aexp}:{avar}", ev.revenue))
        if grain in ITEM_GRAINS:
            if et == "view":
                out.append((grain, b, f"iv:{ev.item_id}", 1))
            elif et in ("click", "recommendation_click"):
                out.append((grain, b, f"ic:{ev.item_id}", 1))
            elif et == "add_to_cart":
                out.append((grain, b, f"ia:{ev.item_id}", 1))
            elif et == "impression":
                for item in ev.items:
                    out.append((grain, b, f"ii:{item}", 1))
            elif et == "purchase":
                for line in (raw.get("order") or {}).get("lines") or ():
                    out.append((grain, b, f"ip:{line['item_id']}", line["quantity"]))
                    out.append((grain, b, f"ir:{line['item_id']}", line["quantity"] * line["unit_price"]))
    if et in DIM_EVENTS:
        b = bucket_start(ev.event_time, "minute")
        ctx = raw.get("context") or {}
        for dim, val in (("device", ctx.get("device")), ("channel", ctx.get("channel")),
                         ("country", country_of(ctx.get("locale"))), ("category", fact.category)):
            if not val or len(val) > DIM_VALUE_MAX:
                continue
            out.append(("minute", b, f"dm:{dim}={val}:{et}", 1))
            if et == "purchase":
                out.append(("minute", b, f"do:{dim}={val}", 1))
                out.append(("minute", b, f"dr:{dim}={val}", ev.revenue))
    if fact.journey is not None:
        before, after = fact.journey
        b = bucket_start(fact.session_start, "day")
        if before:
            out.append(("day", b, f"j:{before}", -1))
        out.append(("day", b, f"j:{after}", 1))
    return out


@dataclass
class RefContribution:
    partition: int
    offset: int = -1
    deltas: dict[tuple[str, int], dict[str, float]] = field(default_factory=lambda: defaultdict(
        lambda: defaultdict(float)))
    users: dict[tuple[str, int, str], set[str]] = field(default_factory=lambda: defaultdict(set))


def ref_fold(facts: list[Fact], fences: dict[int, int]) -> dict[int, RefContribution]:
    out: dict[int, RefContribution] = {}
    for f in facts:
        p, off = f.acc.partition, f.acc.offset
        if off <= fences.get(p, -1):
            continue
        c = out.setdefault(p, RefContribution(p))
        c.offset = max(c.offset, off)
        for grain, b, metric, amount in ref_event_metrics(f):
            c.deltas[(grain, b)][metric] += amount
        for grain in GRAINS:
            b = bucket_start(f.acc.event.event_time, grain)
            c.users[(grain, b, "active")].add(f.acc.event.user_id)
            if f.acc.event.event_type in FUNNEL:
                c.users[(grain, b, f"f:{f.acc.event.event_type}")].add(f.acc.event.user_id)
    return out


def plain(c: Any) -> tuple[Any, ...]:
    """Everything of a contribution, orders and value types included."""
    return (c.partition, c.offset,
            [(k, [(m, v, type(v)) for m, v in d.items()]) for k, d in c.deltas.items()],
            [(k, sorted(u)) for k, u in c.users.items()], [list(k) for k in c.users])


def demo_facts(n: int, spread_ms: int, seed: int) -> list[list[Fact]]:
    """Demo storefront events (every event type, experiments, orders, contexts) with their times
    stretched over ``spread_ms``, through the profile fold (journeys, attribution, categories), in
    batches of 500."""
    c = codec("behavior_event")
    shop = Storefront(seed=seed, n_users=300, n_items=60)
    now = T + 400 * DAY
    recs = []
    for ev in shop.events(now - 300 * DAY):
        recs.append(RawRecord("t", hash(ev["user_id"]) % 5, len(recs), ev["user_id"].encode(), c.encode(ev)))
        if len(recs) >= n:
            break
    accepted, dead = split(recs, c, now)
    assert not dead
    t0 = accepted[0].event.event_time
    stretch = spread_ms / max(1, accepted[-1].event.event_time - t0)
    accepted = [Accepted(replace(a.event, event_time=t0 + int((a.event.event_time - t0) * stretch)), a.partition,
                         a.offset) for a in accepted]
    cfg = ProfileConfig.from_settings(get_settings())
    attrs = {it.item_id: ItemAttrs(it.category, it.brand, it.price) for it in shop.items}
    users: dict[str, Profile] = {}
    out = []
    for i in range(0, len(accepted), 500):
        by_user: dict[str, list[Accepted]] = {}
        for a in accepted[i:i + 500]:
            by_user.setdefault(a.event.user_id, []).append(a)
        facts: list[Fact] = []
        for u, evs in by_user.items():
            facts += fold_user(users.setdefault(u, Profile()), evs, cfg, attrs.get)
        out.append(facts)
    return out


def edge_facts() -> list[Fact]:
    """Hand-made events: odd prices (float sums), clicks without items, long and missing dimension
    values, experiments without variants, journeys into other days, several partitions, negative
    times (before 1970: buckets still floor)."""
    rnd = random.Random(3)
    out = []
    for off in range(400):
        et = rnd.choice(["view", "click", "recommendation_click", "add_to_cart", "purchase", "impression",
                         "rating", "search"])
        t = T + rnd.randint(-3, 3) * DAY + rnd.randint(0, 5_000_000) if off % 50 else -rnd.randint(1, 10 * DAY)
        raw: dict[str, Any] = {"context": {"device": rnd.choice(["Mobile", "desk:top", None, "x" * 50]),
                                           "channel": rnd.choice(["email", None, ""]),
                                           "locale": rnd.choice(["en-US", "fr_FR", "de", None]),
                                           "placement": rnd.choice(["home", "pdp", None])}}
        if rnd.random() < 0.5:
            raw["experiment_id"] = rnd.choice(["X", "Y"])
            if rnd.random() < 0.7:
                raw["variant_id"] = rnd.choice(["A", "B"])
        revenue = 0.0
        if et == "purchase":
            lines = [{"item_id": f"i{rnd.randint(0, 9)}", "quantity": rnd.randint(1, 3),
                      "unit_price": rnd.choice([0.1, 19.99, 3, 1 / 3, 1e-7])} for _ in range(rnd.randint(0, 3))]
            raw["order"] = {"order_id": f"o{off}", "lines": lines}
            revenue = sum(x["quantity"] * x["unit_price"] for x in lines)
        item = rnd.choice([f"i{rnd.randint(0, 9)}", None]) if et != "impression" else None
        ev = Behavior(event_id=f"e{off}", event_type=et, user_id=f"u{rnd.randint(0, 20)}", item_id=item,
                      event_time=t, revenue=revenue, placement=raw["context"]["placement"],
                      items=tuple(f"i{rnd.randint(0, 9)}" for _ in range(rnd.randint(0, 3))), raw=raw)
        journey = rnd.choice([None, ("", "home"), ("home", "home>pdp")])
        attributed = rnd.choice([None, ("r", "X", "A", "home"), ("r", "", "", ""), ("r", "Y", "B", "")])
        out.append(Fact(Accepted(ev, rnd.randint(0, 3), off), t - rnd.randint(0, 2 * DAY), journey, attributed,
                        rnd.choice([None, "toys", "y" * 41])))
    return out


def check(facts: list[Fact], fences: dict[int, int]) -> None:
    want, got = ref_fold(facts, fences), analytics.fold(facts, fences)
    assert list(got) == list(want)
    for p in want:
        assert plain(got[p]) == plain(want[p])
        assert analytics.lua_call(KEYS, got[p], 7, TTLS) == analytics.lua_call(KEYS, want[p], 7, TTLS)  # type: ignore[arg-type]


def test_the_fold_equals_the_reference_on_demo_traffic_over_months_and_within_minutes() -> None:
    attributed = 0
    for spread in (180 * DAY, 3_600_000):
        batches = demo_facts(3000, spread, seed=11)
        kinds = {f.acc.event.event_type for b in batches for f in b}
        assert {"view", "add_to_cart", "purchase", "impression", "recommendation_click"} <= kinds
        assert any(f.journey for b in batches for f in b) and any(f.category for b in batches for f in b)
        attributed += sum(1 for b in batches for f in b if f.attributed)
        for facts in batches:
            check(facts, {})
    assert attributed  # within the hour, purchases follow recommendation clicks


def test_the_fold_equals_the_reference_on_edge_cases_and_fences() -> None:
    facts = edge_facts()
    check(facts, {})
    check(facts, {0: 100, 2: 399, 3: -1})
    check(list(reversed(facts)), {1: 200})
    check([], {})


def test_the_event_lists_and_the_batch_buckets_are_the_reference_ones() -> None:
    facts = edge_facts() + demo_facts(600, 30 * DAY, seed=5)[0]
    for f in facts:
        assert analytics.event_metrics(f) == ref_event_metrics(f)
    want = {(g, bucket_start(f.acc.event.event_time, g)) for f in facts for g in GRAINS}
    assert analytics.time_buckets(f.acc.event.event_time for f in facts) == want
    want |= {("day", bucket_start(f.session_start, "day")) for f in facts if f.journey is not None}
    assert analytics.batch_buckets(facts) == want
    assert all(size % GRAINS["minute"] == 0 for size in GRAINS.values())  # buckets of one minute nest

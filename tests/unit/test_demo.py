"""The synthetic storefront is repeatable and emits valid events."""

from __future__ import annotations

import itertools

from aura.demo import Storefront
from schemas.codec import codec
from schemas.events import validate_behavior


def _take(seed: int, n: int) -> list[dict]:
    return list(itertools.islice(Storefront(seed=seed).events(start_ms=1_700_000_000_000), n))


def test_same_seed_same_stream_other_seed_other_stream():
    assert _take(3, 300) == _take(3, 300)
    assert _take(3, 300) != _take(4, 300)


def test_every_generated_event_passes_the_contract():
    c = codec("behavior_event")
    events = _take(5, 2000)
    types = set()
    for ev in events:
        b = validate_behavior(c.decode(c.encode(dict(ev))), now_ms=ev["event_time"])
        types.add(b.event_type)
    assert {"impression", "view", "add_to_cart", "purchase", "recommendation_click"} <= types


def test_purchases_carry_revenue():
    c = codec("behavior_event")
    purchases = [e for e in _take(9, 5000) if e["event_type"] == "purchase"]
    assert purchases
    for ev in purchases:
        assert validate_behavior(c.decode(c.encode(dict(ev))), now_ms=ev["event_time"]).revenue > 0


def test_scripted_incidents_change_the_traffic_they_target():
    from aura.demo import INCIDENTS, effects_at

    assert effects_at(INCIDENTS, 0).conversion == {}
    drop = next(i for i in INCIDENTS if i.kind == "conversion_drop")
    fx = effects_at(INCIDENTS, drop.start_min)
    assert fx.conversion == {drop.target: drop.size}
    assert effects_at(INCIDENTS, drop.start_min + drop.minutes).conversion == {}

    def purchases_per_device(effects) -> dict[str, int]:
        shop = Storefront(seed=3)
        out: dict[str, int] = {}
        for n in range(4000):
            for ev in shop.session(1_700_000_000_000 + n, effects):
                if ev["event_type"] == "purchase":
                    out[ev["context"]["device"]] = out.get(ev["context"]["device"], 0) + 1
        return out

    normal, dropped = purchases_per_device(effects_at(INCIDENTS, 0)), purchases_per_device(fx)
    assert dropped[drop.target] < 0.5 * normal[drop.target]
    other = next(d for d in normal if d != drop.target)
    assert dropped[other] > 0.7 * normal[other]

    price = next(i for i in INCIDENTS if i.kind == "price_error")
    shop = Storefront(seed=3)
    lines = [ln for n in range(3000) for ev in shop.session(n, effects_at(INCIDENTS, price.start_min))
             if ev["event_type"] == "purchase" for ln in ev["order"]["lines"]]
    by_id = {it.item_id: it for it in shop.items}
    hit = [ln for ln in lines if by_id[ln["item_id"]].category == price.target]
    assert hit and all(ln["unit_price"] == round(by_id[ln["item_id"]].price * price.size, 2) for ln in hit)


def test_the_demo_configuration_is_valid_and_covers_what_its_traffic_refers_to():
    from aura.demo import DEMO_CONFIG, PLACEMENTS
    from aura.state.bandits import STRATEGIES, validate_bandit
    from aura.state.experiments import validate_experiment
    from aura.state.rules import validate_rule
    from aura.state.segments import validate_segment

    validators = {"experiments": validate_experiment, "rules": validate_rule, "segments": validate_segment,
                  "bandits": validate_bandit}
    docs = {kind: doc for kind, _t, _c, doc in DEMO_CONFIG}
    for kind, doc in docs.items():
        validators[kind](doc)
    experiments = {(ev.get("experiment_id"), ev.get("variant_id")) for ev in _take(5, 3000)} - {(None, None)}
    assert {e for e, _v in experiments} == {docs["experiments"]["id"]}
    assert {v for _e, v in experiments} <= {v["id"] for v in docs["experiments"]["variants"]}
    assert docs["bandits"]["placement"] in PLACEMENTS and set(docs["bandits"]["arms"]) <= set(STRATEGIES)

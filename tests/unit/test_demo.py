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

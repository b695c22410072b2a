"""Audience membership, the population's key names and the audience estimate's figures (pure)."""

from __future__ import annotations

import json
import random

import pytest

from aura.keys import RedisKeys
from aura.state import profile_codec
from aura.state.campaign_audience import Population, estimate, in_audience
from aura.state.campaign_sends import template_error
from aura.state.campaigns import Audience, validate_campaign
from aura.state.experiments import wilson_interval
from aura.state.profiles import Profile
from aura.state.rules import holds, profile_fields

BASE = {"id": "c", "channel": "email", "trigger": {"type": "event", "event_type": "view"},
        "template": {"subject": "s", "body": "b"}}


def audience(raw: dict) -> Audience:
    return validate_campaign({**BASE, "audience": raw}, segments=frozenset({"vip"}),
                             check_template=template_error).audience


def rule(condition: dict) -> Audience:
    return audience({"type": "rule", "condition": condition})


def attrs(**values) -> dict[str, str]:
    """An identity attributes hash as streams/identity.py stores it (``x:<name>`` -> JSON)."""
    return {f"x:{k}": json.dumps(v) for k, v in values.items()}


def test_a_rule_is_evaluated_on_the_stored_profile():
    big = rule({"field": "profile.ltv", "op": "gt", "value": 100})
    assert in_audience(big, "u", Profile(ltv=150.0, version=1), {})
    assert not in_audience(big, "u", Profile(ltv=50.0, version=1), {})
    assert not in_audience(big, "u", None, {})  # no profile: no ltv
    buyers = rule({"field": "profile.count.purchase", "op": "gte", "value": 2})
    assert in_audience(buyers, "u", Profile(counts={"purchase": 2, "view": 9}, version=1), {})
    assert not in_audience(buyers, "u", Profile(counts={"view": 9}, version=1), {})


def test_a_rule_sees_identity_attributes_with_or_without_a_profile():
    german = rule({"field": "profile.country", "op": "equals", "value": "DE"})
    assert in_audience(german, "u", None, attrs(country="DE"))
    assert in_audience(german, "u", Profile(version=1), attrs(country="DE"))
    assert not in_audience(german, "u", Profile(version=1), attrs(country="FR"))
    assert not in_audience(german, "u", Profile(version=1), {})
    both = rule({"all": [{"field": "profile.country", "op": "equals", "value": "DE"},
                         {"field": "profile.ltv", "op": "gte", "value": 10}]})
    assert in_audience(both, "u", Profile(ltv=10.0, version=1), attrs(country="DE"))
    assert not in_audience(both, "u", Profile(ltv=9.0, version=1), attrs(country="DE"))
    assert not in_audience(both, "u", None, attrs(country="DE"))


def test_a_rule_tests_the_profiles_segments_and_groups_combine():
    vip = rule({"field": "segments", "op": "contains", "value": "vip"})
    assert in_audience(vip, "u", Profile(segments=["vip", "buyer"], version=1), {})
    assert not in_audience(vip, "u", Profile(segments=["buyer"], version=1), {})
    assert not in_audience(vip, "u", None, {})
    not_vip = rule({"not": {"field": "segments", "op": "contains", "value": "vip"}})
    assert in_audience(not_vip, "u", None, {})
    assert not in_audience(not_vip, "u", Profile(segments=["vip"], version=1), {})
    either = rule({"any": [{"field": "profile.country", "op": "in", "value": ["DE", "AT"]},
                           {"field": "profile.orders", "op": "gt", "value": 3}]})
    assert in_audience(either, "u", None, attrs(country="AT"))
    assert in_audience(either, "u", Profile(orders=4, version=1), attrs(country="FR"))
    assert not in_audience(either, "u", Profile(orders=3, version=1), attrs(country="FR"))


def test_segment_users_and_everyone_audiences():
    seg = audience({"type": "segment", "segment": "vip"})
    assert in_audience(seg, "u", None, {}, segment_member=True)
    assert not in_audience(seg, "u", Profile(segments=["vip"], version=1), {})  # the member set decides
    listed = audience({"type": "users", "users": ["ann", "bob"]})
    assert in_audience(listed, "ann", None, {}) and in_audience(listed, "bob", Profile(version=1), {})
    assert not in_audience(listed, "cid", Profile(version=1), attrs(country="DE"), segment_member=True)
    everyone = audience({"type": "everyone"})
    assert in_audience(everyone, "anyone", None, {})
    assert in_audience(audience({"type": "everyone"}), "x", Profile(ltv=1.0, version=1), {})


def test_the_population_is_the_users_with_a_profile_or_attributes():
    keys = RedisKeys("t*[x]")
    p = Population(keys)
    assert p.pattern == r"t\*\[x\]:u*"
    assert p.user(keys.user_state("ann")) == "ann"
    assert p.user(keys.user_attrs("b:o}b")) == "b:o}b"
    assert p.user(keys.user_attrs("ann").replace(":attrs", ":other")) is None
    assert p.user(keys.segment_members("vip")) is None
    assert p.user(RedisKeys("t*[y]").user_state("ann")) is None  # another prefix


def test_an_exact_estimate_and_an_interval_when_the_scan_is_partial():
    exact = estimate(30, 120, True)
    assert exact == {"size": 30, "scanned": 120, "exact": True, "share": 0.25, "share_low": 0.25,
                     "share_high": 0.25}
    part = estimate(30, 120, False)
    assert part["exact"] is False and part["size"] == 30 and part["share"] == 0.25
    assert (part["share_low"], part["share_high"]) == wilson_interval(30, 120)
    assert part["share_low"] < 0.25 < part["share_high"]
    assert estimate(0, 0, True)["share"] == 0.0
    assert estimate(0, 0, False)["share_low"] == 0.0 and estimate(0, 0, False)["share_high"] == 1.0
    none = estimate(0, 500, False)
    assert none["share_low"] == pytest.approx(0.0, abs=1e-12) and 0.0 < none["share_high"] < 0.01
    assert estimate(500, 500, False)["share_high"] == pytest.approx(1.0)


def test_membership_equals_the_rule_over_every_field_of_the_profile_and_attributes():
    """The rule sees only the fields it names: the same values as over the whole merged hashes."""
    rng = random.Random(7)
    conds = [{"field": "profile.ltv", "op": "gte", "value": 100}, {"field": "profile.orders", "op": "lt", "value": 2},
             {"field": "profile.count.view", "op": "gt", "value": 10}, {"field": "profile.stage", "op": "exists",
                                                                        "value": True},
             {"field": "profile.country", "op": "in", "value": ["DE", "AT"]},
             {"field": "profile.plan", "op": "not_equals", "value": "gold"},
             {"field": "profile.x:plan", "op": "equals", "value": "gold"},
             {"field": "profile.channels", "op": "exists", "value": False},
             {"field": "segments", "op": "contains", "value": "vip"}]
    outcomes = []
    for _ in range(400):
        picked = rng.sample(conds, rng.randint(1, 4))
        tree = {rng.choice(["all", "any"]): picked} if len(picked) > 1 else picked[0]
        a = rule({"not": tree} if rng.random() < 0.2 else tree)
        prof = Profile(ltv=float(rng.choice([0, 50, 150])), orders=rng.randint(0, 3),
                       counts={"view": rng.randint(0, 20)}, segments=rng.sample(["vip", "buyer"], rng.randint(0, 2)),
                       stage=rng.choice(["", "active"]), version=1) if rng.random() < 0.7 else None
        raw = {f"x:{k}": json.dumps(v) for k, v in (("country", rng.choice(["DE", "FR"])),
                                                     ("plan", rng.choice(["gold", "free"]))) if rng.random() < 0.7}
        if rng.random() < 0.3:
            raw["p:channels"] = json.dumps({"email": False})
        if rng.random() < 0.2:
            raw["ltv"] = "500"  # a plain field of the attributes hash overrides the profile's
        if rng.random() < 0.2:
            raw["p:country"] = json.dumps("AT")
        if prof is None:
            expected = holds(a.rule, profile_fields(raw), frozenset(), {})
        else:
            fields = profile_fields(profile_codec.rule_fields(prof), raw)
            expected = holds(a.rule, fields, set(prof.segments), {})
        assert in_audience(a, "u", prof, raw) == expected, (a.rule, prof, raw)
        outcomes.append(expected)
    assert 100 < sum(outcomes) < 300  # both answers, many times

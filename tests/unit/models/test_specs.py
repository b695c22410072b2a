"""Hyperparameter validation of the trainable types: defaults filled, every bad value refused with the
field named; and the job builds each type from its validated configuration."""

from __future__ import annotations

import math

import pytest

from aura.models.specs import ONLINE, PUBLISH, TRAINABLE, SpecError, describe, validate
from jobs.train import TrainError, build


def test_defaults_fill_the_configuration() -> None:
    c = validate("als", {"factors": 16})
    assert c["factors"] == 16 and isinstance(c["factors"], int)
    assert c["alpha"] == TRAINABLE["als"]["alpha"].default and c["k_users"] == PUBLISH["k_users"].default
    assert validate("popularity", {}) == {"k_users": 200, "k_items": 100}


@pytest.mark.parametrize(("kind", "config", "field"), [
    ("als", {"factors": 1}, "config.factors"),
    ("als", {"factors": 8.5}, "config.factors"),
    ("als", {"alpha": math.inf}, "config.alpha"),
    ("als", {"alpha": math.nan}, "config.alpha"),
    ("bpr", {"learning_rate": "x"}, "config.learning_rate"),
    ("bpr", {"iterations": True}, "config.iterations"),
    ("ease", {"neighbours": 5}, "config.neighbours"),
    ("item_knn", {"k_users": 0}, "config.k_users"),
    ("online_mf", {}, "type"),
    ("trending", {}, "type"),
    ("bogus", {}, "type"),
])
def test_bad_configurations_name_the_field(kind: str, config: dict, field: str) -> None:
    with pytest.raises(SpecError) as err:
        validate(kind, config)
    assert err.value.field == field


def test_every_trainable_type_is_built_and_described() -> None:
    for kind in TRAINABLE:
        assert build(kind, {}).kind == kind
    assert set(describe()) == set(TRAINABLE) and not set(ONLINE) & set(TRAINABLE)
    with pytest.raises(TrainError):
        build("als", {"factors": -3})

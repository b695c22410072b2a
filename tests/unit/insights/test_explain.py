"""Adtributor-style explanation: the value whose share moved is named, with its part of the change."""

from __future__ import annotations

import pytest

from aura.insights.explain import causes


def test_rate_drop_on_one_device_is_explained_by_it() -> None:
    # conversion = orders / views per device; mobile falls from 4 % to 2 %, the others stay
    before = {"device": {"mobile": (40.0, 1000.0), "desktop": (40.0, 1000.0)},
              "channel": {"web": (40.0, 1000.0), "app": (40.0, 1000.0)}}
    after = {"device": {"mobile": (20.0, 1000.0), "desktop": (40.0, 1000.0)},
             "channel": {"web": (30.0, 1000.0), "app": (30.0, 1000.0)}}
    found = causes(before, after, (80.0, 2000.0), (60.0, 2000.0), rate=True)
    top = found[0]
    assert (top.dimension, top.value) == ("device", "mobile")
    assert top.ep == pytest.approx(1.0, abs=0.01)
    assert top.before == pytest.approx(0.04) and top.after == pytest.approx(0.02)
    # the channels moved together: their shares did not change, so they explain nothing surprising
    assert all(c.dimension == "device" for c in found)


def test_additive_surge_is_explained_by_its_category() -> None:
    before = {"category": {"toys": (100.0, 1.0), "books": (300.0, 1.0), "home": (600.0, 1.0)},
              "device": {"mobile": (500.0, 1.0), "desktop": (500.0, 1.0)}}
    after = {"category": {"toys": (350.0, 1.0), "books": (300.0, 1.0), "home": (600.0, 1.0)},
             "device": {"mobile": (625.0, 1.0), "desktop": (625.0, 1.0)}}
    found = causes(before, after, (1000.0, 1.0), (1250.0, 1.0), rate=False)
    assert (found[0].dimension, found[0].value) == ("category", "toys")
    assert found[0].ep == pytest.approx(1.0)


def test_surge_during_the_daily_ramp_names_the_surging_value_first() -> None:
    # every category grows 30 % with the time of day; grocery also surges x2.5: the largest category
    # accounts for more of the change, but grocery is the one whose share moved
    before = {"category": {"electronics": (200.0, 1.0), "grocery": (70.0, 1.0), "books": (730.0, 1.0)}}
    after = {"category": {"electronics": (260.0, 1.0), "grocery": (227.5, 1.0), "books": (949.0, 1.0)}}
    found = causes(before, after, (1000.0, 1.0), (1436.5, 1.0), rate=False)
    assert found[0].value == "grocery"
    assert found[0].ep < max(c.ep for c in found)


def test_spread_change_names_several_values() -> None:
    before = {"device": {"a": (100.0, 1.0), "b": (100.0, 1.0), "c": (100.0, 1.0)}}
    after = {"device": {"a": (50.0, 1.0), "b": (60.0, 1.0), "c": (100.0, 1.0)}}
    found = causes(before, after, (300.0, 1.0), (210.0, 1.0), rate=False)
    assert {c.value for c in found} == {"a", "b"}


def test_no_change_no_cause() -> None:
    same = {"device": {"a": (1.0, 10.0)}}
    assert causes(same, same, (1.0, 10.0), (1.0, 10.0), rate=True) == []

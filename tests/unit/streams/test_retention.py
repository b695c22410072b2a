"""Acquisition cohorts' fold (streams/retention.py): first sight decides the cohort, activity is
counted once per user and period, purchases per period, fences skip what was applied, passive events
neither acquire nor activate; the Lua argument layout."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from aura.keys import RedisKeys
from aura.state.retention import DAY_MS, FENCE_COHORT, FENCE_COUNTER
from schemas.events import Behavior
from streams.intake import Accepted
from streams.retention import durable_statements, fold, lua_call, touched_fields

W0 = int(datetime(2026, 11, 2, tzinfo=UTC).timestamp() * 1000)  # a Monday
M0 = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp() * 1000)
NOW = W0 + 30 * DAY_MS


def ev(k: int, user: str, t: int, etype: str = "view", part: int = 0, revenue: float = 0.0) -> Accepted:
    return Accepted(Behavior(f"e{k}", etype, user, "x", t, revenue=revenue), part, k)


def test_first_sight_decides_the_cohort_and_activity_counts_once_per_period() -> None:
    events = [ev(0, "a", W0 + 1000), ev(1, "a", W0 + 2 * DAY_MS), ev(2, "a", W0 + 8 * DAY_MS, "purchase", revenue=20.0),
              ev(3, "a", W0 + 9 * DAY_MS), ev(4, "b", W0 + 9 * DAY_MS, "impression")]
    sh = fold(events, {}, {}, NOW, 70)[0]
    assert sh.first == {"a": W0 + 1000} and sh.offset == 4
    week = dict(sh.counts["week"])
    assert week == {f"n:{W0}": 1, f"o:{W0}:1": 1, f"r:{W0}:1": 20.0}
    assert dict(sh.counts["month"]) == {f"n:{M0}": 1, f"o:{M0}:0": 1, f"r:{M0}:0": 20.0}
    # one active mark per (grain, period, user); the impression neither acquires b nor activates anyone
    assert sh.active == {("week", W0, "a"): f"a:{W0}:0", ("week", W0 + 7 * DAY_MS, "a"): f"a:{W0}:1",
                         ("month", M0, "a"): f"a:{M0}:0"}


def test_stored_first_sight_and_fences() -> None:
    events = [ev(5, "a", W0 + 15 * DAY_MS, part=0), ev(6, "a", W0 + 16 * DAY_MS, part=0),
              ev(7, "c", W0 + 15 * DAY_MS, part=1)]
    out = fold(events, {0: 5}, {"a": W0}, NOW, 70)
    assert out[0].first == {} and out[0].offset == 6  # a was seen before: no new user; offset 5 fenced
    assert out[0].active == {("week", W0 + 14 * DAY_MS, "a"): f"a:{W0}:2", ("month", M0, "a"): f"a:{M0}:0"}
    assert out[1].first == {"c": W0 + 15 * DAY_MS}
    assert fold(events, {0: 6, 1: 7}, {"a": W0}, NOW, 70) == {}


def test_passive_only_partition_still_moves_its_fence_and_old_periods_are_not_reactivated() -> None:
    out = fold([ev(3, "z", W0, "impression", part=2)], {}, {}, NOW, 70)
    assert out[2].offset == 3 and not out[2].first and not out[2].active
    old = fold([ev(9, "a", W0 - 200 * DAY_MS, "purchase", revenue=5.0)], {}, {"a": W0 - 300 * DAY_MS}, NOW, 70)[0]
    assert old.active == {} and old.late == 2  # its period's marks may have expired: not counted again
    assert sum(1 for k in old.counts["week"] if k.startswith("r:")) == 1  # the revenue still counts


def test_lua_arguments_layout() -> None:
    keys = RedisKeys("t")
    sh = fold([ev(0, "a", W0 + 1000, "purchase", revenue=12.5)], {}, {}, NOW, 70)[0]
    k, args = lua_call(keys, sh, None, NOW, 70)
    assert k[:4] == [keys.retention_fence(0), keys.retention_first(0), keys.retention_counts(0, "week"),
                     keys.retention_counts(0, "month")]
    assert set(k[4:]) == {keys.retention_seen(0, "week", W0), keys.retention_seen(0, "month", M0)}
    assert args[:2] == ["", "0"]
    blob = json.loads(args[2])
    assert blob["f"] == ["a", str(W0 + 1000)]
    ints, floats = blob["c"][0]
    assert dict(zip(ints[::2], ints[1::2], strict=True)) == {f"n:{W0}": "1", f"o:{W0}:0": "1"}
    assert floats == [f"r:{W0}:0", "12.5"]
    for s in blob["s"]:
        assert k[s[0] - 1].startswith("t:ret:{p0}:seen:") and s[1] > 0 and s[2] == "a"


def test_touched_fields_name_every_counter_a_batch_changes_replays_included() -> None:
    events = [ev(0, "a", W0 + 1000), ev(1, "a", W0 + 8 * DAY_MS, "purchase", revenue=20.0),
              ev(2, "b", W0 + 9 * DAY_MS, "impression", part=1)]
    sh = fold(events, {}, {}, NOW, 70)[0]
    got = touched_fields(events, sh.first)
    changed = {(0, g, name) for g in ("week", "month") for name in sh.counts[g]} | \
        {(0, g, c) for (g, _p, _u), c in sh.active.items()}
    assert changed <= got  # every counter the fold changes is copied
    assert not any(p == 1 for p, _g, _n in got)  # the passive event touches nothing
    # a replay (fenced: the fold changes nothing) names the same counters from the stored first sight
    assert fold(events, {0: 1, 1: 2}, sh.first, NOW, 70) == {}
    assert touched_fields(events, sh.first) == got


def test_durable_rows_carry_their_cohort_and_the_fence_as_timestamp() -> None:
    rows = durable_statements("INSERT", "t.events.behavior", 3, "week", 41,
                              {f"n:{W0}": 2.0, f"r:{W0}:1": 20.5, "junk": 1.0})
    assert rows == [
        (("t.events.behavior", "week", W0), "INSERT", ("t.events.behavior", "week", W0, 3, f"n:{W0}", 2.0, 42)),
        (("t.events.behavior", "week", W0), "INSERT", ("t.events.behavior", "week", W0, 3, f"r:{W0}:1", 20.5, 42)),
        (("t.events.behavior", "week", FENCE_COHORT), "INSERT",
         ("t.events.behavior", "week", FENCE_COHORT, 3, FENCE_COUNTER, 41.0, 42)),
    ]

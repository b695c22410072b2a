"""The idle sweep's pure step (streams/lifecycle.py): idle users reach at-risk and churned, and their
segments are re-evaluated as of now."""

from __future__ import annotations

from aura.state.profiles import Profile
from streams import lifecycle
from streams.profiles import fold_user
from tests.unit.state.test_profile_codec import CFG, DAY, ITEMS, T0, busy_profile, ev


def test_sweep_step_marks_idle_users_and_reevaluates_segments_as_of_now():
    p = busy_profile()
    last = p.last_seen
    assert not lifecycle.sweep_user(p, last + DAY, CFG)  # not idle: nothing changes
    assert lifecycle.sweep_user(p, last + 15 * DAY, CFG)
    assert p.idle == "at-risk" and "buyer" in p.segments and "engaged" not in p.segments
    assert not lifecycle.sweep_user(p, last + 16 * DAY, CFG)  # idempotent
    assert lifecycle.sweep_user(p, last + 31 * DAY, CFG)
    assert p.idle == "churned" and "gone" in p.segments
    # an event clears the idle stage; the fold's own stage is reactivated after the churn gap
    fold_user(p, [ev(100, "view", last + 32 * DAY, "item-1", part=11)], CFG, ITEMS.get)
    assert p.idle == "" and p.stage == "reactivated" and "gone" not in p.segments


def test_sweep_engaged_user_leaves_engaged_when_idle():
    p = Profile()
    fold_user(p, [ev(i, "purchase", T0 + i, "item-1") for i in range(10)], CFG, ITEMS.get)
    assert "engaged" in p.segments
    assert not lifecycle.sweep_user(p, p.last_seen + 13 * DAY, CFG)  # not idle yet: event-time segments
    assert "engaged" in p.segments
    assert lifecycle.sweep_user(p, p.last_seen + 31 * DAY, CFG)  # engagement decayed to now: ~64 -> ~21
    assert "engaged" not in p.segments and p.idle == "churned"

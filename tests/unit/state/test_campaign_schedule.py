"""Schedules, occurrences and segment transitions of campaigns (pure)."""

from __future__ import annotations

from datetime import datetime

import pytest

from aura.state.campaign_schedule import (
    Schedule,
    fires,
    occurrence_key,
    parse_schedule,
    parse_transition,
    stream_id,
)
from aura.state.campaigns import CampaignError, validate_campaign

BASE = {"id": "c1", "channel": "email", "template": {"subject": "s", "body": "b"}}


def schedule(raw: dict) -> Schedule:
    errors: list = []
    s = parse_schedule({"type": "schedule", **raw}, errors)
    assert not errors and s is not None
    return s


def refused_at(trigger: dict) -> set[tuple]:
    with pytest.raises(CampaignError) as e:
        validate_campaign({**BASE, "trigger": trigger}, segments=frozenset({"vip"}))
    return {tuple(err["loc"]) for err in e.value.errors}


def test_bad_schedules_and_segment_triggers_name_the_field():
    assert ("trigger", "cron") in refused_at({"type": "schedule", "cron": "61 * * * *"})
    assert ("trigger", "cron") in refused_at({"type": "schedule", "cron": "every day"})
    assert ("trigger", "cron") in refused_at({"type": "schedule", "cron": 5})
    assert ("trigger", "at") in refused_at({"type": "schedule", "at": "tomorrow"})
    assert ("trigger", "cron") in refused_at({"type": "schedule"})  # neither
    assert ("trigger", "at") in refused_at({"type": "schedule", "at": 1, "cron": "* * * * *"}) or \
        ("trigger", "cron") in refused_at({"type": "schedule", "at": 1, "cron": "* * * * *"})
    assert ("trigger", "tz") in refused_at({"type": "schedule", "cron": "0 9 * * *", "tz": "Mars/Base"})
    assert ("trigger", "user_tz") in refused_at({"type": "schedule", "cron": "0 9 * * *", "user_tz": "yes"})
    assert ("trigger", "segment") in refused_at({"type": "segment", "segment": "nope"})
    assert ("trigger", "on") in refused_at({"type": "segment", "segment": "vip", "on": "stay"})
    assert ("trigger", "backfill") in refused_at({"type": "segment", "segment": "vip", "backfill": 1})
    assert ("trigger",) in refused_at({"type": "segment", "segment": "vip", "when": 1})


def test_valid_triggers_build():
    c = validate_campaign({**BASE, "trigger": {"type": "segment", "segment": "vip", "on": "leave", "delay_s": 5}},
                          segments=frozenset({"vip"}))
    assert (c.trigger.kind, c.trigger.segment, c.trigger.on, c.trigger.delay_ms, c.trigger.backfill) == \
        ("segment", "vip", "leave", 5000, False)
    c = validate_campaign({**BASE, "trigger": {"type": "schedule", "cron": "0 9 * * 1", "tz": "Europe/Paris"}})
    assert c.trigger.schedule == Schedule(None, "0 9 * * 1", "Europe/Paris", True)
    c = validate_campaign({**BASE, "trigger": {"type": "schedule", "cron": "* * * * * */5"}})
    assert c.trigger.schedule.cron == "* * * * * */5"  # seconds as a sixth field


def test_one_off_absolute_and_wall_clock():
    s = schedule({"at": 1_767_225_600_000})  # 2026-01-01T00:00Z
    assert not s.user_tz and s.window_ms(s.at) == (1_767_225_600_000, 1_767_225_600_000)
    assert s.next_occurrence(None, 1_767_225_600_000) == s.at
    assert s.next_occurrence(s.at, 0) is None  # done once expanded
    assert s.next_occurrence(None, 1_767_225_600_001) is None  # past
    s = schedule({"at": "2026-01-01T09:00:00+01:00"})
    assert s.instant_ms(s.at, "Asia/Tokyo") == 1_767_225_600_000 + 8 * 3_600_000  # absolute: zones ignored
    s = schedule({"at": "2026-01-01T09:00", "tz": "Europe/Paris"})
    assert s.instant_ms(s.at, None) == 1_767_225_600_000 + 8 * 3_600_000  # the campaign's zone
    assert s.instant_ms(s.at, "America/New_York") == 1_767_225_600_000 + 14 * 3_600_000  # the user's zone
    assert s.instant_ms(s.at, "Not/AZone") == s.instant_ms(s.at, None)
    lo, hi = s.window_ms(s.at)
    assert lo == 1_767_225_600_000 + 9 * 3_600_000 - 14 * 3_600_000
    assert hi == 1_767_225_600_000 + 9 * 3_600_000 + 12 * 3_600_000


def test_cron_occurrences_follow_one_another_in_the_users_wall_clock():
    s = schedule({"cron": "0 9 * * *", "tz": "UTC", "user_tz": False})
    first = s.next_occurrence(None, 1_767_225_600_000)  # 2026-01-01T00:00Z
    assert first == datetime(2026, 1, 1, 9, 0)
    assert s.next_occurrence(first, 0) == datetime(2026, 1, 2, 9, 0)
    local = schedule({"cron": "0 9 * * *", "tz": "UTC"})
    # at 20:00Z, 09:00 of 2025-12-31 is still ahead in UTC-12 (21:00Z): the earliest not over
    assert local.next_occurrence(None, 1_767_225_600_000 - 4 * 3_600_000) == datetime(2025, 12, 31, 9, 0)
    assert local.next_occurrence(None, 1_767_225_600_000) == datetime(2026, 1, 1, 9, 0)
    assert occurrence_key(first) == "2026-01-01T09:00:00"
    dst = schedule({"cron": "30 2 * * *", "tz": "Europe/Paris", "user_tz": False})
    w = dst.next_occurrence(None, 1_774_656_000_000)  # 2026-03-28: the night of the change to summer time
    assert dst.instant_ms(w) > 1_774_656_000_000


def test_transitions_fire_by_kind_and_origin():
    t = parse_transition("1700000000000-3", {"u": "ann", "k": "enter", "o": "fold"})
    assert t.at_ms == 1_700_000_000_000 and t.user_id == "ann"
    assert fires("enter", False, t) and not fires("leave", False, t)
    b = parse_transition("1-0", {"u": "bob", "k": "enter", "o": "backfill"})
    assert not fires("enter", False, b) and fires("enter", True, b)
    r = parse_transition("1-0", {"u": "bob", "k": "leave", "o": "remove"})
    assert not fires("leave", True, r)
    assert parse_transition("1-0", {"k": "enter"}) is None
    assert stream_id("5-2") > stream_id("5-1") > stream_id("4-9") > stream_id(None)


def test_a_one_off_time_with_milliseconds_is_done_once_expanded():
    from aura.state.campaign_schedule import parse_occurrence

    s = schedule({"at": 1_767_225_600_123})
    key = occurrence_key(s.at)
    assert s.next_occurrence(parse_occurrence(key), 0) is None

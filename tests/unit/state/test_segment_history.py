"""Segment membership counts over time (aura/state/segments.py ``history``): hours summed into days,
the size carried through buckets without changes, nothing invented before the first change."""

from __future__ import annotations

from aura.state.segments import HOUR_MS, history, hour_of

DAY = 24 * HOUR_MS
D0 = 20_000 * DAY  # a midnight


def test_hours_and_days() -> None:
    raw = {f"{D0 + 2 * HOUR_MS}:j": "5", f"{D0 + 2 * HOUR_MS}:n": "5",
           f"{D0 + 5 * HOUR_MS}:j": "2", f"{D0 + 5 * HOUR_MS}:l": "1", f"{D0 + 5 * HOUR_MS}:n": "6",
           f"{D0 + DAY + HOUR_MS}:l": "6", f"{D0 + DAY + HOUR_MS}:n": "0", "junk": "1"}
    hours = history(raw, "hour", D0, D0 + 7 * HOUR_MS)
    assert [h["start"] for h in hours] == [D0 + k * HOUR_MS for k in range(2, 7)]  # none before the first change
    assert hours[0] == {"start": D0 + 2 * HOUR_MS, "joined": 5, "left": 0, "members": 5}
    assert hours[1] == {"start": D0 + 3 * HOUR_MS, "joined": 0, "left": 0, "members": 5}  # carried
    assert hours[3] == {"start": D0 + 5 * HOUR_MS, "joined": 2, "left": 1, "members": 6}
    days = history(raw, "day", D0, D0 + 3 * DAY)
    assert days == [{"start": D0, "joined": 7, "left": 1, "members": 6},
                    {"start": D0 + DAY, "joined": 0, "left": 6, "members": 0},
                    {"start": D0 + 2 * DAY, "joined": 0, "left": 0, "members": 0}]
    # a window after the changes starts from the size they left
    assert history(raw, "hour", D0 + 3 * DAY, D0 + 3 * DAY + HOUR_MS) == [
        {"start": D0 + 3 * DAY, "joined": 0, "left": 0, "members": 0}]
    assert hour_of(D0 + 5 * HOUR_MS + 1234) == D0 + 5 * HOUR_MS

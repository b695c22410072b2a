"""Acquisition cohort math (aura/state/retention.py): week and month starts, period indices, the
table assembled from the partitions' counters."""

from __future__ import annotations

import calendar
import random
from datetime import UTC, datetime

import pytest

from aura.state import retention as r


def ms(*a: int) -> int:
    return int(datetime(*a, tzinfo=UTC).timestamp() * 1000)


def test_weeks_start_on_monday_and_months_on_the_first() -> None:
    assert r.period_start(ms(2026, 12, 6, 23, 59), "week") == ms(2026, 11, 30)  # a Sunday -> its Monday
    assert r.period_start(ms(2026, 11, 30), "week") == ms(2026, 11, 30)
    assert r.period_start(ms(1970, 1, 1), "week") == ms(1969, 12, 29)
    assert r.period_start(ms(2024, 2, 29, 12), "month") == ms(2024, 2, 1)
    assert r.period_end(ms(2024, 2, 1), "month") == ms(2024, 3, 1)
    assert r.period_end(ms(2026, 11, 30), "week") == ms(2026, 12, 7)
    with pytest.raises(ValueError, match="grain"):
        r.period_start(0, "year")


def test_period_index_counts_whole_periods_and_clamps_early_events() -> None:
    c = r.period_start(ms(2026, 11, 4), "week")
    assert r.period_index(c, ms(2026, 11, 8, 23), "week") == 0
    assert r.period_index(c, ms(2026, 11, 9), "week") == 1
    assert r.period_index(c, ms(2026, 12, 1), "week") == 4
    assert r.period_index(c, ms(2026, 10, 1), "week") == 0  # before the cohort (a late event): period 0
    m = r.period_start(ms(2025, 11, 20), "month")
    assert r.period_index(m, ms(2026, 1, 31), "month") == 2
    assert r.period_index(m, ms(2026, 11, 1), "month") == 12


def test_table_sums_partitions_and_reports_retention_and_revenue() -> None:
    c = ms(2026, 11, 2)
    shares = [{b"n:%d" % c: b"3", b"a:%d:0" % c: b"3", b"a:%d:1" % c: b"1", b"r:%d:0" % c: b"30.5",
               b"o:%d:0" % c: b"2"},
              {f"n:{c}": "1", f"a:{c}:0": "1", f"a:{c}:2": "2", f"r:{c}:2": "9.5", "junk": "1", "n:x": "4"}]
    rows = r.table(r.merge(shares), "week", c, c + 1, 12, ms(2026, 11, 20))
    assert len(rows) == 1
    row = rows[0]
    assert row["cohort"] == "2026-11-02" and row["users"] == 4
    assert [p["period"] for p in row["periods"]] == [0, 1, 2]  # periods starting after now are left out
    p0, p1, p2 = row["periods"]
    assert (p0["active"], p0["retention"], p0["orders"], p0["revenue"]) == (4, 1.0, 2, 30.5)
    assert (p1["active"], p1["retention"], p1["start"]) == (1, 0.25, "2026-11-09")
    assert p2["cumulative_revenue_per_user"] == pytest.approx((30.5 + 9.5) / 4)
    assert r.table(r.merge(shares), "week", c + 1, c + 10, 12, ms(2026, 11, 20)) == []  # outside [from, to)


def test_durable_copy_helpers() -> None:
    w0 = int(datetime(2026, 11, 2, tzinfo=UTC).timestamp() * 1000)  # a Monday
    assert r.cohort_of(f"n:{w0}") == w0 and r.cohort_of(f"a:{w0}:3") == w0
    assert r.cohort_of("_fence") is None and r.cohort_of("x:1:2") is None and r.cohort_of("n:abc") is None
    assert r.cohort_starts(w0 - 1, w0 + 2 * r.WEEK_MS + 1, "week") == [w0, w0 + r.WEEK_MS, w0 + 2 * r.WEEK_MS]
    assert r.cohort_starts(w0, w0, "week") == []
    nov = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp() * 1000)
    dec = int(datetime(2026, 12, 1, tzinfo=UTC).timestamp() * 1000)
    assert r.cohort_starts(nov + 1, dec + 1, "month") == [dec]
    # Redis answers while it holds a partition's fence and is not behind the durable copy
    assert r.pick_sources({0: 10, 1: 5}, {0: 10, 1: 9, 2: 3}) == {0: "redis", 1: "durable", 2: "durable"}
    assert r.pick_sources({0: 10}, {}) == {0: "redis"}


def _reference_month_start(t: int) -> int:
    d = datetime.fromtimestamp(t / 1000, UTC)
    return int(datetime(d.year, d.month, 1, tzinfo=UTC).timestamp() * 1000)


def test_cached_month_math_equals_the_datetime_formulas():
    """The month helpers (cached per day) against the plain ``datetime`` formulas: random times
    from before the epoch to 2100, and the millisecond on either side of every month start and
    of day starts (leap years included)."""
    rnd = random.Random(3)
    times = [rnd.randrange(-400 * r.DAY_MS, 4_102_444_800_000) for _ in range(20_000)]
    for year in range(1968, 2101):
        for month in range(1, 13):
            start = int(datetime(year, month, 1, tzinfo=UTC).timestamp() * 1000)
            times += [start - 1, start, start + 1, start + r.DAY_MS - 1, start + 15 * r.DAY_MS]
    for t in times:
        want = _reference_month_start(t)
        assert r.period_start(t, "month") == want, t
        d = datetime.fromtimestamp(want / 1000, UTC)
        assert r.period_end(want, "month") == want + calendar.monthrange(d.year, d.month)[1] * r.DAY_MS
    for cohort_t, t in zip(times[::2], times[1::2], strict=False):
        cohort = _reference_month_start(cohort_t)
        p = _reference_month_start(t)
        a, b = datetime.fromtimestamp(cohort / 1000, UTC), datetime.fromtimestamp(p / 1000, UTC)
        want = 0 if p <= cohort else (b.year - a.year) * 12 + b.month - a.month
        assert r.period_index(cohort, t, "month") == want

"""The analytics time window: epoch ms or ISO-8601, the timeframe shorthand, the grain chosen for
long ranges, and clear 422s naming the parameter."""

from __future__ import annotations

import pytest
from fastapi import HTTPException

from serving.routes.analytics import Window, parse_time

DAY = 86_400_000


@pytest.mark.parametrize("raw, ms", [
    ("1790000000000", 1_790_000_000_000),
    ("2026-11-01", 1_793_491_200_000),
    ("2026-11-01T12:00:00Z", 1_793_534_400_000),
    ("2026-11-01T13:00:00+01:00", 1_793_534_400_000),
    ("2026-11-01T12:00:00", 1_793_534_400_000),  # no zone: UTC
    (None, None),
])
def test_parse_time(raw, ms):
    assert parse_time(raw, "from") == ms


@pytest.mark.parametrize("raw", ["yesterday", "2026-13-01", "99999999999999999999", "-5"])
def test_bad_times_name_the_parameter(raw):
    with pytest.raises(HTTPException) as info:
        parse_time(raw, "to")
    assert info.value.status_code == 422 and info.value.detail[0]["loc"] == ["query", "to"]


def test_timeframe_and_grain():
    to = 1_790_000_000_000
    w = Window(grain=None, from_ms=None, to_ms=to, timeframe="30d")
    assert (w.from_ms, w.to_ms, w.grain) == (to - 30 * DAY, to, "hour")
    assert Window(grain=None, from_ms=None, to_ms=to, timeframe="200d").grain == "day"
    assert Window(grain="minute", from_ms=None, to_ms=to, timeframe="90m").from_ms == to - 90 * 60_000
    assert Window(grain=None, from_ms="2026-11-01", to_ms="2026-11-02", timeframe=None).starts[0] == 1_793_491_200_000
    with pytest.raises(HTTPException):
        Window(grain=None, from_ms=to - DAY, to_ms=to, timeframe="1d")
    with pytest.raises(HTTPException):
        Window(grain="minute", from_ms=None, to_ms=to, timeframe="30d")  # too many buckets

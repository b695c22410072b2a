"""serving/timeparams.py: every time query parameter reads epoch ms or ISO-8601, exactly to the
millisecond, with a 422 naming the parameter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi import HTTPException

from serving.timeparams import MAX_EPOCH_MS, parse_time


@pytest.mark.parametrize("ms", [0, 1, 999, 1_796_573_333_458, 1_796_573_333_457, 1_700_000_000_001,
                                MAX_EPOCH_MS])
def test_iso_and_epoch_agree_to_the_millisecond(ms):
    iso = (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)).isoformat(timespec="milliseconds")
    assert parse_time(iso, "from") == parse_time(str(ms), "from") == ms
    assert parse_time(iso.replace("+00:00", "Z"), "from") == ms


@pytest.mark.parametrize("raw", ["0001-01-01", "1969-12-31T23:59:59Z", "10000-01-01", "2026-02-30", "now", "1e3"])
def test_outside_or_malformed_names_the_parameter(raw):
    with pytest.raises(HTTPException) as info:
        parse_time(raw, "active_since")
    assert info.value.status_code == 422 and info.value.detail[0]["loc"] == ["query", "active_since"]

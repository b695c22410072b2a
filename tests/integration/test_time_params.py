"""Every time parameter of a query string takes epoch milliseconds or ISO-8601 (serving/timeparams.py):
analytics windows, insights and the profile search answer the same for both spellings, and a bad
value is a 422 naming the parameter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

pytestmark = [pytest.mark.integration]

T0 = 1_796_500_000_123
START = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=T0)
ISO = START.isoformat(timespec="milliseconds").replace("+00:00", "Z")  # with Z
ISO_TO = (START + timedelta(days=1)).isoformat(timespec="milliseconds")  # with +00:00


def test_insights_take_iso_and_epoch(api_client):
    epoch = api_client.get("/v1/analytics/insights", params={"from": T0, "to": T0 + 86_400_000})
    iso = api_client.get("/v1/analytics/insights", params={"from": ISO, "to": ISO_TO})
    assert epoch.status_code == iso.status_code == 200, iso.text
    assert (iso.json()["from"], iso.json()["to"]) == (T0, T0 + 86_400_000) and iso.json() == epoch.json()
    bad = api_client.get("/v1/analytics/insights", params={"from": "yesterday"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "from"]
    assert api_client.get("/v1/analytics/insights", params={"to": "99999-01-01"}).status_code == 422


def test_analytics_take_iso_and_epoch(api_client):
    epoch = api_client.get("/v1/analytics/revenue", params={"from": T0, "to": T0 + 86_400_000})
    iso = api_client.get("/v1/analytics/revenue", params={"from": ISO, "to": ISO_TO})
    assert epoch.status_code == iso.status_code == 200, iso.text
    assert iso.json() == epoch.json()


def test_profile_search_takes_iso_and_epoch(api_client):
    # far in the future: no profile of the shared Redis is active since then, whichever spelling
    for since in (253_402_300_799_999, "9999-12-31T23:59:59.999Z"):
        r = api_client.get("/v1/profiles", params={"active_since": since, "limit": 500})
        assert r.status_code == 200 and r.json()["profiles"] == [], r.text
    bad = api_client.get("/v1/profiles", params={"active_since": "last tuesday"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "active_since"]


def test_journeys_take_hourly_windows_and_timeframes(api_client):
    # journeys are kept per session-start day: an hourly window or a timeframe is widened to days
    for params in ({"from": T0, "to": T0 + 3_600_000}, {"timeframe": "30d"}, {"from": ISO, "to": ISO_TO}):
        r = api_client.get("/v1/analytics/journeys", params=params)
        assert r.status_code == 200 and isinstance(r.json()["journeys"], list), (params, r.text)

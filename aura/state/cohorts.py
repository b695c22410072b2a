"""Demographic cohorts: which cohorts a user belongs to, from the identity attributes.

A user's cohorts come from their identity attributes (the ``user_attrs`` hash written by
streams/identity.py): ``age:<band>`` (from ``age`` or ``birth_year``), ``gender:<g>``, ``country:<c>``
(lower-cased; unknown attributes give no cohort). Shared by the writer (streams/cohorts.py, which counts
each cohort's popular items) and the ranking (aura/ranking, which reads the user's cohorts' lists for the
cold start). Pure: no I/O.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from aura.state.profiles import parse_attrs

AGE_BANDS = ((18, "0-17"), (25, "18-24"), (35, "25-34"), (45, "35-44"), (55, "45-54"), (65, "55-64"))


def age_band(age: float) -> str:
    for upper, name in AGE_BANDS:
        if age < upper:
            return name
    return "65+"


def cohorts_of(attributes: dict[str, Any], this_year: int | None = None) -> list[str]:
    """Profile attributes -> the user's cohorts (pure)."""
    out = []
    age = attributes.get("age")
    if not isinstance(age, int | float) or isinstance(age, bool):
        by = attributes.get("birth_year")
        year = this_year or dt.datetime.now(dt.UTC).year
        age = year - by if isinstance(by, int) and not isinstance(by, bool) and 1900 < by <= year else None
    if age is not None and 0 <= age < 130:
        out.append(f"age:{age_band(age)}")
    for name in ("gender", "country"):
        v = attributes.get(name)
        if isinstance(v, str) and v.strip():
            out.append(f"{name}:{v.strip().lower()[:64]}")
    return out


def cohorts_from_hash(raw: dict[str, str]) -> list[str]:
    """The identity hash (``RedisKeys.user_attrs``) -> cohorts."""
    try:
        attributes = parse_attrs(raw)[0]
    except ValueError:  # a malformed attribute never blocks the fold or a request
        return []
    return cohorts_of(attributes)

"""The searchable profile copy's pure parts: attribute terms against the typed comparison they
stand for, numeric rows, filters to CQL, lifecycle windows, and the signed cursor."""

from __future__ import annotations

from typing import Any

import pytest

from aura.state import profile_search as ps
from aura.state.profiles import Profile, ProfileConfig, lifecycle

DAY = 24 * 3600 * 1000
CFG = ProfileConfig()


def reference_match(value: Any, wanted: str) -> bool:
    """The typed comparison a search means: numbers numerically, booleans as true/false, strings
    exactly (or by number when both read as numbers), lists by element."""
    if isinstance(value, list):
        return any(reference_match(v, wanted) for v in value)
    if isinstance(value, bool):
        return wanted.lower() == str(value).lower()
    if isinstance(value, int | float):
        try:
            return float(wanted) == float(value)
        except ValueError:
            return False
    if value == wanted:
        return True
    try:
        return float(value) == float(wanted)
    except ValueError:
        return value.lower() in ("true", "false") and value.lower() == wanted.lower()


VALUES = ["US", "us", 30, 30.0, 30.5, -2, True, False, "30", "02134", "true", "True", ["a", "b", 3], "", "a=b"]
QUERIES = ["US", "us", "30", "30.0", "30.5", "-2", "true", "TRUE", "false", "02134", "2134", "a", "3", "", "a=b", "x"]


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_terms_answer_the_typed_comparison(value: Any) -> None:
    terms = ps.terms_of({"k": value})
    for q in QUERIES:
        assert (ps.query_term("k", q) in terms) == reference_match(value, q), (value, q)


def test_numbers_are_range_rows_and_booleans_are_not() -> None:
    assert ps.numbers_of({"age": 31, "score": 2.5, "vip": True, "tags": [1, 2], "name": "x"}) == {
        "age": 31.0, "score": 2.5}
    rows = ps.attrs_params("u1", {"age": 31, "country": "US"}, 1000)
    assert rows[0] == (0, (999, "u1"))  # the old numeric rows are deleted just before
    assert rows[1][0] == 1 and rows[1][1][1] == {"age=31", "country=US"}
    assert rows[2] == (2, ("u1", "age", 31.0, 1000))


def test_huge_terms_are_not_indexed() -> None:
    assert ps.terms_of({"bio": "x" * 2000}) == set()


def test_profile_row_carries_stage_and_activity() -> None:
    p = Profile(last_seen=5, stage="", segments=["b", "a"], eng=3.0, eng_t=4)
    assert ps.profile_params("u", p, 9) == ("u", {"a", "b"}, "new", 5, 3.0, 4, 9)


def parse(**kw: Any) -> ps.Filters:
    args = {"segments": [], "attributes": [], "attribute_min": None, "attribute_max": None, "since": None,
            "before": None, "lifecycle": None, "now_ms": 100 * DAY, "cfg": CFG}
    args.update(kw)
    return ps.parse_filters(**args)


def test_filters_become_one_indexed_query() -> None:
    f = parse(segments=["buyer", "vip"], attributes=["country:US", "age:30.0"], attribute_min="ltv:10",
              attribute_max="ltv:99.5", since=7, before=9)
    cql, params = ps.build_query(f)
    assert cql.endswith("WHERE attr = ? AND num >= ? AND num <= ? AND segments CONTAINS ? AND segments CONTAINS ? "
                        "AND terms CONTAINS ? AND terms CONTAINS ? AND last_seen >= ? AND last_seen < ?")
    assert params == ["ltv", 10.0, 99.5, "buyer", "vip", "country=US", "age=30", 7, 9]
    cql, params = ps.build_query(parse())
    assert cql.endswith("WHERE attr = ?") and params == [""]


@pytest.mark.parametrize(("kw", "param"), [
    ({"attributes": ["nocolon"]}, "attribute"),
    ({"attributes": [":x"]}, "attribute"),
    ({"attribute_min": "age:abc"}, "attribute_min"),
    ({"attribute_max": "age:nan"}, "attribute_max"),
    ({"attribute_min": "age:1", "attribute_max": "ltv:2"}, "attribute_max"),
    ({"lifecycle": "sleepy"}, "lifecycle"),
    ({"segments": list("abcdef")}, "segment"),
    ({"attributes": [f"a:{i}" for i in range(11)]}, "attribute"),
    ({"attributes": ["a:" + "x" * 600]}, "attribute"),
    ({"segments": ["s" * 600]}, "segment"),
    ({"attribute_min": "n" * 600 + ":1"}, "attribute_min"),
])
def test_bad_filters_name_their_parameter(kw: dict[str, Any], param: str) -> None:
    with pytest.raises(ps.SearchError) as e:
        parse(**kw)
    assert e.value.param == param


@pytest.mark.parametrize("idle_days", [0, 1, 6.9, 7.1, 13.9, 14.1, 29.9, 30.1, 60])
@pytest.mark.parametrize("stage", ["new", "active", "reactivated"])
def test_lifecycle_windows_agree_with_the_profile_view(idle_days: float, stage: str) -> None:
    now = 100 * DAY
    p = Profile(last_seen=now - int(idle_days * DAY), stage=stage)
    expected = lifecycle(p, now, CFG)
    for wanted in ps.LIFECYCLES:
        f = parse(lifecycle=wanted, now_ms=now)
        hit = ((f.since is None or p.last_seen >= f.since) and (f.before is None or p.last_seen < f.before)
               and (f.stage is None or f.stage == p.stage))
        assert hit == (wanted == expected), (wanted, expected)


def test_lifecycle_narrows_an_activity_window() -> None:
    f = parse(lifecycle="churned", since=5, before=200 * DAY)
    assert f.since == 5 and f.before == 100 * DAY - int(CFG.churn_ms)


def test_cursor_is_bound_to_its_search_and_secret() -> None:
    state = b"\x00\x01paging-state\xff"
    c = ps.encode_cursor(b"k", "search-a", state)
    assert c is not None and ps.decode_cursor(b"k", "search-a", c) == state
    assert ps.encode_cursor(b"k", "search-a", None) is None
    for secret, key, cursor in [(b"k", "search-b", c), (b"other", "search-a", c), (b"k", "search-a", c[:-2]),
                                (b"k", "search-a", "!!!"), (b"k", "search-a", ""), (b"k", "search-a", "x" * 5000)]:
        with pytest.raises(ps.SearchError) as e:
            ps.decode_cursor(secret, key, cursor)
        assert e.value.param == "cursor"

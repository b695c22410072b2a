"""Pools on demand, the pure parts (streams/usercands.py): which users the worker drains from the
wanted set (from its cursor on, inclusive, without those already taken at the cursor; only the
placements it keeps) and which users noted from batches asked recently (ZMSCORE answers)."""

from __future__ import annotations

from serving.recommend import parse_wanted, wanted_member
from streams.usercands import asked, drained


def test_members_spell_placement_then_user() -> None:
    assert parse_wanted(wanted_member("default", "u|1\x1fodd")) == ("default", "u|1\x1fodd")


def test_drain_from_the_cursor_without_the_members_taken_there() -> None:
    m = wanted_member
    entries = [(m("default", "a"), 100.0), (m("default", "b"), 105.0), (m("homepage", "c"), 105.0),
               (m("default", "a"), 105.0)]  # (a ZRANGEBYSCORE never repeats a member; a user may be in 2 placements)
    users, cursor, at = drained(entries, 90.0, set(), ["default"])
    assert users == ["a", "b"] and cursor == 105.0
    assert at == {m("default", "b"), m("homepage", "c"), m("default", "a")}
    # the next read starts AT the cursor (inclusive): the members already taken there are skipped, a
    # member added in the same millisecond after the read is not
    again = [(m("default", "b"), 105.0), (m("default", "d"), 105.0), (m("default", "e"), 107.0)]
    users, cursor, at = drained(again, cursor, at, ["default"])
    assert users == ["d", "e"] and cursor == 107.0 and at == {m("default", "e")}
    users, cursor2, at2 = drained([], cursor, at, ["default"])  # nothing new: nothing, the cursor stays
    assert users == [] and (cursor2, at2) == (cursor, at)


def test_asked_recently_in_any_placement() -> None:
    users, placements = ["a", "b", "c", "d"], ["default", "homepage"]
    scores = [None, 500.0,  # a: homepage, recent
              "400", None,  # b: default, too old (a string, as RESP2 answers)
              None, None,  # c: never asked
              "1000", 99.0]  # d: recent
    assert asked(users, placements, scores, since_ms=500.0) == {"a", "d"}

"""The Lua scripts (aura/ranking/scripts.py) against the formats they read, as contract checks: the pool
fields and separator the pool-read script spells (aura/state/pools.py), the filter record prefix the
similar-items script keeps (aura/state/catalog.py), the first pass script's reads in the order of the
ranking's first round trip (aura/ranking/ranker.py)."""

from __future__ import annotations

import re
from types import SimpleNamespace

from aura.keys import RedisKeys
from aura.ranking.ranker import FIRST_USER_READS, Ranker
from aura.ranking.request import Request
from aura.ranking.scripts import CANDS_LUA, COLD_LUA, FIRST_LUA, SIMILAR_LUA
from aura.state.catalog import filter_record
from aura.state.pools import CANDS_FIELDS, CANDS_REST, CANDS_SEP


def test_the_pool_read_script_reads_the_pool_format():
    hmgets = re.findall(r"HMGET', KEYS\[2\], ([^)]*)\)", CANDS_LUA)
    fields = [tuple(f.strip().strip("'") for f in args.split(",")) for args in hmgets]
    assert fields == [CANDS_FIELDS, CANDS_REST]
    assert "HSTRLEN', KEYS[2], '" + CANDS_REST[0] in CANDS_LUA
    assert ord(CANDS_SEP) == 31 and CANDS_LUA.count("'\\31'") == 3  # Lua's decimal escape of the separator


def test_the_similar_script_keeps_available_records():
    assert "string.sub(r, 1, 2) == '1|'" in SIMILAR_LUA
    assert filter_record({"stock": 2}).startswith("1|") and filter_record({"stock": 0}).startswith("0|")


def test_the_first_pass_script_reads_what_the_first_round_trip_reads():
    ranker = Ranker(SimpleNamespace(register_script=lambda _src: None), RedisKeys("t"))
    cmds = ranker.first_commands(Request("u"))
    spelled = re.findall(r"out\[\d\] = redis.call\('(\w+)', KEYS\[(\d)\]", FIRST_LUA)
    # the first seven, by position; the neighbours (KEYS[6]) are not read: the first pass skips them
    assert [(c[0], str(n)) for n, c in enumerate(cmds[:7], 1) if n != 6] == spelled
    assert "out[6] = {}" in FIRST_LUA
    assert len(cmds) == FIRST_USER_READS + 2  # the user's reads, one trending list, the popular list
    assert all(c[0] == "ZREVRANGE" for c in cmds[7:])  # the trending lists and the popular list
    assert "'^(.*)|([^|]*)|[^|]*|[^|]*$'" in FIRST_LUA  # ``seq_item``: split at the last three bars


def test_the_cold_script_is_the_pool_read_then_the_first_pass():
    """``COLD_LUA`` runs the two scripts' own bodies (one definition each), the pool's six keys and
    arguments first."""
    assert CANDS_LUA.split("return pool_read")[0] in COLD_LUA
    assert FIRST_LUA.split("return first_pass")[0] in COLD_LUA
    assert "for i = 1, 6 do ck[i] = KEYS[i]; ca[i] = ARGV[i] end" in COLD_LUA

"""Redis time of the recommender's item scripts on MovieLens-100K, per replayed event.

    .venv/bin/python -m bench.item_script [--events 40000] [--batches 2000,8000] [--runs 3]

The ratings in time order (bench/recs_fold.py ``events``) are folded batch after batch as the worker
does (item candidates, fold; stored sequences carried over, no item fences), and every batch's item
deltas are applied with the item script (streams/itemsignals.py ``ITEM_LUA``) in pipelines of
``APPLY_CHUNK`` items, into a private ``redis-server`` started on a free port for the run (so no other
client's commands are counted). Printed: the server's own time in EVALSHA (``INFO commandstats``; the
commands a script calls run inside its time) per event and per script call, and the item scripts per
event, for each batch size. ``--variant zincrby`` applies the
co-occurrence increments with one ZINCRBY per neighbour instead (the script before the summed ZADD),
for a side-by-side figure; both leave the same scores (tests/integration/test_item_script.py).
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import subprocess
import tempfile
import time

import redis

from aura.settings import get_settings
from aura.state import trending
from aura.state.cooccurrence import SeqEntry
from bench.recs_fold import events
from streams.itemsignals import APPLY_CHUNK, ITEM_LUA, item_lua_args
from streams.usersignals import CoocParams, fold, item_candidates

ZINCRBY_PART = """local cap = tonumber(d.cap)
local n = 0
for j, w in pairs(d.c) do redis.call('ZINCRBY', KEYS[2], w, j); n = n + 1 end
if n > 0 and redis.call('ZCARD', KEYS[2]) > cap then redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -cap - 1) end
n = 0
for j, w in pairs(d.b) do redis.call('ZINCRBY', KEYS[3], w, j); n = n + 1 end
if n > 0 and redis.call('ZCARD', KEYS[3]) > cap then redis.call('ZREMRANGEBYRANK', KEYS[3], 0, -cap - 1) end
"""


def zincrby_script() -> str:
    head, rest = ITEM_LUA.split("local cap = tonumber(d.cap)\n", 1)
    return head + ZINCRBY_PART + "return {" + rest.split("return {", 1)[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_run(client: redis.Redis, lua: str, acc: list, batch: int, p: CoocParams, cap: int, half_life: float
            ) -> tuple[float, int]:
    client.flushall()
    client.config_resetstat()
    script = client.register_script(lua)
    seqs: dict[str, list[SeqEntry]] = {}
    calls = 0
    for start in range(0, len(acc), batch):
        part = acc[start:start + batch]
        stored = {u: seqs.get(u, []) for u in {a.event.user_id for a in part}}
        f = fold(part, {}, stored, p, dict.fromkeys(item_candidates(part, {}, stored, p)))
        order = [i for i, d in f.items.items() if d.entries]
        for c in range(0, len(order), APPLY_CHUNK):
            pipe = client.pipeline(transaction=False)
            for item in order[c:c + APPLY_CHUNK]:
                script(keys=[f"{{{item}}}:s", f"{{{item}}}:c", f"{{{item}}}:b", f"{{{item}}}:m"],
                       args=item_lua_args(f.items[item], cap, half_life), client=pipe)
            pipe.execute()
        calls += len(order)
        seqs.update({u: d.seq for u, d in f.users.items()})
    stats = client.info("commandstats")
    return float(stats.get("cmdstat_evalsha", {}).get("usec", 0)), calls


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=40000)
    ap.add_argument("--batches", default="2000,8000")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--variants", default="zadd,zincrby")
    a = ap.parse_args()
    s = get_settings()
    p = CoocParams(window=s.recs.window, decay=s.recs.decay, seq_max=s.recs.seq_max)
    half_life = trending.half_life_from_hours(s.recs.trending_half_life_h)
    acc = events(a.events)
    port = free_port()
    home = tempfile.mkdtemp(prefix="aura-bench-redis-")
    server = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port", str(port), "--save", "",
                               "--appendonly", "no", "--dir", home], stdout=subprocess.DEVNULL)
    try:
        client = redis.Redis(port=port, decode_responses=True)
        deadline = time.monotonic() + 30
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        lua = {"zadd": ITEM_LUA, "zincrby": zincrby_script()}
        for batch in (int(b) for b in a.batches.split(",")):
            for variant in a.variants.split(","):
                runs = [one_run(client, lua[variant], acc, batch, p, s.recs.cooc_cap, half_life)
                        for _ in range(a.runs)]
                usec = statistics.median(r[0] for r in runs)
                calls = runs[0][1]
                print(f"batch {batch:>6}, {variant:8s}: Redis time in the item scripts "
                      f"{usec / len(acc):7.1f} us/event, {usec / calls:7.1f} us per script call, "
                      f"{calls / len(acc):.2f} item scripts per event "
                      f"(median of {a.runs}, {len(acc)} MovieLens events)")
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()

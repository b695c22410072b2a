"""CPU of one neighbour-list publishing pass (``publish_similar``) on MovieLens-100K, old way and new.

    .venv/bin/python -m bench.publish_cost [--events 100000] [--items 1000] [--runs 7]

The ratings in time order (bench/recs_fold.py ``events``) are folded batch after batch as the worker
does and applied with ``ItemSignals.apply`` (streams/itemsignals.py) into a private ``redis-server``
started on a free port for the run, so the raw co-occurrence lists, ``recs_popular`` and the item
hashes are the worker's. Then publishing passes of ``--items`` lists each (every touched item due,
the most co-occurring first), alternating two ways side by side:

- ``python``: the publisher that normalised in the worker (kept here as the reference): read the raw
  top-m with scores, ``normalise_neighbours`` in Python, replace each list with ``REPLACE_ZSET_LUA``
  and HSET the publish mark;
- ``script``: ``ItemSignals.publish_lists`` as it is: read the raw top-m names only, then one
  ``NEIGHBOURS_LUA`` call per list that scores, picks and replaces inside Redis.

Both run through ``ItemSignals.publish_due`` (the publish marks of the due items read first).

Printed per way (medians of ``--runs``): the Python process's CPU seconds per pass
(``time.process_time``: the machine is shared, wall time is not), Redis's own time (``INFO
commandstats``, the commands the client sent: a script's inner commands run inside its EVALSHA
time) and the redis-server process's CPU (``/proc``, 10 ms ticks, network included), and the ratio.
Both ways' published lists are compared member by member, score by score (bit-equal or the bench fails).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from typing import Any

import redis
import redis.asyncio as aioredis

from aura.keys import RedisKeys
from aura.settings import get_settings
from aura.state.cooccurrence import (
    REPLACE_ZSET_LUA,
    SeqEntry,
    encode_published,
    normalise_neighbours,
    published_field,
    replace_zset_args,
    score_pairs,
)
from bench.item_script import free_port
from bench.pipeline import cpu_seconds
from bench.recs_fold import events
from streams.itemsignals import PUBLISH_CHUNK, ItemSignals
from streams.runtime import Resources
from streams.usersignals import CoocParams, fold, item_candidates

CLIENT_COMMANDS = ("evalsha", "zrevrange", "zmscore", "hset", "hget")


class PythonPublisher(ItemSignals):
    """The publisher that normalised every list in the worker process (the reference way): its
    ``publish_lists`` as it was, the rest of ``publish_due`` shared."""

    def __init__(self, res: Resources) -> None:
        super().__init__(res)
        self.replace_script = res.redis.register_script(REPLACE_ZSET_LUA)

    async def publish_lists(self, todo: list[tuple[str, str]], now: float) -> None:
        k, m = self.res.settings.recs.topk, self.res.settings.recs.cooc_read
        raw: list[Any] = []
        for start in range(0, len(todo), PUBLISH_CHUNK):
            pipe = self.redis.pipeline(transaction=False)
            for item, source in todo[start:start + PUBLISH_CHUNK]:
                key = self.keys.recs_item_cooc(item) if source == "cooc" else self.keys.recs_item_bought(item)
                pipe.execute_command("ZREVRANGE", key, 0, m - 1, "WITHSCORES")
            raw += [score_pairs(reply) for reply in await pipe.execute()]
        nlist = sorted({j for lst in raw for j, _ in lst} | {i for i, _ in todo})
        pops_raw = await self.redis.zmscore(self.keys.recs_popular(), nlist) if nlist else []
        pops = {j: float(v) for j, v in zip(nlist, pops_raw, strict=True) if v is not None}
        powered = {j: p ** 0.5 for j, p in pops.items() if p > 0}
        for start in range(0, len(todo), PUBLISH_CHUNK):
            pipe = self.redis.pipeline(transaction=False)
            for (item, source), lst in zip(todo[start:start + PUBLISH_CHUNK], raw[start:start + PUBLISH_CHUNK],
                                           strict=True):
                top = normalise_neighbours(pops.get(item, 0.0), lst, pops, k, 0.5, powered)
                await self.replace_script(keys=[self.keys.recs_item_similar(item, source)],
                                          args=replace_zset_args(top), client=pipe)
                pipe.hset(self.keys.recs_item_state(item), published_field(source),
                          encode_published(self.pops.get(item, 0.0), now))
            await pipe.execute()


async def publish_pass(items: ItemSignals, due: list[str]) -> None:
    """One ``publish_due`` pass with every list of ``due`` due (its publish marks read too)."""
    items.dirty, items.dirty_bought = set(due), set()
    items.published = {"cooc": {}, "bought": {}}
    await items.publish_due(force=True)


def command_usec(client: redis.Redis) -> float:
    stats = client.info("commandstats")
    return float(sum(stats.get(f"cmdstat_{c}", {}).get("usec", 0) for c in CLIENT_COMMANDS))


async def fill(items: ItemSignals, n_events: int, batch: int) -> None:
    s = items.res.settings
    p = CoocParams(window=s.recs.window, decay=s.recs.decay, seq_max=s.recs.seq_max)
    acc = events(n_events)
    seqs: dict[str, list[SeqEntry]] = {}
    for start in range(0, len(acc), batch):
        part = acc[start:start + batch]
        stored = {u: seqs.get(u, []) for u in {a.event.user_id for a in part}}
        f = fold(part, {}, stored, p, dict.fromkeys(item_candidates(part, {}, stored, p)))
        await items.apply(f.items)
        seqs.update({u: d.seq for u, d in f.users.items()})


async def run(port: int, server_pid: int, a: argparse.Namespace) -> None:
    s = get_settings().replace(recs_publish_min_growth=0.0, recs_publish_max_items=a.items)
    sync = redis.Redis(port=port, decode_responses=True)
    sync.flushall()
    aredis = aioredis.Redis(port=port, decode_responses=True)
    res = Resources(settings=s, redis=aredis, session=None, keys=RedisKeys("bench"), durable=None)  # type: ignore[arg-type]
    items, old = ItemSignals(res), PythonPublisher(res)
    await fill(items, a.events, a.batch)
    old.pops = items.pops
    cards = {i: sync.zcard(res.keys.recs_item_cooc(i)) for i in items.pops}
    due = sorted(sorted(cards, key=lambda i: (-cards[i], i))[:a.items])
    lens = sorted(cards[i] for i in due)
    print(f"{a.events} MovieLens events folded: {len(cards)} items; a pass publishes {len(due)} lists of "
          f"{lens[len(lens) // 2]} raw co-occurrences (median; read: top {s.recs.cooc_read}, kept: top {s.recs.topk})")
    ways = {"python": lambda: publish_pass(old, due), "script": lambda: publish_pass(items, due)}
    out: dict[str, list[tuple[float, float, float]]] = {w: [] for w in ways}
    published: dict[str, dict[str, list[tuple[str, float]]]] = {}
    for _ in range(a.runs):
        for way, go in ways.items():
            for i in due:
                sync.delete(res.keys.recs_item_similar(i, "cooc"))
            sync.config_resetstat()
            srv0, t0 = cpu_seconds(server_pid), time.process_time()
            await go()
            out[way].append((time.process_time() - t0, command_usec(sync) / 1e6, cpu_seconds(server_pid) - srv0))
            published[way] = {i: sync.zrevrange(res.keys.recs_item_similar(i, "cooc"), 0, -1, withscores=True)
                              for i in due}
    if published["python"] != published["script"]:
        raise SystemExit("the two ways published different lists")
    n_pub = sum(len(v) for v in published["script"].values())
    med = {w: [statistics.median(r[x] for r in rs) for x in range(3)] for w, rs in out.items()}
    for w, (cpu, cmd, srv) in med.items():
        print(f"{w:7s}: Python CPU {cpu * 1000:7.1f} ms/pass, Redis command time {cmd * 1000:6.1f} ms/pass, "
              f"redis-server CPU {srv * 1000:6.0f} ms/pass")
    print(f"Python CPU ratio python/script {med['python'][0] / med['script'][0]:.2f}x; "
          f"identical lists ({n_pub} neighbours over {len(due)} lists); median of {a.runs} passes each, "
          f"load average {os.getloadavg()[0]:.2f}")
    await aredis.aclose()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=100000)
    ap.add_argument("--batch", type=int, default=2000)
    ap.add_argument("--items", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=7)
    a = ap.parse_args()
    port = free_port()
    home = tempfile.mkdtemp(prefix="aura-bench-redis-")
    server = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port", str(port), "--save", "",
                               "--appendonly", "no", "--dir", home], stdout=subprocess.DEVNULL)
    try:
        client = redis.Redis(port=port)
        deadline = time.monotonic() + 30
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        asyncio.run(run(port, server.pid, a))
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()

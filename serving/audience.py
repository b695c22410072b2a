"""The audience estimate's scan (``GET /v1/campaigns/{id}/audience`` for ``everyone`` and ``rule``
audiences, serving/routes/campaigns.py).

Walks the population (every user with a stored profile or identity attributes,
aura/state/campaign_audience.py ``Population``) with SCAN, one page at a time: for a rule audience
each page's new users are read in ONE pipeline (profile state and attributes hash) and decided by
``in_audience``, the function the drainer decides each due message with. The scan stops at
``limit`` users or after ``budget_s`` seconds, whichever comes first, and answers from what it saw
(``campaign_audience.estimate``). Decoding and rule evaluation of a page run in a thread, so a long
scan does not hold the API's event loop. Owns nothing durable.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aura.keys import RedisKeys
from aura.state import profile_codec
from aura.state.campaign_audience import Population, estimate, in_audience
from aura.state.campaigns import Audience

SCAN_COUNT = 1000  # keys SCAN examines per call: a page's users are read in one pipeline


def _matched(a: Audience, users: list[str], raw: list[Any]) -> int:
    """How many of a page's ``users`` (their ``raw`` profile states and attribute hashes, interleaved)
    are in the audience."""
    n = 0
    for i, user in enumerate(users):
        state, attrs = raw[2 * i], raw[2 * i + 1]
        n += in_audience(a, user, profile_codec.unpack(state) if state else None, attrs or {})
    return n


async def scan_audience(redis: Any, keys: RedisKeys, a: Audience, limit: int, budget_s: float) -> dict[str, Any]:
    """Scan up to ``limit`` users of the population for ``a`` (``everyone`` or ``rule``) for at most
    about ``budget_s`` seconds (one more page past it at most); the estimate's figures, ``stopped``
    (``scan``: the limit was reached, ``time``: the budget ran out, None: every user was scanned)
    and a ``note`` saying what the figures are over."""
    population = Population(keys)
    deadline = time.monotonic() + budget_s
    seen: set[str] = set()
    matched, cursor, more = 0, 0, False
    while True:
        cursor, names = await redis.scan(cursor, match=population.pattern, count=SCAN_COUNT)
        cursor = int(cursor)
        page: list[str] = []
        for name in names:
            user = population.user(name)
            if user is None or user in seen:
                continue
            if len(seen) >= limit:
                more = True  # a user past the limit: the scan is not complete
                break
            seen.add(user)
            page.append(user)
        if page and a.kind == "rule":
            pipe = redis.pipeline(transaction=False)
            for user in page:
                profile_codec.queue_read(pipe, keys, user)
                pipe.hgetall(keys.user_attrs(user))
            matched += await asyncio.to_thread(_matched, a, page, await pipe.execute())
        elif page:
            matched += sum(in_audience(a, user, None, {}) for user in page)
        if cursor == 0 and not more:
            stopped = None
            break
        if len(seen) >= limit:
            stopped = "scan"
            break
        if time.monotonic() >= deadline:
            stopped = "time"
            break
    out = estimate(matched, len(seen), stopped is None)
    over = "users with a stored profile or identity attributes"
    if stopped is None:
        note = f"exact: every one of the {len(seen)} {over} was evaluated"
    else:
        why = f"`scan` ({limit}) users" if stopped == "scan" else f"the time budget ({budget_s:g} s)"
        note = (f"estimate: the scan stopped at {why}; `size` counts the audience among the {len(seen)} {over} "
                f"scanned, `share` is its share of them with a 95% Wilson interval, an estimate of the "
                f"audience's share of all {over} (their total is not known without a full scan)")
    return {**out, "stopped": stopped, "note": note}

"""The per-user MF candidate sets are gone: MF candidates are scored where they are read.

Earlier versions kept each user's 200 best MF items in Redis (``recs:user:{<user>}:mf``, a sorted set
of about 19 KB per user), rewritten by the stream. The readers now score the user's factors against
the item factors themselves (aura/ranking/factors.py), so nothing reads or writes those sets any
more. ``data`` deletes them (SCAN, UNLINK in pages): no CQL. A cut-short run is simply redone.
"""

from __future__ import annotations

from typing import Any

from aura.bootstrap import redis_sync
from aura.keys import RedisKeys
from aura.settings import Settings

VERSION = 20
DESCRIPTION = "per-user MF candidate sets dropped from Redis"
TOPICS = ()
PAGE = 1000


def cql(s: Settings) -> list[str]:
    return []


def data(s: Settings, session: Any) -> int:
    """Delete every old MF candidate set (a sorted set whose key ends right after the user's hash
    tag with ``:mf``); returns how many."""
    r = redis_sync(s)
    try:
        dropped = 0
        page: list[str] = []
        for key in r.scan_iter(match=RedisKeys(s.redis.prefix).recs_user_mf_match(), count=PAGE, _type="zset"):
            if key.endswith("}:mf"):
                page.append(key)
            if len(page) >= PAGE:
                dropped += r.unlink(*page)
                page = []
        if page:
            dropped += r.unlink(*page)
        return dropped
    finally:
        r.close()

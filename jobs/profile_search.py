"""Backfill of the searchable profile copy (``profile_search``, migration v0017) for the users that
existed before it: ``aura job profile-search [--batch N] [--restart]``.

The stream keeps the copy current for every user it touches after the migration; this job copies the
others once. It scans the profile states (``user_state``), then the identity hashes (``user_attrs``:
profiles created without events), reads each SCAN batch's states and hashes in one pipeline and
writes the same rows the stream writes (aura/state/profile_search.py), grouped per user.

Resumable: the phase and SCAN cursor are saved in Redis (``RedisKeys.profile_search_backfill``) after
every batch, so a stopped run continues where it stopped (SCAN returns every key present for the
whole scan at least once; a key seen twice is written twice, harmlessly). Never overwrites newer
stream writes: every row is written with the time the job read Redis, earlier than any write of a
change it did not see, and an erase's delete (a later time) wins over the copy of a user it read.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from cassandra.concurrent import execute_concurrent
from cassandra.query import BatchStatement, BatchType

from aura import bootstrap
from aura.keys import RedisKeys, glob_escape, keys_for
from aura.settings import Settings, get_settings
from aura.state import profile_search
from aura.state.profile_codec import queue_read, unpack
from aura.state.profiles import parse_attrs

PHASES = ("state", "attrs")


def _pattern(keys: RedisKeys, phase: str) -> tuple[str, str, str]:
    """(MATCH pattern, key head, key tail) of the profile keys of ``phase``."""
    sample = keys.user_state("\x00") if phase == "state" else keys.user_attrs("\x00")
    head, tail = sample.split("{\x00}")
    return glob_escape(head) + "{*}" + glob_escape(tail), head, tail


class Backfill:
    """Copies users into the searchable copy, one SCAN batch at a time."""

    def __init__(self, s: Settings, session: Any, redis: Any) -> None:
        self.session, self.redis, self.keys = session, redis, keys_for(s)
        self.profile_stmt = session.prepare(profile_search.profile_cql())
        self.attrs_stmts = [session.prepare(c) for c in profile_search.attrs_cql()]

    def write(self, users: list[str]) -> int:
        """Copy ``users`` (their state and attributes as Redis holds them now); returns users written."""
        if not users:
            return 0
        ts = profile_search.now_us()  # before the read: any later change of the stream is written later
        pipe = self.redis.pipeline(transaction=False)
        for u in users:
            queue_read(pipe, self.keys, u)
            pipe.hgetall(self.keys.user_attrs(u))
        got = pipe.execute()
        batches = []
        for i, u in enumerate(users):
            raw, attrs_hash = got[2 * i], got[2 * i + 1]
            if not raw and not attrs_hash:
                continue  # gone since the scan saw it
            batch = BatchStatement(batch_type=BatchType.UNLOGGED)
            if raw:
                batch.add(self.profile_stmt, profile_search.profile_params(u, unpack(raw), ts))
            if attrs_hash:
                for which, params in profile_search.attrs_params(u, parse_attrs(attrs_hash)[0], ts):
                    batch.add(self.attrs_stmts[which], params)
            batches.append((batch, ()))
        execute_concurrent(self.session, batches, concurrency=32, raise_on_first_error=True)
        return len(batches)

    def run(self, batch: int = 500, restart: bool = False, say: Any = None) -> dict[str, Any]:
        """Scan and copy every profile, resuming a stopped run unless ``restart``; returns the progress."""
        key = self.keys.profile_search_backfill()
        if restart:
            self.redis.delete(key)
        progress = self.redis.hgetall(key)
        if progress.get("phase") == "done":
            return progress
        if not progress:
            progress = {"phase": PHASES[0], "cursor": "0", "users": "0", "started_at": str(int(time.time() * 1000))}
            self.redis.hset(key, mapping=progress)
        users = int(progress["users"])
        for phase in PHASES[PHASES.index(progress["phase"]):]:
            cursor = int(progress["cursor"]) if phase == progress["phase"] else 0
            pattern, head, tail = _pattern(self.keys, phase)
            while True:
                cursor, names = self.redis.scan(cursor=cursor, match=pattern, count=batch)
                users += self.write([n[len(head) + 1:len(n) - len(tail) - 1] for n in names])
                self.redis.hset(key, mapping={"phase": phase, "cursor": str(cursor), "users": str(users)})
                if say is not None:
                    say(f"{phase}: {users} users copied")
                if int(cursor) == 0:
                    break
        self.redis.hset(key, mapping={"phase": "done", "cursor": "0", "finished_at": str(int(time.time() * 1000))})
        return self.redis.hgetall(key)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="aura job profile-search")
    p.add_argument("--batch", type=int, default=500, help="keys per SCAN call")
    p.add_argument("--restart", action="store_true", help="start over instead of resuming")
    a = p.parse_args(argv)
    s = get_settings()
    session, redis = bootstrap.cassandra_session(s), bootstrap.redis_sync(s)
    try:
        done = Backfill(s, session, redis).run(a.batch, a.restart, say=lambda m: print(m, flush=True))  # noqa: T201
        print(f"profile search backfill: {done.get('users', 0)} users copied", flush=True)  # noqa: T201
        return 0
    finally:
        session.cluster.shutdown()


if __name__ == "__main__":
    sys.exit(main())

"""The backfill of the searchable copy (jobs/profile_search.py) against the real stack: users whose
rows are missing (as in a deployment upgraded in place) are copied in with exactly the rows the
stream writes, an interrupted run resumes where it stopped, and a finished run is not repeated."""

from __future__ import annotations

import time
import uuid

import pytest

from aura import bootstrap
from aura.keys import keys_for
from aura.layout import Tables
from jobs.profile_search import Backfill
from tests.conftest import wait_for

pytestmark = [pytest.mark.integration]


def rows_of(cassandra, user: str) -> dict:
    return {r.attr: tuple(r) for r in cassandra.execute(
        f"SELECT attr, num, terms, attrs, segments, stage, last_seen, eng, eng_t FROM {Tables.PROFILE_SEARCH} "
        "WHERE user_id = %s", (user,))}


def test_backfill_copies_missing_users_and_resumes(isolated, worker_factory, api_client, cassandra, redis_client):
    worker_factory()
    tag = uuid.uuid4().hex[:8]
    users = [f"bf{tag}-{n}" for n in range(9)]
    now = int(time.time() * 1000)
    for n, u in enumerate(users):
        assert api_client.post("/v1/profiles", json={"user_id": u, "attributes": {
            "run": tag, "age": 30 + n, "country": "SE"}}).status_code == 202
    events = [{"event_id": uuid.uuid4().hex, "event_type": "view", "user_id": u, "item_id": "i1", "event_time": now}
              for u in users[:6]]  # three users have attributes only (created, no events)
    assert api_client.post("/v1/events/batch", json=events).status_code == 202

    def indexed() -> set[str]:
        r = api_client.get("/v1/profiles", params={"attribute": f"run:{tag}", "limit": 500})
        assert r.status_code == 200, r.text
        return {p["user_id"] for p in r.json()["profiles"]}

    wait_for(lambda: indexed() == set(users) and all(rows_of(cassandra, u)[""][6] for u in users[:6]),
             timeout=60, what="the stream's rows")
    written = {u: rows_of(cassandra, u) for u in users}
    for u in users:  # as if the users existed before the migration
        cassandra.execute(f"DELETE FROM {Tables.PROFILE_SEARCH} WHERE user_id = %s", (u,))
    assert indexed() == set()

    session = bootstrap.cassandra_session(isolated)
    try:
        class Interrupted(Backfill):
            def write(self, batch: list[str]) -> int:
                n = super().write(batch)
                if n:  # stopped after writing a batch, before recording it
                    raise RuntimeError("stopped")
                return n

        with pytest.raises(RuntimeError):
            Interrupted(isolated, session, redis_client).run(batch=1000)
        progress = redis_client.hgetall(keys_for(isolated).profile_search_backfill())
        assert progress["phase"] == "state"
        assert set() < indexed() <= set(users[:6])  # the users with events (state keys) come first
        done = Backfill(isolated, session, redis_client).run(batch=1000)
        assert done["phase"] == "done"
        assert {u: rows_of(cassandra, u) for u in users} == written  # the very rows the stream writes
        assert indexed() == set(users)
        # finished: a second run copies nothing again
        cassandra.execute(f"DELETE FROM {Tables.PROFILE_SEARCH} WHERE user_id = %s", (users[0],))
        Backfill(isolated, session, redis_client).run(batch=1000)
        assert users[0] not in indexed()
    finally:
        session.cluster.shutdown()


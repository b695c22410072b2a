"""Initial layout: the event, catalog, decision and dead-letter topics; user activity state."""

from __future__ import annotations

from aura import layout
from aura.layout import Tables
from aura.settings import Settings

VERSION = 1
DESCRIPTION = "core topics and user activity table"
TOPICS = layout.ALL_TOPICS


def cql(s: Settings) -> list[str]:
    ks = s.cassandra.keyspace
    return [
        f"""CREATE TABLE IF NOT EXISTS {ks}.{Tables.USER_ACTIVITY} (
              user_id text PRIMARY KEY,
              counts map<text, bigint>,
              first_seen timestamp,
              last_seen timestamp,
              recent_items list<text>,
              applied_offset bigint,
              updated_at timestamp
            )""",
    ]

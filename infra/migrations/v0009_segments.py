"""Segment definitions stored through the API (JSON documents validated by aura/state/segments.py),
read by the API and the worker through the versioned config cache (aura/configcache.py)."""

from __future__ import annotations

from aura.layout import Tables
from aura.settings import Settings

VERSION = 9
DESCRIPTION = "segment definitions"
TOPICS = ()


def cql(s: Settings) -> list[str]:
    ks = s.cassandra.keyspace
    return [
        f"""CREATE TABLE IF NOT EXISTS {ks}.{Tables.SEGMENTS} (
              segment_id text PRIMARY KEY,
              doc text,
              updated_at timestamp
            )""",
    ]

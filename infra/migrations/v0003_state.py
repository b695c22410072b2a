"""Profiles, segments and analytics state: the full profile document, segment members, durable
analytics counters (absolute snapshots), and the aggregate topics analysts read."""

from __future__ import annotations

from aura import layout
from aura.layout import Tables
from aura.settings import Settings

VERSION = 3
DESCRIPTION = "user profile, segment members, analytics counters; agg.* topics"
TOPICS = layout.AGG_TOPICS


def cql(s: Settings) -> list[str]:
    ks = s.cassandra.keyspace
    return [
        f"""CREATE TABLE IF NOT EXISTS {ks}.{Tables.USER_PROFILE} (
              user_id text PRIMARY KEY,
              doc text,
              version bigint,
              updated_at timestamp
            )""",
        f"""CREATE TABLE IF NOT EXISTS {ks}.{Tables.SEGMENT_MEMBERS} (
              segment text,
              user_id text,
              since timestamp,
              PRIMARY KEY (segment, user_id)
            )""",
        f"""CREATE TABLE IF NOT EXISTS {ks}.{Tables.ANALYTICS_COUNTERS} (
              grain text,
              bucket timestamp,
              metric text,
              value double,
              PRIMARY KEY ((grain, bucket), metric)
            )""",
    ]

"""Insights: their history by start day (the API's timeframe queries read one partition per day) and
durable snapshots of the insight engine with the agg.minute_metrics offsets it covers, so a lost
Redis does not lose the river models. The agg.insights topic (compacted) is created here."""

from __future__ import annotations

from aura import layout
from aura.layout import Tables
from aura.settings import Settings

VERSION = 10
DESCRIPTION = "insight history, insight engine snapshots; agg.insights topic"
TOPICS = (layout.AGG_INSIGHTS,)


def cql(s: Settings) -> list[str]:
    ks = s.cassandra.keyspace
    return [
        f"""CREATE TABLE IF NOT EXISTS {ks}.{Tables.INSIGHTS} (
              day int,
              started_at timestamp,
              insight_id text,
              metric text,
              focus text,
              severity text,
              status text,
              updated_at timestamp,
              revision int,
              doc text,
              PRIMARY KEY (day, started_at, insight_id)
            ) WITH CLUSTERING ORDER BY (started_at DESC, insight_id ASC)""",
        f"""CREATE TABLE IF NOT EXISTS {ks}.{Tables.INSIGHT_STATE} (
              name text PRIMARY KEY,  -- the full agg.minute_metrics topic name its offsets belong to
              seq bigint,
              state blob,
              updated_at timestamp
            )""",
    ]

"""Acquisition cohorts: the durable copy of the cohort counters (streams/retention.py writes it behind
Redis; format in aura/state/retention.py). One partition per source topic, grain and cohort, a row
per source partition and counter; the fence of each source partition under cohort -1."""

from __future__ import annotations

from aura.layout import Tables
from aura.settings import Settings

VERSION = 18
DESCRIPTION = "durable acquisition cohort counters"
TOPICS = ()


def cql(s: Settings) -> list[str]:
    ks = s.cassandra.keyspace
    return [
        f"""CREATE TABLE IF NOT EXISTS {ks}.{Tables.RETENTION_COUNTS} (
              source text,
              grain text,
              cohort bigint,
              part int,
              counter text,
              value double,
              PRIMARY KEY ((source, grain, cohort), part, counter)
            )""",
    ]

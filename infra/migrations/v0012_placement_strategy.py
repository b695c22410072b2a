"""The strategy bandit a placement names: ``generate`` without a method lets it pick the method
(aura/models/registry.py ``set_strategy``; the API's copy is a field of the ``recs_placement`` hash)."""

from __future__ import annotations

from aura.layout import Tables
from aura.settings import Settings

VERSION = 12
DESCRIPTION = "placement strategy bandits"
TOPICS = ()


def cql(s: Settings) -> list[str]:
    ks = s.cassandra.keyspace
    return [
        f"""CREATE TABLE IF NOT EXISTS {ks}.{Tables.PLACEMENT_STRATEGY} (
              placement text PRIMARY KEY,
              bandit_id text,
              updated_at timestamp
            )""",
    ]

"""Models created through the API (type, validated configuration) before their first training, the
progress of a version's training job, and every activation per placement (newest first), which a
rollback walks back (aura/models/registry.py)."""

from __future__ import annotations

from aura.layout import Tables
from aura.settings import Settings

VERSION = 15
DESCRIPTION = "model specs, training progress, placement activation log"
TOPICS = ()


def cql(s: Settings) -> list[str]:
    ks = s.cassandra.keyspace
    return [
        f"""CREATE TABLE IF NOT EXISTS {ks}.{Tables.MODEL_SPECS} (
              model_id text PRIMARY KEY,
              type text,
              config text,
              description text,
              created_at bigint
            )""",
        f"ALTER TABLE {ks}.{Tables.MODELS} ADD IF NOT EXISTS progress text",
        f"ALTER TABLE {ks}.{Tables.MODELS} ADD IF NOT EXISTS lists text",
        f"""CREATE TABLE IF NOT EXISTS {ks}.{Tables.MODEL_PLACEMENT_LOG} (
              placement text,
              at bigint,
              model_id text,
              version int,
              weights text,
              lists text,
              action text,
              PRIMARY KEY ((placement), at)
            ) WITH CLUSTERING ORDER BY (at DESC)""",
    ]

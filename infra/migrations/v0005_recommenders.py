"""Recommenders: catalog items, raw interactions (the batch jobs' history) and the model registry.

A released migration: its DESCRIPTION, recorded in the migrations table, is kept as written; the
topics are ensured by v0001 (``layout.ALL_TOPICS``)."""

from __future__ import annotations

from aura import layout
from aura.layout import Tables
from aura.settings import Settings

VERSION = 5
DESCRIPTION = "recommenders: internal.by_item topic, catalog_items, interactions, models, model_placements"
# internal.by_item (layout.ITEM_SIGNALS) is in layout.ALL_TOPICS, which v0001 ensures; listing it here
# again would send a duplicate name to CreateTopics.
TOPICS: tuple[layout.TopicSpec, ...] = ()


def cql(s: Settings) -> list[str]:
    ks = s.cassandra.keyspace
    return [
        f"""CREATE TABLE IF NOT EXISTS {ks}.{Tables.CATALOG_ITEMS} (
              item_id text PRIMARY KEY,
              title text,
              categories list<text>,
              tags list<text>,
              brand text,
              price double,
              stock bigint,
              available boolean,
              text text,
              metadata map<text, text>,
              deleted boolean,
              event_time bigint
            )""",
        f"""CREATE TABLE IF NOT EXISTS {ks}.{Tables.INTERACTIONS} (
              user_id text,
              event_time bigint,
              item_id text,
              event_id text,
              event_type text,
              weight double,
              PRIMARY KEY ((user_id), event_time, item_id, event_id)
            )""",
        f"""CREATE TABLE IF NOT EXISTS {ks}.{Tables.MODELS} (
              model_id text,
              version int,
              type text,
              config text,
              window_start bigint,
              window_end bigint,
              metrics map<text, double>,
              status text,
              artifact blob,
              created_at bigint,
              updated_at bigint,
              PRIMARY KEY ((model_id), version)
            ) WITH CLUSTERING ORDER BY (version DESC)""",
        f"""CREATE TABLE IF NOT EXISTS {ks}.{Tables.MODEL_PLACEMENTS} (
              placement text PRIMARY KEY,
              model_id text,
              version int,
              weights text,
              updated_at bigint
            )""",
    ]

"""Campaigns: definitions (JSON documents behind the configuration cache) and the record of every
message by user, and the outbox topics of the channels.

A message row is written by the connector that delivered it (streams/connectors.py) with its final
status; its key (user, message id) makes a replayed write an overwrite, never a second row.
"""

from __future__ import annotations

from aura import layout
from aura.layout import Tables
from aura.settings import Settings

VERSION = 7
DESCRIPTION = "campaign definitions, campaign messages, outbox topics"
TOPICS = tuple(layout.OUTBOX.values())


def cql(s: Settings) -> list[str]:
    ks = s.cassandra.keyspace
    return [
        f"""CREATE TABLE IF NOT EXISTS {ks}.{Tables.CAMPAIGNS} (
              campaign_id text PRIMARY KEY,
              doc text,
              updated_at timestamp
            )""",
        f"""CREATE TABLE IF NOT EXISTS {ks}.{Tables.CAMPAIGN_MESSAGES} (
              user_id text,
              message_id text,
              campaign_id text,
              channel text,
              status text,
              detail text,
              items list<text>,
              queued_at timestamp,
              sent_at timestamp,
              PRIMARY KEY (user_id, message_id)
            )""",
    ]

"""API keys: the durable store of hashed keys with their scopes and rate limits.

Only the SHA-256 of each token is stored; the token itself is shown once by ``aura keys create``.
Redis holds a cache of these rows (``RedisKeys.api_key``) that revocation invalidates.
"""

from __future__ import annotations

from aura.layout import Tables
from aura.settings import Settings

VERSION = 4
DESCRIPTION = "api keys (hashed) with scopes and rate limits"
TOPICS = ()


def cql(s: Settings) -> list[str]:
    ks = s.cassandra.keyspace
    return [
        f"""CREATE TABLE IF NOT EXISTS {ks}.{Tables.API_KEYS} (
              key_id text PRIMARY KEY,
              name text,
              key_hash text,
              scopes set<text>,
              rate_per_s double,
              burst int,
              created_at timestamp,
              revoked_at timestamp
            )""",
    ]

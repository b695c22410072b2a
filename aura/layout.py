"""The state layout: every Kafka topic, Redis key and Cassandra table is spelled here, once.

Writers (streams/) and readers (serving/, jobs/) import this module; nothing else builds a key
or a table name. Topic names carry ``Settings.topic_prefix``, Redis keys ``Settings.redis_prefix``
and tables live in ``Settings.cassandra_keyspace``, so tests and tenants can be isolated.
"""

from __future__ import annotations

from dataclasses import dataclass

from aura.settings import Settings

# ---------------------------------------------------------------------------------------------
# Kafka topics


@dataclass(frozen=True)
class TopicSpec:
    """A topic's logical name and how it is created."""

    name: str
    key: str
    compacted: bool = False
    partitions: int | None = None  # None: Settings.topic_partitions
    retention_ms: int | None = None


BEHAVIOR = TopicSpec("events.behavior", key="user id")
IDENTITY = TopicSpec("events.identity", key="user id", compacted=True)
CATALOG = TopicSpec("catalog.items", key="item id", compacted=True)
DECISIONS = TopicSpec("decisions", key="user id")
DEADLETTER = TopicSpec("deadletter", key="source key", retention_ms=14 * 24 * 3600 * 1000)

ALL_TOPICS: tuple[TopicSpec, ...] = (BEHAVIOR, IDENTITY, CATALOG, DECISIONS, DEADLETTER)


def topic(settings: Settings, spec: TopicSpec) -> str:
    """The full Kafka topic name of ``spec`` under the configured prefix."""
    return f"{settings.topic_prefix}.{spec.name}"


# ---------------------------------------------------------------------------------------------
# Redis keys


class RedisKeys:
    """Builds every Redis key; one instance per process, from settings."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    # Keys of one user share the hash tag {user_id}: one Redis Cluster slot, so one Lua script
    # can update them atomically.

    def user_counts(self, user_id: str) -> str:
        """Hash: action -> count, plus first_seen / last_seen (event time, ms)."""
        return f"{self.prefix}:user:{{{user_id}}}:counts"

    def user_recent(self, user_id: str) -> str:
        """List: the user's most recent item ids, newest first, bounded."""
        return f"{self.prefix}:user:{{{user_id}}}:recent"

    def deadletter_count(self) -> str:
        """Hash: dead-letter reason -> count."""
        return f"{self.prefix}:metrics:deadletter"

    def event_seen(self, event_id: str) -> str:
        """String: "partition:offset" of the first record that carried ``event_id`` (dedup window)."""
        return f"{self.prefix}:seen:{event_id}"

    def intake_count(self) -> str:
        """Hash: accepted / duplicate / dead counts of the behavior intake."""
        return f"{self.prefix}:metrics:intake"


# ---------------------------------------------------------------------------------------------
# Cassandra tables


class Tables:
    """Cassandra table names (unqualified); the keyspace comes from settings."""

    MIGRATIONS = "schema_migrations"
    USER_ACTIVITY = "user_activity"


# Field names of the user activity state, shared by the Redis hash and the Cassandra row.
FIRST_SEEN = "first_seen"
LAST_SEEN = "last_seen"
APPLIED_OFFSET = "_off"  # last Kafka offset folded into the user's state (offset fencing)

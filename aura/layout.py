"""The state layout: every Kafka topic and Cassandra table is spelled here, once (Redis keys: aura/keys.py).

Writers (streams/) and readers (serving/, jobs/) import this module; nothing else builds a key
or a table name. Topic names carry ``settings.kafka.topic_prefix``, Redis keys ``settings.redis.prefix``
and tables live in ``settings.cassandra.keyspace``, so tests and tenants can be isolated.
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
    partitions: int | None = None  # None: settings.kafka.topic_partitions
    retention_ms: int | None = None


BEHAVIOR = TopicSpec("events.behavior", key="user id")
IDENTITY = TopicSpec("events.identity", key="user id", compacted=True)
CATALOG = TopicSpec("catalog.items", key="item id", compacted=True)
DECISIONS = TopicSpec("decisions", key="user id")
DEADLETTER = TopicSpec("deadletter", key="source key", retention_ms=14 * 24 * 3600 * 1000)

ALL_TOPICS: tuple[TopicSpec, ...] = (BEHAVIOR, IDENTITY, CATALOG, DECISIONS, DEADLETTER)

# Aggregates that analysts read (streams/aggregates.py; records in schemas/avro/agg_*.avsc; docs/analytics.md).
# Compacted: each key (window + dimension) carries the latest absolute value, so a re-publish is harmless.
AGG_METRICS_MINUTE = TopicSpec("agg.minute_metrics", key="window_start|dimension|value", compacted=True)
AGG_ITEMS_DAILY = TopicSpec("agg.item_daily", key="day|item_id", compacted=True)
AGG_FUNNEL = TopicSpec("agg.funnel", key="window_start|funnel|experiment|variant|placement", compacted=True)
AGG_REVENUE = TopicSpec("agg.revenue", key="window_start|currency|experiment|variant", compacted=True)
# Insights found in the minute aggregates (streams/insights.py; schemas/avro/agg_insight.avsc; docs/insights.md):
# the latest revision of each insight, so compaction keeps one record per incident.
AGG_INSIGHTS = TopicSpec("agg.insights", key="insight id", compacted=True)
AGG_TOPICS: tuple[TopicSpec, ...] = (AGG_METRICS_MINUTE, AGG_ITEMS_DAILY, AGG_FUNNEL, AGG_REVENUE)
ALL_TOPICS = (*ALL_TOPICS, *AGG_TOPICS, AGG_INSIGHTS)

# Campaign outboxes (streams/campaign_drain.py writes rendered messages, streams/connectors.py delivers them;
# records in schemas/avro/campaign_message.avsc): one topic per channel so that a provider that is down
# holds back only its own channel.
CAMPAIGN_CHANNELS = ("email", "push", "sms", "webhook", "in_app")
OUTBOX: dict[str, TopicSpec] = {ch: TopicSpec(f"campaigns.outbox.{ch}", key="user id") for ch in CAMPAIGN_CHANNELS}
ALL_TOPICS = (*ALL_TOPICS, *OUTBOX.values())
# Campaign figures for analysts (streams/campaign_drain.py publishes a snapshot per campaign and variant;
# compacted: the latest record of a key is the campaign's current state)
AGG_CAMPAIGNS = TopicSpec("agg.campaigns", key="campaign_id|variant", compacted=True)
ALL_TOPICS = (*ALL_TOPICS, AGG_CAMPAIGNS)



def topic(settings: Settings, spec: TopicSpec) -> str:
    """The full Kafka topic name of ``spec`` under the configured prefix."""
    return f"{settings.kafka.topic_prefix}.{spec.name}"


# Worker roles (streams/app.py): which state owners one worker process runs. "all" is every role in
# one consumer group; a subset runs in a consumer group of its own, so each role reads the topics at
# its own pace (the profiles a storefront reads are not held up by the recommenders' work).
WORKER_ROLES = ("profiles", "recs", "decisions")
# ``aura worker --split``: the process groups of the split deployment (each its own consumer group)
SPLIT_ROLES = ("profiles", "recs,decisions")


def worker_roles(roles: str) -> tuple[str, ...]:
    """``roles`` ("all" or a comma-separated subset of WORKER_ROLES) as a sorted tuple; raises on an
    unknown or empty role list."""
    if roles.strip() == "all":
        return WORKER_ROLES
    chosen = {r.strip() for r in roles.split(",") if r.strip()}
    if not chosen or not chosen <= set(WORKER_ROLES):
        raise ValueError(f"worker roles must be 'all' or a subset of {', '.join(WORKER_ROLES)}: got {roles!r}")
    return tuple(r for r in WORKER_ROLES if r in chosen)


def worker_group(settings: Settings) -> str:
    """The Kafka consumer group (and Faust app id) of a worker with ``settings.worker.roles``."""
    roles = worker_roles(settings.worker.roles)
    if roles == WORKER_ROLES:
        return settings.kafka.consumer_group
    return f"{settings.kafka.consumer_group}-{'+'.join(roles)}"


def worker_groups(settings: Settings, split: bool) -> list[str]:
    """Every consumer group of a deployment: one, or one per process group of SPLIT_ROLES."""
    if not split:
        return [worker_group(settings)]
    return [worker_group(settings.replace(**{"worker_roles": r})) for r in SPLIT_ROLES]


# ---------------------------------------------------------------------------------------------
# Cassandra tables


class Tables:
    """Cassandra table names (unqualified); the keyspace comes from settings."""

    MIGRATIONS = "schema_migrations"
    USER_ACTIVITY = "user_activity"
    API_KEYS = "api_keys"  # aura/apikeys.py: hashed API keys with scopes and rate limits (v0004)
    USER_PROFILE = "user_profile"
    SEGMENT_MEMBERS = "segment_members"
    ANALYTICS_COUNTERS = "analytics_counters"  # first layout of the snapshots: made by v0003, moved, dropped by v0019
    ANALYTICS_TOTALS = "analytics_totals"  # durable analytics snapshots by period (state/analytics.py, v0019)
    CATALOG_ITEMS = "catalog_items"  # items and content (owner streams/catalog.py)
    INTERACTIONS = "interactions"  # raw implicit interactions, the batch jobs' history
    MODELS = "models"  # model registry (owner aura/models/registry.py)
    MODEL_PLACEMENTS = "model_placements"  # active model version per placement
    PERSONALIZATION_RULES = "personalization_rules"  # rule definitions (JSON documents)
    EXPERIMENTS = "experiments"  # experiment definitions and lifecycle
    EXPERIMENT_RESULTS = "experiment_results"  # durable copy of the streamed tallies
    BANDITS = "bandits"  # bandit configuration (policy, arms, rewards)
    BANDIT_STATE = "bandit_state"  # durable snapshots of the learned arm state
    INSIGHTS = "insights"  # insight history by start day (owner streams/insights.py, v0010)
    INSIGHT_STATE = "insight_state"  # durable snapshots of the insight engine with its offsets (v0010)
    CAMPAIGNS = "campaigns"  # campaign definitions and lifecycle (JSON documents; v0007)
    CAMPAIGN_MESSAGES = "campaign_messages"  # every message's record by user (v0007)
    SEGMENTS = "segments"  # segment definitions stored through the API (JSON documents, v0009)
    PLACEMENT_STRATEGY = "placement_strategy"  # the strategy bandit a placement names (v0012)
    MODEL_SPECS = "model_specs"  # models created through the API: type and configuration (v0015)
    MODEL_PLACEMENT_LOG = "model_placement_log"  # every activation per placement, newest first (v0015)
    RETENTION_COUNTS = "retention_counts"  # durable copy of the acquisition cohort counters (v0018)
    PROFILE_SEARCH = "profile_search"  # searchable copy of profiles, SAI-indexed (state/profile_search.py, v0017)


# Field names of the user activity state, shared by the Redis hash and the Cassandra row.
FIRST_SEEN = "first_seen"
LAST_SEEN = "last_seen"
APPLIED_OFFSET = "_off"  # last Kafka offset folded into the user's state (offset fencing)

"""The settings of every Aura process, grouped by concern (kafka, cassandra, redis, stack, worker,
profiles, analytics, decisions, campaigns, recs, ingest, api, auth).

Values come from environment variables prefixed ``AURA_``; every group reads its own (for example
``AURA_KAFKA_BOOTSTRAP`` -> ``settings.kafka.bootstrap``, ``AURA_RECS_WINDOW`` -> ``settings.recs.window``,
``AURA_TOPIC_PREFIX`` -> ``settings.kafka.topic_prefix``). Each process reads the groups it uses; defaults
point at the local stack that ``aura stack up`` starts. Frozen once built: ``replace`` makes a changed
copy, with fields named as their environment variables without ``AURA_`` (``replace(topic_prefix="t1")``).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import urlparse

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


def _group(prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=prefix, frozen=True, extra="ignore", populate_by_name=True)


def env(default: Any, name: str, **kwargs: Any) -> Any:
    """A field read from the environment variable ``name`` (where it differs from prefix + field name)."""
    return Field(default, validation_alias=name, **kwargs)


class KafkaSettings(BaseSettings):
    """The Kafka cluster, the topics' names and partitions, the worker's consumer group."""

    model_config = _group("AURA_KAFKA_")

    bootstrap: str = "127.0.0.1:9092"
    controller_port: int = 9093  # the local KRaft controller (aura stack)
    heap: str = "1g"  # the local broker's JVM heap (aura stack)
    topic_prefix: str = env("aura", "AURA_TOPIC_PREFIX")
    topic_partitions: int = env(12, "AURA_TOPIC_PARTITIONS")
    consumer_group: str = env("aura-worker", "AURA_CONSUMER_GROUP")
    session_timeout_s: float = 60.0  # a dead worker's partitions move after this long
    # a member that fetched nothing for this long leaves its group (Faust's broker_max_poll_interval;
    # streams/liveness.py replaces a worker that does not come back)
    max_poll_interval_s: float = 1000.0

    @property
    def host(self) -> str:
        return self.bootstrap.split(",")[0].rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        return int(self.bootstrap.split(",")[0].rsplit(":", 1)[1])


class CassandraSettings(BaseSettings):
    """The Cassandra cluster and the keyspace of the state of record."""

    model_config = _group("AURA_CASSANDRA_")

    hosts: str = "127.0.0.1"  # comma-separated contact points
    port: int = 9042
    keyspace: str = "aura"
    replication: int = 1
    storage_port: int = 7000  # the local node's internode port (aura stack)
    heap: str = "1g"  # the local node's JVM heap (aura stack)
    # small partitions of one replica written in one UNLOGGED batch, up to this many partitions and
    # KiB of values (a request costs Cassandra far more CPU than a row: docs/benchmarks.md). Keep them
    # at or under the cluster's unlogged_batch_across_partitions_warn_threshold and
    # batch_size_warn_threshold (cells with their overhead: up to 2x the values) or Cassandra warns on
    # each batch: the local stack raises them to 64 and 128 KiB; stock: 10 and 5 KiB (use 10 and 2). 1: never
    batch_partitions: int = 48
    batch_kib: int = 48
    batch_statements: int = 128  # statements per batch at most (a partition's rows beyond it: another batch)

    @property
    def host_list(self) -> list[str]:
        return [h.strip() for h in self.hosts.split(",") if h.strip()]


class RedisSettings(BaseSettings):
    """The Redis server of the hot serving state and the prefix of every key."""

    model_config = _group("AURA_REDIS_")

    url: str = "redis://127.0.0.1:6379/0"
    prefix: str = "aura"
    # configuration documents stored and seen under this scope only (aura/configcache.py); "" (the
    # default) = unscoped. Tests set it per test, as they set the prefix, to isolate stored segments.
    config_scope: str = ""

    @property
    def port(self) -> int:
        return urlparse(self.url).port or 6379


class StackSettings(BaseSettings):
    """The local stack that ``aura stack`` runs (infra/stack.py)."""

    model_config = _group("AURA_")

    maven_repo: Path | None = None  # default: <home>/m2; tests with a private stack share the main cache
    start_timeout_s: float = 180.0


class WorkerSettings(BaseSettings):
    """The stream worker's batches, write-behind and roles (streams/)."""

    model_config = _group("AURA_")

    batch_max: int = 2000
    # a batch is taken when batch_max events wait, or batch_within_s after the previous one
    batch_within_s: float = 0.02
    # catching up (the newest record of a take was produced more than this long ago): consecutive takes
    # are merged into one batch of up to batch_max, so a backlog is folded in full batches (streams/behavior.py)
    batch_catchup_lag_s: float = 1.0
    # ... into batches of up to this many events (at least batch_max): per-batch and per-key work
    # (one item script per touched item, one user script per user) is paid once for more events
    batch_catchup_max: int = 32000
    # records Faust buffers per topic ahead of the agents (stream_buffer_maxsize, >= batch_max): the
    # consumer keeps fetching while a catch-up batch is folded (it only fills while behind)
    stream_buffer: int = Field(40_000, gt=0)
    # the behavior owners' Cassandra rows are written behind the hot loop this often (streams/durable.py)
    durable_flush_ms: int = Field(250, gt=0)
    durable_max_pending: int = 50_000  # buffered rows at which the agent waits for a flush
    # the worker's garbage collector: objects alive after startup are frozen out of its scans, and the
    # youngest generation is collected after this many net allocations instead of Python's 700 (a
    # batch allocates millions of short-lived objects; 0: Python's defaults)
    gc_gen0: int = 400_000
    loop: Literal["uvloop", "aio"] = env("uvloop", "AURA_WORKER_LOOP")  # the worker's event loop (aio: stdlib)
    loop_stats_s: float = 30.0  # worker loop timings logged at INFO this often (streams/loopstats.py); 0: off
    # which state owners this process runs: "all", or a comma-separated subset of profiles, recs, decisions
    # (aura/layout.py WORKER_ROLES; a subset is its own consumer group: `aura worker --split`)
    roles: str = env("all", "AURA_WORKER_ROLES")
    nice: int = env(0, "AURA_WORKER_NICE")  # added to the worker process's niceness at start; 0: unchanged
    # `aura worker --split`: the niceness of the recs+decisions processes (the profiles group first)
    split_nice: int = env(10, "AURA_WORKER_SPLIT_NICE")
    # when the worker finds that Redis restarted or lost writes while it ran (streams/redisloss.py):
    # "restart" re-executes the worker process (nothing in flight is kept; the new process refolds
    # what Redis lost), "exit" ends it with status 75 for a supervisor to restart
    redis_loss_action: Literal["restart", "exit"] = "restart"
    # liveness (streams/liveness.py): a worker out of its consumer group (no generation: left it, or
    # dropped by the broker after a stall past the session timeout) or whose event loop has not run for
    # this long is replaced as on a Redis loss (redis_loss_action); 0: never
    stall_s: float = env(120.0, "AURA_WORKER_STALL_S")


class ProfileSettings(BaseSettings):
    """Profiles, segments and lifecycle (docs/profiles.md has the formulas)."""

    model_config = _group("AURA_")

    recent_items_max: int = 50
    session_gap_s: int = 1800
    engagement_half_life_days: float = 7.0
    engagement_scale: float = 20.0  # score = 100 * (1 - exp(-decayed_points / scale))
    affinity_half_life_days: float = 14.0
    price_bands: str = "25,100,250"  # upper bounds of the price bands: <25, 25-100, 100-250, >=250
    lifecycle_new_days: float = 7.0
    lifecycle_at_risk_days: float = 14.0
    lifecycle_churn_days: float = 30.0
    lifecycle_sweep_interval_s: float = 3600.0  # idle-user sweep (streams/lifecycle.py); 0 disables it
    lifecycle_sweep_batch: int = 250  # profiles read per SCAN batch of the sweep
    segment_backfill_interval_s: float = 1.0  # how often a worker looks for asked-for segment backfills
    search_cursor_secret: SecretStr = SecretStr("dev-search-cursor-secret")  # signs GET /profiles cursors
    attribution_window_s: int = 24 * 3600
    segment_rules: str = (
        '{"vip": [["ltv", ">", 500]], "buyer": [["orders", ">=", 1]], '
        '"engaged": [["engagement", ">=", 60]], "window_shopper": [["count.view", ">=", 20], ["orders", "==", 0]]}'
    )


class AnalyticsSettings(BaseSettings):
    """Analytics counters' lifetimes and the agg.* publisher."""

    model_config = _group("AURA_ANALYTICS_")

    minute_ttl_s: int = 2 * 24 * 3600
    hour_ttl_s: int = 15 * 24 * 3600
    day_ttl_s: int = 400 * 24 * 3600
    publish_interval_s: float = env(5.0, "AURA_AGG_PUBLISH_INTERVAL_S")
    cohorts: bool = True  # acquisition cohorts and retention (streams/retention.py)
    cohort_seen_days: int = Field(70, gt=0)  # a period's active-user marks are kept this long after it ends


class InsightSettings(BaseSettings):
    """The insight agent (streams/insights.py, docs/insights.md)."""

    model_config = _group("AURA_INSIGHTS_")

    enabled: bool = True
    interval_s: float = Field(1.0, gt=0)  # one round (consume, detect, publish, save) this often
    lease_ms: int = Field(15_000, gt=0)   # one worker runs the engine; another takes over after this
    max_records: int = Field(20_000, gt=0)  # agg.minute_metrics records per round at most
    settle_s: int = Field(120, ge=0)  # a minute is final this long after the newest minute seen
    snapshot_s: float = Field(60.0, gt=0)  # the engine is copied to Cassandra this often


class DecisionSettings(BaseSettings):
    """Rules, experiments and bandits (docs/decisions.md)."""

    model_config = _group("AURA_")

    decision_ttl_s: int = 3 * 24 * 3600  # how long a bandit decision can still receive its reward
    experiment_attribution_s: int = 7 * 24 * 3600  # conversions count this long after first exposure
    # configuration objects per kind (rules, experiments, bandits incl. strategy bandits): a create past
    # the limit is refused (409), so no key can grow the configuration without bound
    max_config_objects: int = 1000


class CampaignSettings(BaseSettings):
    """Campaigns: triggers, guards and delivery (docs/campaigns.md)."""

    model_config = _group("AURA_CAMPAIGN_")

    max_concurrent: int = 50  # campaigns running at once
    tick_s: float = 0.1  # the due-message drainer runs this often
    drain_batch: int = 500  # due messages handled per drainer pass
    rate_per_min: float = 1000.0  # messages per minute and channel moved to the outboxes (global)
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 2525  # the local stack's development mail server (aura stack, infra/mailsink.py)
    smtp_from: str = "Aura <campaigns@aura.local>"
    smtp_timeout_s: float = 10.0
    webhook_url: str = ""  # push, sms and webhook messages are POSTed here (HMAC-signed); empty: failed
    webhook_secret: SecretStr = SecretStr("dev-webhook-secret")
    webhook_timeout_s: float = 5.0
    public_url: str = "http://127.0.0.1:8000"  # base of the open-pixel and click links in messages
    link_secret: SecretStr = SecretStr("dev-link-secret")  # signs the open-pixel and click links
    recommendations: int = 4  # recommended items in a message's template context
    message_ttl_s: int = 30 * 24 * 3600  # how long send records keep a message id from being sent again
    smtp_connections: int = 8  # pooled SMTP connections per worker, each sending many messages
    in_flight: int = 32  # messages being delivered at once per channel agent
    breaker_failures: int = 5  # consecutive transient failures that open a provider's breaker
    breaker_max_open_s: float = 30.0  # the longest an open breaker waits before its next probe
    agg_interval_s: float = 60.0  # campaign figures published to agg.campaigns this often (0: never)
    schedule_chunk: int = 1000  # audience members a scheduled campaign expands into due messages per pass
    schedule_grace_s: float = 3600.0  # a scheduled message more than this late (worker down) is skipped
    audience_scan_s: float = 5.0  # the longest an audience estimate scans (then it answers from the users seen)


class RecsSettings(BaseSettings):
    """The recommenders (docs/recommendations.md)."""

    model_config = _group("AURA_RECS_")

    window: int = 10  # previous interactions paired with a new one
    decay: float = 0.85  # weight of the k-th previous interaction: decay ** k
    seq_max: int = 50  # interactions kept in a user's recommender sequence
    topk: int = 100  # neighbours kept per item and source
    cooc_read: int = 150  # raw co-occurrences read to publish an item's top-K
    cooc_cap: int = 1000  # raw co-occurrences kept per item
    candidates: int = 200  # per-user candidates kept per model (MF, batch)
    mf_items_refresh_s: float = 2.0  # a reader reloads the MF item factors at most this often
    publish_interval_s: float = 5.0  # top-K neighbour lists republished at most this often
    # ... and an item's lists only once its interaction weight grew by this share since their last
    # publish, or they are this old (0: every touched item)
    publish_min_growth: float = 0.2
    publish_max_age_s: float = 60.0
    # lists republished per publishing pass at most (the most changed first; the rest wait for the
    # next pass): bounds how long one pass holds the event loop the behavior agent shares
    publish_max_items: int = 1000
    trending_half_life_h: float = 24.0
    mf_dim: int = 32
    mf_lr: float = 0.05
    content_rebuild_s: float = 1.0  # debounce of the content model rebuild after catalog changes
    actors_max: int = 30  # users kept per item as recent actors
    nbrs_max: int = 50  # neighbours kept per user
    user_neighbours: bool = False  # run the user-neighbours owner in the behavior fan-out (the "users" source)
    cohorts: bool = True  # count each demographic cohort's popular items (cold start)
    cohort_cap: int = 1000  # items kept per cohort popularity list
    user_cands: bool = True  # per-user hybrid candidate pools ranked by the stream, on demand
    user_cands_interval_s: float = 0.1  # how often the worker ranks the pools of the users of recent batches
    user_cands_ttl_s: float = 3600.0  # a pool expires this long after it was ranked (then: the full ranking)
    user_cands_placements: str = "default"  # comma-separated placements whose pools are kept
    # the worker ranks pools only for users whose hybrid request found none and, after their new events,
    # for users who asked within this long
    user_cands_wanted_s: float = 1800.0
    user_cands_wanted_max: int = 100_000  # (placement, user) pairs kept in the wanted set (oldest dropped)
    # a pool served older than this is re-ranked behind (the request marks the user); 0: only events re-rank
    user_cands_refresh_s: float = 30.0
    # a pool-able request that finds no usable pool (a user's first request) is answered by a bounded
    # first pass while the worker ranks the pool: at most this many ids per candidate list, entries per
    # neighbour list and newest recent items, no "users like you"
    first_pass_candidates: int = 50
    first_pass_list_k: int = 10
    first_pass_recent: int = 3


class IngestSettings(BaseSettings):
    """Event ingest over HTTP (serving/routes/events.py)."""

    model_config = _group("AURA_INGEST_")

    max_batch: int = 500  # events per POST /v1/events/batch; more is answered 413
    max_body_bytes: int = 1_048_576  # request body limit (413); keep <= api.max_body_bytes
    ack_timeout_s: float = 10.0  # wait this long for Kafka's acknowledgement, then 503


class ApiSettings(BaseSettings):
    """The HTTP API process: address, limits, degradation, caches."""

    model_config = _group("AURA_API_")

    host: str = "127.0.0.1"
    port: int = 8000
    max_body_bytes: int = env(1_048_576, "AURA_MAX_BODY_BYTES")  # larger request bodies get 413
    cors_origins: str = env("", "AURA_CORS_ORIGINS")  # comma-separated allowed origins ("*": any); empty: none
    # /metrics and the API docs (/docs, /redoc, /openapi.json) without a key? None (the default): open in
    # development, admin-only in any other environment (AURA_ENVIRONMENT)
    metrics_public: bool | None = env(None, "AURA_METRICS_PUBLIC")
    docs_public: bool | None = env(None, "AURA_DOCS_PUBLIC")
    redis_timeout_s: float = 0.5  # the API's Redis socket timeout (the breaker opens after repeated ones)
    gc_threshold: int = 50_000  # young-generation GC threshold of an API process; 0: Python's
    breaker_failures: int = env(3, "AURA_BREAKER_FAILURES")  # consecutive failures that open a breaker
    breaker_reset_s: float = env(5.0, "AURA_BREAKER_RESET_S")  # an open breaker waits this long for a trial
    health_cache_s: float = env(1.0, "AURA_HEALTH_CACHE_S")  # /v1/health checks dependencies this often
    # response micro-cache of item-keyed reads: an answer is reused this long per API process; 0: off
    cache_ms: int = 500
    cache_max: int = 10_000  # entries per API process (least recently used evicted)
    # an idle keep-alive connection is closed after this long. Longer than any client's or proxy's own
    # idle expiry (httpx 5 s, load balancers ~60 s): a server that closes first races the client's next
    # request on that connection, which then sees a reset (uvicorn's own default is 5 s)
    keepalive_s: int = Field(75, gt=0)

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]


class AuthSettings(BaseSettings):
    """API keys, the admin token and rate limits (serving/security.py, serving/ratelimit.py)."""

    model_config = _group("AURA_")

    admin_token: SecretStr = SecretStr("dev-admin-token")
    enabled: bool = env(True, "AURA_AUTH_ENABLED")  # False: every route is open (local experiments only)
    rate_limit_per_s: float = 200.0  # default per-key rate; `aura keys create --rate` overrides per key
    rate_limit_burst: int = 400  # requests a key may send at once before the rate applies
    rate_limit_lease_s: float = 0.05  # a process takes this much of a key's rate from Redis at once
    key_cache_ttl_s: int = env(300, "AURA_API_KEY_CACHE_TTL_S")  # a key record's life in the Redis cache
    # a process trusts a key it verified in Redis this long (revocation delay)
    key_local_ttl_s: float = env(1.0, "AURA_API_KEY_LOCAL_TTL_S")
    # failed authentications a client address (and a key id) may make: a burst, then this rate; past
    # it, 429 without asking any store
    failed_auth_per_s: float = 1.0
    failed_auth_burst: int = 20


GROUPS: dict[str, type[BaseSettings]] = {
    "kafka": KafkaSettings, "cassandra": CassandraSettings, "redis": RedisSettings, "stack": StackSettings,
    "worker": WorkerSettings, "profiles": ProfileSettings, "analytics": AnalyticsSettings,
    "decisions": DecisionSettings, "insights": InsightSettings, "campaigns": CampaignSettings, "recs": RecsSettings,
    "ingest": IngestSettings, "api": ApiSettings, "auth": AuthSettings,
}


def env_name(group: type[BaseModel], field: str) -> str:
    """The environment variable of ``group``'s ``field``."""
    info = group.model_fields[field]
    if isinstance(info.validation_alias, str):
        return info.validation_alias
    return f"{group.model_config.get('env_prefix', '')}{field}".upper()


class Settings(BaseSettings):
    """Configuration of one process; frozen once built."""

    model_config = SettingsConfigDict(env_prefix="AURA_", frozen=True, extra="ignore")

    environment: str = "development"
    home: Path = Field(default=REPO_ROOT / ".aura")  # logs, data of the local stack, caches, model files

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    cassandra: CassandraSettings = Field(default_factory=CassandraSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    stack: StackSettings = Field(default_factory=StackSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    profiles: ProfileSettings = Field(default_factory=ProfileSettings)
    analytics: AnalyticsSettings = Field(default_factory=AnalyticsSettings)
    decisions: DecisionSettings = Field(default_factory=DecisionSettings)
    insights: InsightSettings = Field(default_factory=InsightSettings)
    campaigns: CampaignSettings = Field(default_factory=CampaignSettings)
    recs: RecsSettings = Field(default_factory=RecsSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)

    ROOT_FIELDS: ClassVar[tuple[str, ...]] = ("environment", "home")

    @model_validator(mode="after")
    def _no_placeholder_secrets_in_production(self) -> Settings:
        if self.environment == "production" and self.auth.admin_token.get_secret_value() == "dev-admin-token":
            raise ValueError("AURA_ADMIN_TOKEN must be set to a real secret in production")
        if self.environment == "production" and self.campaigns.link_secret.get_secret_value() == "dev-link-secret":
            raise ValueError("AURA_CAMPAIGN_LINK_SECRET must be set to a real secret in production")
        if (self.environment == "production"
                and self.profiles.search_cursor_secret.get_secret_value() == "dev-search-cursor-secret"):
            raise ValueError("AURA_SEARCH_CURSOR_SECRET must be set to a real secret in production")
        return self

    def replace(self, **changes: Any) -> Settings:
        """A copy with the given fields changed, each named as its environment variable without
        ``AURA_`` and lower-cased (``topic_prefix``, ``recs_window``, ``api_port``)."""
        root: dict[str, Any] = {}
        groups: dict[str, dict[str, Any]] = {}
        for key, value in changes.items():
            where = ENV_FIELDS.get(key)
            if where is None:
                raise KeyError(f"no setting named {key!r} (environment variable AURA_{key.upper()})")
            group, field = where
            if group == "":
                root[field] = value
            else:
                groups.setdefault(group, {})[field] = value
        update = {g: getattr(self, g).model_copy(update=v) for g, v in groups.items()}
        return self.model_copy(update={**root, **update})


def _env_fields() -> dict[str, tuple[str, str]]:
    """Every setting's environment name without ``AURA_`` -> (group, field); "" is the root group."""
    out = {name: ("", name) for name in Settings.ROOT_FIELDS}
    for group, cls in GROUPS.items():
        for field in cls.model_fields:
            out[env_name(cls, field).removeprefix("AURA_").lower()] = (group, field)
    return out


ENV_FIELDS = _env_fields()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment once."""
    return Settings()


def settings_env(s: Settings) -> dict[str, str]:
    """``s`` as AURA_* environment variables, for starting another process with the same settings."""
    env_vars: dict[str, str] = {}
    values: list[tuple[str, Any]] = [(f"AURA_{n.upper()}", getattr(s, n)) for n in Settings.ROOT_FIELDS]
    for group, cls in GROUPS.items():
        sub = getattr(s, group)
        values += [(env_name(cls, f), getattr(sub, f)) for f in cls.model_fields]
    for name, value in values:
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, (list, dict, tuple, set)):
            value = json.dumps(list(value) if isinstance(value, (tuple, set)) else value)
        env_vars[name] = str(value)
    return env_vars

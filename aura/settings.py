"""The one settings object of every Aura process (worker, API, jobs, CLI, stack).

Values come from environment variables prefixed ``AURA_`` (for example ``AURA_KAFKA_BOOTSTRAP``);
defaults point at the local stack that ``aura stack up`` starts.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Configuration shared by every process; frozen once built."""

    model_config = SettingsConfigDict(env_prefix="AURA_", frozen=True, extra="ignore")

    environment: str = "development"

    # Kafka
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_controller_port: int = 9093
    topic_prefix: str = "aura"
    topic_partitions: int = 12
    consumer_group: str = "aura-worker"

    # Cassandra
    cassandra_hosts: str = "127.0.0.1"
    cassandra_port: int = 9042
    cassandra_keyspace: str = "aura"
    cassandra_replication: int = 1
    cassandra_storage_port: int = 7000

    # Redis
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "aura"

    # Local stack (infra/stack.py)
    home: Path = Field(default=REPO_ROOT / ".aura")
    maven_repo: Path | None = None  # default: <home>/m2; tests with a private stack share the main cache
    kafka_heap: str = "1g"
    cassandra_heap: str = "1g"
    start_timeout_s: float = 180.0

    # Worker
    batch_max: int = 2000
    # a batch is taken when batch_max events wait, or batch_within_s after the previous one (Faust's
    # take_events); 0.02: docs/state.md "Freshness, session 6" (0.05 added ~30 ms to every event at 1,000/s)
    batch_within_s: float = 0.02
    # write-behind of the behavior owners' Cassandra rows (streams/durable.py); 0: written in the batch
    durable_flush_ms: int = 250
    durable_max_pending: int = 50_000  # buffered rows at which the agent waits for a flush
    loop_stats_s: float = 30.0  # worker loop timings logged at INFO this often (streams/loopstats.py); 0: off
    # which state owners this process runs: "all", or a comma-separated subset of profiles, recs,
    # decisions (aura/layout.py WORKER_ROLES; a subset is its own consumer group: `aura worker --split`)
    worker_roles: str = "all"
    worker_nice: int = 0  # added to this worker process's niceness at start (os.nice); 0: unchanged
    # `aura worker --split`: the niceness of the recs+decisions processes, so when the CPU is short the
    # profiles group (the state storefronts read, the freshness the API promises) is scheduled first
    worker_split_nice: int = 10
    owner_lanes: bool = False  # each behavior owner in its own task over queued batches (streams/behavior.py)
    owner_lane_depth: int = 32  # batches waiting in one lane before the behavior agent waits (folded as one step)
    recent_items_max: int = 50

    # Decisions (issue 7: rules, experiments, bandits; docs/decisions.md)
    decision_ttl_s: int = 3 * 24 * 3600  # how long a bandit decision can still receive its reward
    experiment_attribution_s: int = 7 * 24 * 3600  # conversions count this long after first exposure

    # Profiles, segments and analytics (streams/profiles.py, streams/segments.py, streams/analytics.py;
    # formulas in docs/state.md)
    session_gap_s: int = 1800
    engagement_half_life_days: float = 7.0
    engagement_scale: float = 20.0  # score = 100 * (1 - exp(-decayed_points / scale))
    affinity_half_life_days: float = 14.0
    price_bands: str = "25,100,250"  # upper bounds of the price bands: <25, 25-100, 100-250, >=250
    lifecycle_new_days: float = 7.0
    lifecycle_at_risk_days: float = 14.0
    lifecycle_churn_days: float = 30.0
    lifecycle_sweep_interval_s: float = 3600.0  # idle-user sweep (streams/lifecycle.py); 0 disables it
    lifecycle_sweep_batch: int = 250  # profiles read per SCAN batch of the sweep (CPU per batch blocks the loop)
    attribution_window_s: int = 24 * 3600
    segment_rules: str = (
        '{"vip": [["ltv", ">", 500]], "buyer": [["orders", ">=", 1]], '
        '"engaged": [["engagement", ">=", 60]], "window_shopper": [["count.view", ">=", 20], ["orders", "==", 0]]}'
    )
    analytics_minute_ttl_s: int = 2 * 24 * 3600
    analytics_hour_ttl_s: int = 15 * 24 * 3600
    analytics_day_ttl_s: int = 400 * 24 * 3600
    agg_publish_interval_s: float = 5.0
    kafka_session_timeout_s: float = 60.0  # a dead worker's partitions move after this long

    # Recommenders (issue 5: streams/cooccurrence.py, streams/catalog.py, serving/recommend.py, jobs/)
    recs_window: int = 10  # previous interactions paired with a new one (chosen on a validation split)
    recs_decay: float = 0.85  # weight of the k-th previous interaction: decay ** k
    recs_seq_max: int = 50  # interactions kept in a user's recommender sequence
    recs_topk: int = 100  # neighbours kept per item and source
    recs_cooc_read: int = 150  # raw co-occurrences read to publish an item's top-K
    recs_cooc_cap: int = 1000  # raw co-occurrences kept per item
    recs_candidates: int = 200  # per-user candidates kept per model (MF, batch)
    recs_mf_refresh_s: float = 1.0  # a user's MF candidates are rewritten at most this often (0: every batch)
    recs_publish_interval_s: float = 5.0  # top-K neighbour lists republished at most this often
    # ... and an item's lists only once its interaction weight grew by this share since their last
    # publish, or they are this old (streams/cooccurrence.py publish_split; 0: every touched item)
    recs_publish_min_growth: float = 0.2
    recs_publish_max_age_s: float = 60.0
    recs_trending_half_life_h: float = 24.0
    recs_mf_dim: int = 32
    recs_mf_lr: float = 0.05
    recs_content_rebuild_s: float = 1.0  # debounce of the content model rebuild after catalog changes
    recs_repartition: bool = False  # True: item signals go through internal.by_item (see docs/recommenders.md)
    recs_actors_max: int = 30  # users kept per item as recent actors (streams/neighbours.py)
    recs_nbrs_max: int = 50  # neighbours kept per user (streams/neighbours.py)
    recs_user_neighbours: bool = False  # run the user-neighbours owner in the behavior fan-out (docs/recommenders.md)
    recs_cohorts: bool = True  # count each demographic cohort's popular items (streams/cohorts.py; cold start)
    recs_cohort_cap: int = 1000  # items kept per cohort popularity list
    # per-user hybrid candidate pools ranked by the stream (streams/usercands.py; the API's hybrid requests
    # read them: docs/recommenders.md)
    recs_user_cands: bool = True  # on demand: only users whose requests asked for one (docs/recommenders.md)
    recs_user_cands_interval_s: float = 0.1  # how often the worker ranks the pools of the users of recent batches
    recs_user_cands_ttl_s: float = 3600.0  # a pool expires this long after it was ranked (then: the full ranking)
    recs_user_cands_placements: str = "default"  # comma-separated placements whose pools are kept
    # pools on demand: the worker ranks pools only for users whose hybrid request found none (drained each
    # tick) and, after their new events, for users who asked within this long (docs/recommenders.md)
    recs_user_cands_wanted_s: float = 1800.0
    recs_user_cands_wanted_max: int = 100_000  # (placement, user) pairs kept in the wanted set (oldest dropped)
    # a pool served older than this is re-ranked behind (the request marks the user): bounds how long a pool
    # misses republished neighbour lists and global lists while its user keeps asking; 0: only events re-rank
    recs_user_cands_refresh_s: float = 30.0

    # Event ingest over HTTP (serving/routes/events.py)
    ingest_max_batch: int = 500  # events per POST /v1/events/batch; more is answered 413
    ingest_max_body_bytes: int = 1_048_576  # request body limit (413); keep <= max_body_bytes (the edge limit)
    ingest_ack_timeout_s: float = 10.0  # wait this long for Kafka's acknowledgement, then 503

    # API
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    admin_token: SecretStr = SecretStr("dev-admin-token")

    # API security, limits and degradation (serving/security.py, ratelimit.py, degrade.py)
    auth_enabled: bool = True  # False: every route is open (local experiments only)
    rate_limit_per_s: float = 200.0  # default per-key rate; `aura keys create --rate` overrides per key
    rate_limit_burst: int = 400  # requests a key may send at once before the rate applies
    max_body_bytes: int = 1_048_576  # larger request bodies get 413
    cors_origins: str = ""  # comma-separated allowed origins ("*" for any); empty: no CORS headers
    metrics_public: bool = True  # False: /metrics needs an admin key
    api_key_cache_ttl_s: int = 300  # how long a key record stays in the Redis cache
    api_key_local_ttl_s: float = 1.0  # a process trusts a key it verified in Redis this long (revocation delay)
    rate_limit_lease_s: float = 0.05  # a process takes this much of a key's rate from Redis at once (<= 1000)
    api_redis_timeout_s: float = 0.5  # the API's Redis socket timeout (the breaker opens after repeated ones)
    api_redis_autopipe: bool = True  # Redis commands of concurrent requests sent as one pipeline (serving/autopipe.py)
    api_gc_threshold: int = 50_000  # young-generation GC threshold of an API process (serving/app.tune_gc); 0: Python's
    api_fast_path: bool = True  # hot GET routes answered without FastAPI routing/DI (serving/fastpath.py)
    breaker_failures: int = 3  # consecutive dependency failures that open a circuit breaker
    breaker_reset_s: float = 5.0  # seconds an open breaker waits before letting one trial call through
    health_cache_s: float = 1.0  # /v1/health checks the dependencies at most this often per process
    # response micro-cache of item-keyed reads (similar, also bought, content-similar; serving/respcache.py):
    # an answer is reused this long per API process (adds at most this much staleness); 0: off
    api_cache_ms: int = 500
    api_cache_max: int = 10_000  # entries per API process (least recently used evicted)

    @model_validator(mode="after")
    def _no_placeholder_secrets_in_production(self) -> Settings:
        if self.environment == "production" and self.admin_token.get_secret_value() == "dev-admin-token":
            raise ValueError("AURA_ADMIN_TOKEN must be set to a real secret in production")
        return self

    @property
    def kafka_host(self) -> str:
        return self.kafka_bootstrap.split(",")[0].rsplit(":", 1)[0]

    @property
    def kafka_port(self) -> int:
        return int(self.kafka_bootstrap.split(",")[0].rsplit(":", 1)[1])

    @property
    def cassandra_host_list(self) -> list[str]:
        return [h.strip() for h in self.cassandra_hosts.split(",") if h.strip()]

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]

    @property
    def redis_port(self) -> int:
        from urllib.parse import urlparse

        return urlparse(self.redis_url).port or 6379


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment once."""
    return Settings()


def settings_env(s: Settings) -> dict[str, str]:
    """``s`` as AURA_* environment variables, for starting another process with the same settings."""
    env: dict[str, str] = {}
    for name, value in s.model_dump().items():
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, (list, dict, tuple, set)):
            import json

            value = json.dumps(list(value) if isinstance(value, (tuple, set)) else value)
        env[f"AURA_{name.upper()}"] = str(value)
    return env

"""Settings from the environment and the one spelling of every key and topic."""

from __future__ import annotations

import pytest

from aura import layout
from aura.keys import RedisKeys
from aura.settings import Settings, settings_env


def test_settings_read_the_aura_prefix(monkeypatch):
    monkeypatch.setenv("AURA_KAFKA_BOOTSTRAP", "10.0.0.1:9999")
    monkeypatch.setenv("AURA_TOPIC_PARTITIONS", "24")
    s = Settings()
    assert (s.kafka.host, s.kafka.port, s.kafka.topic_partitions) == ("10.0.0.1", 9999, 24)


def test_settings_round_trip_through_the_environment(monkeypatch):
    s = Settings().replace(topic_prefix="x1", redis_prefix="y1", cassandra_keyspace="z1")
    for k, v in settings_env(s).items():
        monkeypatch.setenv(k, v)
    assert Settings() == s


def test_placeholder_admin_token_refused_in_production():
    with pytest.raises(ValueError, match="AURA_ADMIN_TOKEN"):
        Settings(environment="production")
    with pytest.raises(ValueError, match="AURA_CAMPAIGN_LINK_SECRET"):
        Settings(environment="production", auth={"admin_token": "a-real-secret"})
    with pytest.raises(ValueError, match="AURA_SEARCH_CURSOR_SECRET"):
        Settings(environment="production", auth={"admin_token": "a-real-secret"},
                 campaigns={"link_secret": "another-secret"})
    assert Settings(environment="production", auth={"admin_token": "a-real-secret"},
                    campaigns={"link_secret": "another-secret"},
                    profiles={"search_cursor_secret": "a-third-secret"}).environment == "production"


def test_settings_are_frozen():
    with pytest.raises(ValueError):
        Settings().kafka.topic_prefix = "other"  # type: ignore[misc]


def test_topics_carry_the_prefix_and_are_unique():
    s = Settings().replace(topic_prefix="shop1")
    names = [layout.topic(s, spec) for spec in layout.ALL_TOPICS]
    assert len(set(names)) == len(names)
    assert all(n.startswith("shop1.") for n in names)


def test_user_keys_share_one_cluster_hash_tag():
    keys = RedisKeys("aura")
    assert "{u42}" in keys.user_state("u42") and "{u42}" in keys.user_attrs("u42")
    assert keys.user_state("u42") != keys.user_attrs("u42")


def test_retention_keys_that_hold_user_ids_are_told_from_the_counters():
    from aura.keys import RedisKeys, glob_escape

    k = RedisKeys("p*x")
    assert k.retention_match() == glob_escape("p*x") + ":ret:{p*}:*"
    assert RedisKeys.retention_user_key(k.retention_first(3)) == "first"
    assert RedisKeys.retention_user_key(k.retention_seen(2, "week", 123)) == "seen"
    assert RedisKeys.retention_user_key(k.retention_fence(1)) is None
    assert RedisKeys.retention_user_key(k.retention_counts(0, "month")) is None

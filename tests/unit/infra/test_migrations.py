"""Migrations are ordered, unique and idempotent by construction."""

from __future__ import annotations

from aura.settings import Settings
from infra.migrations import all_migrations


def test_versions_are_unique_and_increasing():
    versions = [m.VERSION for m in all_migrations()]
    assert versions == sorted(set(versions)) and versions[0] == 1


def test_every_statement_is_idempotent_and_in_the_configured_keyspace():
    s = Settings().replace(cassandra_keyspace="ks_under_test")
    for mod in all_migrations():
        assert mod.DESCRIPTION
        for stmt in mod.cql(s):
            assert "IF NOT EXISTS" in stmt.upper() or "IF EXISTS" in stmt.upper(), stmt
            if stmt.strip().upper().startswith("CREATE TABLE"):
                assert "ks_under_test." in stmt, stmt

"""Decisions: personalization rules, experiments and their streamed results, bandit configuration
and durable snapshots of the learned bandit state.

Definitions are JSON documents (validated by the rules, experiments and bandits modules of aura
before they are written), so adding an optional field needs no schema change. The learned state
(experiment tallies, bandit state) is written as absolute values with the offset fences it was
computed from, so a snapshot can restore Redis without double counting.
"""

from __future__ import annotations

from aura.layout import Tables
from aura.settings import Settings

VERSION = 6
DESCRIPTION = "personalization rules, experiments, experiment results, bandits, bandit state"
TOPICS = ()


def cql(s: Settings) -> list[str]:
    ks = s.cassandra.keyspace
    return [
        f"""CREATE TABLE IF NOT EXISTS {ks}.{Tables.PERSONALIZATION_RULES} (
              rule_id text PRIMARY KEY,
              doc text,
              updated_at timestamp
            )""",
        f"""CREATE TABLE IF NOT EXISTS {ks}.{Tables.EXPERIMENTS} (
              experiment_id text PRIMARY KEY,
              doc text,
              updated_at timestamp
            )""",
        f"""CREATE TABLE IF NOT EXISTS {ks}.{Tables.EXPERIMENT_RESULTS} (
              experiment_id text PRIMARY KEY,
              tally map<text, double>,
              fences map<text, bigint>,
              updated_at timestamp
            )""",
        f"""CREATE TABLE IF NOT EXISTS {ks}.{Tables.BANDITS} (
              bandit_id text PRIMARY KEY,
              doc text,
              updated_at timestamp
            )""",
        f"""CREATE TABLE IF NOT EXISTS {ks}.{Tables.BANDIT_STATE} (
              bandit_id text PRIMARY KEY,
              state text,
              ver bigint,
              fences map<text, bigint>,
              updated_at timestamp
            )""",
    ]

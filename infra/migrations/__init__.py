"""Versioned, idempotent migrations of the Kafka topics and the Cassandra keyspace.

Each migration is a module ``vNNNN_<what>.py`` with ``VERSION``, ``DESCRIPTION``, ``TOPICS`` (layout
``TopicSpec``s to ensure), ``cql(settings)`` (statements, all ``IF NOT EXISTS``) and, for a migration
that moves rows, ``data(settings, session)`` (run after its statements; redone whole if the
migration is interrupted, so it must be idempotent). ``infra.migrate``
applies the pending ones in order and records them in the ``schema_migrations`` table. Never edit
a released migration: add a new one.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType


def all_migrations() -> list[ModuleType]:
    """Every migration module, ordered by version."""
    mods = [
        importlib.import_module(f"{__name__}.{info.name}")
        for info in pkgutil.iter_modules(__path__)
        if info.name.startswith("v") and info.name[1:5].isdigit()
    ]
    mods.sort(key=lambda m: m.VERSION)
    versions = [m.VERSION for m in mods]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration versions: {versions}")
    return mods

"""API keys: generation, hashing, scopes, and the key store (Cassandra durable, Redis cache).

Owns the ``api_keys`` Cassandra table (migration v0004) and the cached key records in Redis
(``RedisKeys.api_key``). A token looks like ``aura_<key id>_<secret>``: the key id (12 hex
characters) is the lookup key and is safe to show; only the SHA-256 of the whole token is stored,
so a leaked table or cache grants nothing. Tokens carry 256 random bits, so a fast hash is the
standard choice (a slow password hash buys nothing against a random secret).

Scopes: ``read`` (storefronts: every GET), ``events`` (clients: behavior and tracking POSTs),
``admin`` (configuration writes and key management); ``admin`` covers the other two.

The CLI (``aura keys ...``) uses :class:`KeyStore` (blocking driver calls); the API reads the same
rows asynchronously in ``serving/security.py``.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aura.bootstrap import epoch_ms
from aura.errors import AuraError
from aura.keys import RedisKeys
from aura.layout import Tables
from aura.settings import Settings

READ, EVENTS, ADMIN = "read", "events", "admin"
SCOPES: tuple[str, ...] = (READ, EVENTS, ADMIN)
TOKEN_PREFIX = "aura"  # noqa: S105 - a public prefix, not a secret
_TOKEN_RE = re.compile(r"^aura_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
UNKNOWN_HASH = "-"  # a cached record for a key id that does not exist (negative cache)
NEGATIVE_TTL_S = 60


class ApiKeyError(AuraError, ValueError):
    """A key request that cannot be honoured (unknown scope, unknown key id)."""


def new_token() -> tuple[str, str]:
    """A fresh ``(key_id, token)``; the token is shown once and never stored."""
    key_id = secrets.token_hex(6)
    return key_id, f"{TOKEN_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"


def parse_token(token: str) -> str | None:
    """The key id of a well-formed token, else None (no store is asked about malformed tokens)."""
    m = _TOKEN_RE.match(token)
    return m.group(1) if m else None


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def covers(granted: Iterable[str], required: str) -> bool:
    """Whether a key with scopes ``granted`` may call a route that needs ``required``."""
    g = set(granted)
    return required in g or ADMIN in g


def check_scopes(scopes: Iterable[str]) -> frozenset[str]:
    out = frozenset(scopes)
    unknown = out - set(SCOPES)
    if not out or unknown:
        raise ApiKeyError(f"scopes must be some of {', '.join(SCOPES)}; got {sorted(out)}")
    return out


@dataclass(frozen=True)
class KeyRecord:
    """One API key as stored (never the token itself)."""

    key_id: str
    name: str
    key_hash: str
    scopes: frozenset[str]
    rate_per_s: float
    burst: int
    created_at: int | None = None  # epoch ms
    revoked_at: int | None = None  # epoch ms; set once revoked

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def cache_mapping(self) -> dict[str, str]:
        """The Redis hash that caches this record (read by the auth Lua script)."""
        return {"hash": self.key_hash, "scopes": " ".join(sorted(self.scopes)), "rate": repr(float(self.rate_per_s)),
                "burst": str(int(self.burst)), "revoked": "1" if self.revoked else "0", "name": self.name}

    @classmethod
    def from_row(cls, row: Any, settings: Settings) -> KeyRecord:
        return cls(key_id=row.key_id, name=row.name or "", key_hash=row.key_hash or UNKNOWN_HASH,
                   scopes=frozenset(row.scopes or ()),
                   rate_per_s=float(row.rate_per_s or settings.auth.rate_limit_per_s),
                   burst=int(row.burst or settings.auth.rate_limit_burst),
                   created_at=epoch_ms(row.created_at), revoked_at=epoch_ms(row.revoked_at))


def negative_record(key_id: str) -> KeyRecord:
    """What the cache holds for a key id that is not in the table."""
    return KeyRecord(key_id=key_id, name="", key_hash=UNKNOWN_HASH, scopes=frozenset(), rate_per_s=1.0, burst=1)


def parse_cached(key_id: str, mapping: Mapping[str, str]) -> KeyRecord:
    return KeyRecord(key_id=key_id, name=mapping.get("name", ""), key_hash=mapping.get("hash", UNKNOWN_HASH),
                     scopes=frozenset(mapping.get("scopes", "").split()), rate_per_s=float(mapping.get("rate", 1)),
                     burst=int(mapping.get("burst", 1)),
                     revoked_at=0 if mapping.get("revoked") == "1" else None)


SELECT_CQL = (f"SELECT key_id, name, key_hash, scopes, rate_per_s, burst, created_at, revoked_at "
              f"FROM {Tables.API_KEYS} WHERE key_id = ?")


class KeyStore:
    """Create, list and revoke keys (blocking; for the CLI, jobs and tests)."""

    def __init__(self, settings: Settings, session: Any, redis: Any | None = None) -> None:
        self.s = settings
        self.session = session
        self.redis = redis
        self.keys = RedisKeys(settings.redis.prefix)
        ks = settings.cassandra.keyspace
        self._insert = session.prepare(
            f"INSERT INTO {ks}.{Tables.API_KEYS} (key_id, name, key_hash, scopes, rate_per_s, burst, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)")
        self._revoke = session.prepare(
            f"UPDATE {ks}.{Tables.API_KEYS} SET revoked_at = ? WHERE key_id = ? IF EXISTS")
        self._get = session.prepare(SELECT_CQL.replace(f"FROM {Tables.API_KEYS}", f"FROM {ks}.{Tables.API_KEYS}"))

    def create(self, name: str, scopes: Iterable[str], rate_per_s: float | None = None,
               burst: int | None = None) -> tuple[KeyRecord, str]:
        """Store a new key; returns its record and the token (shown once)."""
        checked = check_scopes(scopes)
        rate = float(rate_per_s if rate_per_s is not None else self.s.auth.rate_limit_per_s)
        burst_n = int(burst if burst is not None else self.s.auth.rate_limit_burst)
        if rate <= 0 or burst_n < 1:
            raise ApiKeyError("rate must be > 0 and burst >= 1")
        key_id, token = new_token()
        now = int(time.time() * 1000)
        rec = KeyRecord(key_id=key_id, name=name, key_hash=token_hash(token), scopes=checked, rate_per_s=rate,
                        burst=burst_n, created_at=now)
        self.session.execute(self._insert, (key_id, name, rec.key_hash, set(checked), rate, burst_n, now))
        self._drop_cache(key_id)  # a negative-cache entry for this id (astronomically unlikely) must go
        return rec, token

    def get(self, key_id: str) -> KeyRecord | None:
        row = self.session.execute(self._get, (key_id,)).one()
        return KeyRecord.from_row(row, self.s) if row else None

    def list(self) -> list[KeyRecord]:
        rows = self.session.execute(
            f"SELECT key_id, name, key_hash, scopes, rate_per_s, burst, created_at, revoked_at "
            f"FROM {self.s.cassandra.keyspace}.{Tables.API_KEYS}")
        return sorted((KeyRecord.from_row(r, self.s) for r in rows), key=lambda r: r.created_at or 0)

    def revoke(self, key_id: str) -> bool:
        """Mark the key revoked and drop its cached record; False when no such key.

        Every API process authenticates through the Redis cache on each request, so revocation is
        effective at once; should Redis be unreachable now, the cached record expires after
        ``api_key_cache_ttl_s`` at the latest (and processes serving from their local fallback
        cache during a Redis outage re-check Cassandra every ``breaker_reset_s``).
        """
        result = self.session.execute(self._revoke, (int(time.time() * 1000), key_id)).one()
        applied = bool(result[0]) if result is not None else False
        self._drop_cache(key_id)
        return applied

    def _drop_cache(self, key_id: str) -> None:
        if self.redis is not None:
            self.redis.delete(self.keys.api_key(key_id))

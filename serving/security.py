"""API authentication and authorization: API keys with scopes, enforced per route group.

Owns the per-process fallback cache of validated keys (used only while Redis is unreachable) and
the scope policy of every route:

- a route that declares ``dependencies=[require_scope("events")]`` (or
  ``openapi_extra=scoped("events")``) needs that scope;
- otherwise GET/HEAD need ``read`` and other methods need the group's write scope, which
  ``serving/app.py`` sets per router at ``include_router`` time (``guard(write=...)``), so a
  router whose author forgot about auth is still covered, and fails closed (``admin``).

Per request, usually no round trip at all: one Lua call checks the token's hash against the key
record cached in Redis, applies the key's rate limit and hands the process a *lease* of up to
``rate * rate_limit_lease_s`` requests (<= 1000); the process then admits that many requests of the
same token locally, for at most ``api_key_local_ttl_s`` (1 s): that is also how long a revoked or
changed key may keep working in a process that just verified it. A slow key (lease of 1) costs one
Lua call per request, as before. A cache miss reads the key from Cassandra once and caches it.
Redis down: keys seen recently are validated from the local cache (re-checked in Cassandra when it
answers) and limited per process; both down and key unknown here: 503.
"""

from __future__ import annotations

import hmac
import logging
import time
from dataclasses import dataclass, field
from typing import Annotated, Any, Protocol

from cassandra.query import PreparedStatement
from fastapi import Depends, HTTPException, Request, Security, params
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from aura.apikeys import ADMIN, EVENTS, READ, SELECT_CQL, UNKNOWN_HASH, KeyRecord, covers, parse_token, token_hash
from aura.bootstrap import cassandra_execute
from aura.keys import RedisKeys
from aura.settings import Settings
from serving.breakers import DependencyUnavailable
from serving.clients import CASSANDRA_OUTAGE, REDIS_OUTAGE, GuardedRedis, GuardedSession
from serving.ratelimit import AUTH_AND_LIMIT_LUA, MAX_LEASE, LocalGcra, retry_after_header

log = logging.getLogger(__name__)

__all__ = ["ADMIN", "EVENTS", "READ", "Principal", "guard", "require_scope", "scoped"]

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SCOPE_EXTRA = "x-aura-scope"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's id, name and scopes."""

    key_id: str
    name: str
    scopes: frozenset[str]


ANONYMOUS = Principal("anonymous", "auth disabled", frozenset({ADMIN}))


# one text for every refused key (missing, malformed, unknown, revoked): the answer tells an
# attacker nothing about which key ids exist or were revoked
UNAUTHORIZED = "missing or invalid API key: send X-API-Key or Authorization: Bearer"


def unauthorized(detail: str = UNAUTHORIZED) -> HTTPException:
    return HTTPException(401, UNAUTHORIZED, headers={"WWW-Authenticate": 'Bearer realm="aura"'})


@dataclass
class FailureThrottle:
    """Failed authentications per client address and per key id (GCRA, in-process): past the burst
    a caller is answered 429 before any store is asked, so guessing keys or hammering an unknown id
    costs neither a Cassandra read nor a cache entry. Successes are not counted."""

    rate_per_s: float
    burst: int
    clock: Any = time.monotonic
    max_keys: int = 100_000
    tats: dict[str, float] = field(default_factory=dict)

    def blocked(self, *keys: str) -> float:
        """Seconds until ``keys`` may try again (0: not blocked)."""
        now = self.clock()
        wait = 0.0
        for k in keys:
            tat = self.tats.get(k)
            if tat is not None:
                wait = max(wait, tat - (self.burst - 1) / self.rate_per_s - now)
        return max(0.0, wait)

    def failed(self, *keys: str) -> None:
        now = self.clock()
        if len(self.tats) >= self.max_keys:
            self.tats = {k: t for k, t in self.tats.items() if t > now}
        for k in keys:
            self.tats[k] = max(self.tats.get(k, now), now) + 1.0 / self.rate_per_s


@dataclass
class _Known:
    key_hash: str
    scopes: frozenset[str]
    rate: float
    burst: int
    revoked: bool
    checked_at: float  # monotonic time of the last authoritative check (Redis or Cassandra)
    principal: Principal | None = None
    tokens: int = 0  # requests this process may still admit without asking Redis (the lease)
    lease_until: float = 0.0  # monotonic; after it the lease is void and the key is checked again
    denied_until: float = 0.0  # monotonic; Redis refused the key until then (429 without a round trip)


class KeyStores(Protocol):
    """What the authenticator reads from the process's state (``serving/state.py``'s ``ApiState``):
    the stores as they are now (the Cassandra session appears once it is reachable)."""

    settings: Settings
    keys: RedisKeys
    redis: GuardedRedis
    cassandra: GuardedSession | None


class Authenticator:
    """Validates tokens and applies rate limits; one per API process (in ``ApiState``)."""

    def __init__(self, state: KeyStores) -> None:
        self.state = state
        self.script = state.redis.register_script(AUTH_AND_LIMIT_LUA)
        self.known: dict[str, _Known] = {}
        self.local_limit = LocalGcra()
        self.failures = FailureThrottle(state.settings.auth.failed_auth_per_s, state.settings.auth.failed_auth_burst)
        self._select: PreparedStatement | None = None

    async def _load(self, key_id: str) -> KeyRecord | None:
        """The key's row from Cassandra; raises DependencyUnavailable when Cassandra cannot answer."""
        st = self.state
        if st.cassandra is None:
            raise DependencyUnavailable("cassandra", "API key store unavailable; retry shortly")
        try:
            if self._select is None:
                self._select = st.cassandra.prepare(SELECT_CQL)
            rows = await cassandra_execute(st.cassandra, self._select.bind((key_id,)), timeout=1.0)
        except (DependencyUnavailable, *CASSANDRA_OUTAGE) as exc:
            raise DependencyUnavailable("cassandra", "API key store unavailable; retry shortly") from exc
        row = rows[0] if rows else None
        return KeyRecord.from_row(row, st.settings) if row is not None else None

    async def check(self, token: str | None, client: str | None) -> Principal:
        """``authenticate`` behind the failure throttle: a client address or key id that failed too
        often lately is answered 429 at once; a 401 counts against both."""
        key_id = parse_token(token) if token else None
        subjects = (f"a:{client or '-'}",) + ((f"k:{key_id}",) if key_id else ())
        wait = self.failures.blocked(*subjects)
        if wait > 0:
            raise HTTPException(429, "too many failed authentication attempts; retry later",
                                headers={"Retry-After": retry_after_header(wait)})
        if token is None or key_id is None:
            self.failures.failed(*subjects)
            raise unauthorized()
        try:
            return await self.authenticate(token)
        except HTTPException as exc:
            if exc.status_code == 401:
                self.failures.failed(*subjects)
            raise

    async def authenticate(self, token: str) -> Principal:
        key_id = parse_token(token)
        if key_id is None:
            raise unauthorized()
        presented = token_hash(token)
        known = self.known.get(key_id)
        if known is not None and known.principal is not None and hmac.compare_digest(known.key_hash, presented):
            now = time.monotonic()
            if known.tokens > 0 and now < known.lease_until:  # fast path: the process's lease
                known.tokens -= 1
                return known.principal
            if now < known.denied_until and now < known.lease_until:  # refused by Redis moments ago
                raise self._limited(known.rate, known.burst, retry_after_header(known.denied_until - now))
        try:
            return await self._via_redis(key_id, presented)
        except REDIS_OUTAGE:
            return await self._via_fallback(key_id, presented)

    async def _via_redis(self, key_id: str, presented: str) -> Principal:
        keys = self.state.keys
        kk = [keys.api_key(key_id), keys.api_key_rate(key_id)]
        settings = self.state.settings
        args = [presented, settings.auth.rate_limit_lease_s, MAX_LEASE]
        res = await self.script(keys=kk, args=args)
        if res[0] == -1:  # not cached: read Cassandra once, cache (negatively too), ask again
            try:
                rec = await self._load(key_id)
            except DependencyUnavailable:  # e.g. Redis restarted empty while Cassandra is down
                return await self._via_fallback(key_id, presented)
            mapping = (rec or _negative(key_id)).cache_mapping()
            ttl = self.state.settings.auth.key_cache_ttl_s if rec is not None else 60
            pipe = self.state.redis.pipeline(transaction=True)
            pipe.hset(kk[0], mapping=mapping)
            pipe.expire(kk[0], ttl)
            await pipe.execute()
            res = await self.script(keys=kk, args=args)
        code = res[0]
        if code == -1:
            raise DependencyUnavailable("redis", "API key cache unavailable; retry shortly")
        if code in (-2, -3):  # wrong token or revoked: the same answer
            self.known.pop(key_id, None)
            raise unauthorized()
        scopes = frozenset(str(res[1]).split())
        rate, burst = float(res[3]), int(res[4])
        now = time.monotonic()
        known = self.known.get(key_id)
        if known is None or known.principal is None or known.key_hash != presented or known.scopes != scopes:
            known = self.known[key_id] = _Known(presented, scopes, rate, burst, False, now,
                                                principal=Principal(key_id, "", scopes))
        known.rate, known.burst, known.revoked, known.checked_at = rate, burst, False, now
        known.lease_until = now + settings.auth.key_local_ttl_s
        if code == 0:
            retry = int(res[2]) / 1e6
            known.tokens, known.denied_until = 0, now + retry
            raise self._limited(rate, burst, retry_after_header(retry))
        known.tokens, known.denied_until = int(res[2]) - 1, 0.0  # this request takes one of the lease
        return known.principal  # type: ignore[return-value]

    @staticmethod
    def _limited(rate: float, burst: int, retry_after: str) -> HTTPException:
        return HTTPException(429, f"rate limit of {rate:g} requests/s (burst {burst}) exceeded for this key",
                             headers={"Retry-After": retry_after})

    async def _via_fallback(self, key_id: str, presented: str) -> Principal:
        """Redis is down: the local cache of keys, re-checked in Cassandra when it answers."""
        known = self.known.get(key_id)
        stale = known is None or time.monotonic() - known.checked_at > self.state.settings.api.breaker_reset_s
        if stale:
            try:
                rec = await self._load(key_id)
                known = None if rec is None else _Known(rec.key_hash, rec.scopes, rec.rate_per_s, rec.burst,
                                                        rec.revoked, time.monotonic())
                if known is None:
                    self.known.pop(key_id, None)
                else:
                    self.known[key_id] = known
            except DependencyUnavailable:
                if known is None:
                    raise
                # both stores down: keep serving keys validated before the outage
        if known is None or not hmac.compare_digest(known.key_hash, presented):
            raise unauthorized()
        if known.revoked:
            raise unauthorized()
        verdict = self.local_limit.hit(key_id, known.rate, known.burst)
        if not verdict.allowed:
            raise HTTPException(429, f"rate limit of {known.rate:g} requests/s exceeded for this key",
                                headers={"Retry-After": retry_after_header(verdict.retry_after_s)})
        return Principal(key_id, "", known.scopes)


def _negative(key_id: str) -> KeyRecord:
    return KeyRecord(key_id=key_id, name="", key_hash=UNKNOWN_HASH, scopes=frozenset(), rate_per_s=1.0, burst=1)


# ---------------------------------------------------------------------------------------------
# FastAPI dependencies

_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, scheme_name="ApiKey",
                               description="An Aura API key (`aura keys create`); or send it as a Bearer token")
_bearer = HTTPBearer(auto_error=False, scheme_name="Bearer", description="`Authorization: Bearer <API key>`")
ApiKeyHeader = Annotated[str | None, Security(_api_key_header)]
BearerHeader = Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)]
PRINCIPAL_SCOPE_KEY = "aura.principal"


async def enforce(request: Request, required: str, token: str | None) -> Principal:
    """Authenticate once per request (cached in the ASGI scope), then check ``required``."""
    return await authorize(request.app.state.aura, request.scope, required, token)


class Secured(Protocol):
    """What ``authorize`` reads from the process's state."""

    settings: Settings
    auth: Authenticator


async def authorize(state: Secured, scope: dict[str, Any], required: str, token: str | None) -> Principal:
    """``enforce`` without a Request (also used by the ASGI fast path, serving/fastpath.py)."""
    if not state.settings.auth.enabled:
        return ANONYMOUS
    principal: Principal | None = scope.get(PRINCIPAL_SCOPE_KEY)
    if principal is None:
        principal = await state.auth.check(token or None, _client(scope))
        scope[PRINCIPAL_SCOPE_KEY] = principal
    if not covers(principal.scopes, required):
        raise HTTPException(403, f"this API key lacks the '{required}' scope")
    return principal


def _client(scope: dict[str, Any]) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None


def token_from_headers(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The token as the security dependencies read it (X-API-Key, else ``Authorization: Bearer``),
    from raw ASGI headers."""
    bearer = None
    for name, value in headers:
        if name == b"x-api-key" and value:
            return value.decode("latin-1")
        if name == b"authorization":
            scheme, _, cred = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and cred.strip():
                bearer = cred.strip()
    return bearer


async def authenticate_scope(state: Secured, scope: dict[str, Any]) -> Principal:
    """Authenticate the request of ``scope`` from its headers (no body read) and leave the principal
    in the scope, where ``authorize`` finds it (serving/edge.py calls this before any body)."""
    if not state.settings.auth.enabled:
        principal = ANONYMOUS
    else:
        principal = await state.auth.check(token_from_headers(scope["headers"]), _client(scope))
    scope[PRINCIPAL_SCOPE_KEY] = principal
    return principal


def _token(api_key: str | None, bearer: HTTPAuthorizationCredentials | None) -> str | None:
    return api_key or (bearer.credentials if bearer is not None else None)


async def presented_token(request: Request) -> str | None:
    """The token as the routes' two security dependencies read it (X-API-Key, else a Bearer token)."""
    return _token(await _api_key_header(request), await _bearer(request))


def scoped(scope: str) -> dict[str, Any]:
    """``openapi_extra`` marking a route's scope (alternative to ``dependencies=[require_scope(...)]``)."""
    return {SCOPE_EXTRA: scope}


def require_scope(scope: str) -> params.Depends:
    """A dependency requiring ``scope``; use in ``dependencies=[...]`` or ``Annotated[Principal, ...]``."""

    async def dependency(request: Request, api_key: ApiKeyHeader = None, bearer: BearerHeader = None) -> Principal:
        return await enforce(request, scope, _token(api_key, bearer))

    dependency.__aura_scope__ = scope  # type: ignore[attr-defined]
    dependency.__name__ = f"require_{scope}"
    return Depends(dependency)


_route_scopes: dict[tuple[Any, ...], str] = {}


Overrides = dict[str, str]  # "METHOD /path" or "/path" (the router's own route path) -> scope


def route_scope(route: Any, method: str, read: str = READ, write: str = ADMIN,
                overrides: Overrides | None = None) -> str:
    """The scope a route needs for ``method``: the route's own declaration, else the group's
    override for its path, else ``read`` for GET/HEAD and the group's ``write`` for the rest."""
    # one router may sit in several apps with different policies: the policy is part of the key
    cache_key = (id(route), method, read, write, tuple(sorted(overrides.items())) if overrides else ())
    hit = _route_scopes.get(cache_key)
    if hit is not None:
        return hit
    scope = None
    for dep in getattr(route, "dependencies", None) or ():
        scope = getattr(getattr(dep, "dependency", None), "__aura_scope__", None) or scope
    if scope is None:
        scope = (getattr(route, "openapi_extra", None) or {}).get(SCOPE_EXTRA)
    if scope is None and overrides:
        path = getattr(getattr(route, "original_route", route), "path", None)
        scope = overrides.get(f"{method} {path}") or overrides.get(str(path))
    if scope is None:
        scope = read if method in READ_METHODS else write
    _route_scopes[cache_key] = scope
    return scope


def guard(write: str = ADMIN, read: str = READ, overrides: Overrides | None = None) -> params.Depends:
    """The route-group dependency ``serving/app.py`` applies at ``include_router`` time.

    ``overrides`` maps a route of the group (``"/catalog/items"`` or ``"DELETE /profiles/{user_id}"``,
    paths as the router declares them) to the scope it needs.
    """

    resolved: dict[tuple[int, str], str] = {}  # this guard's own memo: no per-request key building

    async def dependency(request: Request, api_key: ApiKeyHeader = None, bearer: BearerHeader = None) -> Principal:
        route = request.scope.get("route")
        required = resolved.get((id(route), request.method))
        if required is None:
            required = resolved[(id(route), request.method)] = route_scope(route, request.method, read, write,
                                                                            overrides)
        return await enforce(request, required, _token(api_key, bearer))

    dependency.__aura_guard__ = (read, write, overrides)  # type: ignore[attr-defined]
    return Depends(dependency)


def group_policy(route: Any) -> tuple[str, str, Overrides | None] | None:
    """(read, write, overrides) of the guard protecting ``route``, or None when the route is open."""
    for dep in getattr(route, "dependencies", None) or ():
        policy = getattr(getattr(dep, "dependency", None), "__aura_guard__", None)
        if policy is not None:
            return policy
    for dep in getattr(route, "dependencies", None) or ():
        if getattr(getattr(dep, "dependency", None), "__aura_scope__", None) is not None:
            return (READ, ADMIN, None)
    return None


def required_scope(route: Any, method: str) -> str | None:
    """The scope ``route`` (an app route context) needs for ``method``; None when it is open."""
    policy = group_policy(route)
    if policy is None:
        return None
    return route_scope(getattr(route, "original_route", route), method, *policy)

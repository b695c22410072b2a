"""The API's response micro-cache: the rendered JSON of item-keyed reads (similar items,
customers also bought, content-similar items), kept per API worker process for ``api_cache_ms``.

Storefronts ask for the same popular items' lists over and over, and those lists only change when the
stream republishes them (every ``recs_publish_interval_s`` at most) or the catalog hides an item. The
cache holds the exact bytes the route answered, keyed by (route, path parameters, validated query
parameters): the parameters as the route validated them, so ``?limit=10`` and no query string (the
default 10), or the same parameters in another order, are one entry; unknown parameters (which the
route ignores) do not split it.

Where it sits: inside the endpoint (``cached_json``), so after the route's auth guard, scope check,
rate limit and parameter validation, in the fast path (serving/fastpath.py) and under FastAPI alike
(one implementation): a caller who would get 401/403/429/422 never reaches it. Only complete answers
are kept: an exception (404, 503, ...) is never cached, nor an answer marked ``X-Aura-Degraded``.
Every answer says ``X-Aura-Cache: hit|miss``; ``aura_api_cache_total{route, result}`` counts them.

Staleness: an answer is at most ``api_cache_ms`` older than a fresh read (on top of the publisher's own
delay). ``api_cache_ms = 0`` turns it off (no header, no counter). Bounded: ``api_cache_max`` entries,
least recently used evicted first. Pure except for ``cached_json``; the clock is injectable (tests).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import Response
from pydantic import BaseModel

from serving.fallbacks import DEGRADED_HEADER
from serving.metrics import CACHE

CACHE_HEADER = "X-Aura-Cache"
Key = tuple[str, tuple[tuple[str, Any], ...]]


def cache_key(route: str, params: Mapping[str, Any]) -> Key:
    """(route, the validated parameters sorted by name): the same parameters in any order, one key."""
    return route, tuple(sorted(params.items()))


class ResponseCache:
    """A bounded LRU of response bodies, each valid ``ttl_ms`` after it was stored."""

    def __init__(self, ttl_ms: float, max_entries: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_ms / 1000.0
        self.max_entries = max(1, max_entries)
        self.clock = clock
        self.entries: OrderedDict[Key, tuple[float, bytes]] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.ttl_s > 0

    def get(self, key: Key) -> bytes | None:
        got = self.entries.get(key)
        if got is None:
            return None
        expires, body = got
        if self.clock() >= expires:
            del self.entries[key]
            return None
        self.entries.move_to_end(key)
        return body

    def put(self, key: Key, body: bytes) -> None:
        self.entries[key] = (self.clock() + self.ttl_s, body)
        self.entries.move_to_end(key)
        while len(self.entries) > self.max_entries:
            self.entries.popitem(last=False)


def response_cache(state: Any) -> ResponseCache:
    """The process's cache (built on first use from the settings)."""
    cache = getattr(state, "response_cache", None)
    if cache is None:
        s = state.settings
        cache = ResponseCache(s.api.cache_ms, s.api.cache_max)
        if hasattr(state, "response_cache"):
            state.response_cache = cache
    return cache


def json_response(body: bytes, headers: list[tuple[bytes, bytes]]) -> Response:
    response = Response(content=body, media_type="application/json")
    response.headers.raw.extend(headers)
    return response


async def cached_json(state: Any, route: str, params: Mapping[str, Any],
                      render: Callable[[Response], Awaitable[BaseModel]]) -> Response:
    """The route's answer from the cache, else ``render``'s (given a sub-response for headers such as
    ``X-Aura-Degraded``) as the route's JSON bytes, kept unless degraded. Exceptions pass through."""
    cache = response_cache(state)
    key = cache_key(route, params)
    if cache.enabled:
        body = cache.get(key)
        if body is not None:
            CACHE.labels(route, "hit").inc()
            return json_response(body, [(b"x-aura-cache", b"hit")])
    sub = Response()
    model = await render(sub)
    body = model.model_dump_json(by_alias=True).encode()  # what FastAPI's response model would send
    extra = [(n, v) for n, v in sub.headers.raw if n not in (b"content-length", b"content-type")]
    if not cache.enabled:
        return json_response(body, extra)
    if DEGRADED_HEADER not in sub.headers:
        cache.put(key, body)
    CACHE.labels(route, "miss").inc()
    return json_response(body, [*extra, (b"x-aura-cache", b"miss")])

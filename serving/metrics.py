"""Prometheus metrics of the API process and the edge middleware that records them.

Owns the process's metric objects (default registry, created once at import so several apps in
one process, as in tests, share them): request latency per route template, responses per status
class, degraded answers; the dead-letter and intake counters that the stream keeps in Redis are
read at scrape time. ``aura api --workers N`` (N > 1) sets ``PROMETHEUS_MULTIPROC_DIR`` so that a
scrape, whichever worker answers it, sums every worker (prometheus-client multiprocess mode).

The middleware is plain ASGI (no BaseHTTPMiddleware: that costs ~100 us a request). It also
refuses bodies larger than ``max_body_bytes`` with a JSON 413: at once when Content-Length says
so, else (chunked) by counting while the app reads and cutting the stream when it runs over.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import REGISTRY, Collector

from aura.settings import Settings

REQUEST_LATENCY = Histogram(
    "aura_http_request_duration_seconds", "API request latency by route template",
    ["method", "route"],
    buckets=(0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
RESPONSES = Counter("aura_http_responses_total", "API responses by status class", ["method", "route", "status"])
DEGRADED = Counter("aura_http_degraded_total", "Answers served in a degraded mode", ["reason"])
CACHE = Counter("aura_api_cache_total", "Response micro-cache lookups (serving/respcache.py) by route and result",
                ["route", "result"])
BREAKER_OPEN = Gauge("aura_breaker_open", "1 while a dependency's circuit breaker is open (max over workers)",
                     ["dependency"], multiprocess_mode="max")

_stream_counters: dict[str, dict[str, int]] = {"deadletter": {}, "intake": {}}


class StreamCounters(Collector):
    """Dead letters and intake counts as the stream keeps them in Redis (refreshed per scrape)."""

    def collect(self) -> Any:
        dl = CounterMetricFamily("aura_deadletters", "Dead-lettered records by reason", labels=["reason"])
        for reason, n in sorted(_stream_counters["deadletter"].items()):
            dl.add_metric([reason], n)
        yield dl
        intake = CounterMetricFamily("aura_intake_records", "Behavior intake outcomes", labels=["outcome"])
        for outcome, n in sorted(_stream_counters["intake"].items()):
            intake.add_metric([outcome], n)
        yield intake


if not getattr(REGISTRY, "_aura_stream_counters", False):
    REGISTRY.register(StreamCounters())
    REGISTRY._aura_stream_counters = True  # type: ignore[attr-defined]


async def refresh_stream_counters(state: Any) -> None:
    """Read the stream's counters from Redis (best effort: stale values stay on a Redis outage)."""
    pipe = state.redis.pipeline(transaction=False)
    pipe.hgetall(state.keys.deadletter_count())
    pipe.hgetall(state.keys.intake_count())
    dl, intake = await pipe.execute()
    _stream_counters["deadletter"] = {k: int(v) for k, v in (dl or {}).items()}
    _stream_counters["intake"] = {k: int(v) for k, v in (intake or {}).items()}


def exposition(state: Any) -> bytes:
    for name, breaker in state.breakers.all().items():
        BREAKER_OPEN.labels(name).set(1 if breaker.opened_at is not None else 0)
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        registry.register(StreamCounters())
        return generate_latest(registry)
    return generate_latest(REGISTRY)


def prepare_multiprocess_dir(s: Settings) -> Path:
    """An empty directory for prometheus-client's multiprocess mode (``aura api --workers N``)."""
    path = Path(s.home) / "run" / f"prometheus-{s.api.port}-{os.getpid()}"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def route_label(scope: dict[str, Any]) -> str:
    """The matched route template with its prefixes (``/v1/profiles/{user_id}``), not the raw path."""
    ctx = (scope.get("fastapi") or {}).get("effective_route_context")
    path = getattr(ctx, "path_format", None)
    if path is None:
        route = scope.get("route")
        path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return path or "unmatched"


_STATUS_CLASS = {1: "1xx", 2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}
_children: dict[tuple[str, str, str], tuple[Any, Any]] = {}  # labels() looked up once per route and status


def _observe(method: str, route: str, status: int, seconds: float) -> None:
    status_class = _STATUS_CLASS.get(status // 100, "5xx")
    key = (method, route, status_class)
    pair = _children.get(key)
    if pair is None:
        if len(_children) > 10_000:  # bounded: routes are templates, but be safe
            _children.clear()
        pair = _children[key] = (REQUEST_LATENCY.labels(method, route), RESPONSES.labels(method, route, status_class))
    pair[0].observe(seconds)
    pair[1].inc()


class EdgeMiddleware:
    """Latency and status metrics for every request; early JSON 413 for oversized bodies."""

    def __init__(self, app: Any, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_big_body = b'{"detail":"request body larger than %d bytes"}' % self.max_body_bytes
        sized = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                sized = True
                try:
                    too_big = int(value) > self.max_body_bytes
                except ValueError:
                    too_big = False
                if too_big:
                    await _send_json(send, 413, too_big_body)
                    RESPONSES.labels(scope["method"], "unmatched", "4xx").inc()
                    return
                break
        started = time.perf_counter()
        status = 500
        degraded: list[str] = []
        received = 0
        overflow = False
        replaced = False
        started_response = False

        async def counting_receive() -> dict[str, Any]:
            nonlocal received, overflow
            if overflow:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:  # stop reading; the app sees a disconnect
                    overflow = True
                    return {"type": "http.disconnect"}
            return message

        async def send_wrapper(message: dict[str, Any]) -> None:
            nonlocal status, replaced, started_response
            if replaced:
                return
            if message["type"] == "http.response.start":
                if overflow:  # a chunked body ran over: answer the same JSON 413 whatever the app said
                    replaced = True
                    status = 413
                    await _send_json(send, 413, too_big_body)
                    return
                status = message["status"]
                started_response = True
                for name, value in message.get("headers", ()):
                    if name == b"x-aura-degraded":
                        degraded.append(value.decode())
            await send(message)

        try:
            await self.app(scope, receive if sized or scope["method"] in ("GET", "HEAD") else counting_receive,
                           send_wrapper)
        except Exception:
            if not overflow:
                raise
        finally:
            if overflow and not replaced and not started_response:
                replaced = True
                status = 413
                await _send_json(send, 413, too_big_body)
            _observe(scope["method"], route_label(scope), status, time.perf_counter() - started)
            for reason in degraded:
                DEGRADED.labels(reason).inc()


async def _send_json(send: Any, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})



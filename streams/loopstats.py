"""Where a behavior batch's time goes: cheap in-process timings of the worker's event loop.

Owns no stored state: per-worker samples (milliseconds) that the behavior agent, the loop-lag probe
and the timers record, summarised (count, p50, p99, max per name) and logged at INFO every
``interval`` seconds by ``register`` (logger ``streams.loopstats``), then reset. Used to find what
a freshness probe waits for:

* ``age_oldest`` / ``age_newest``: batch start minus the oldest / newest event_time of the batch
  (produce -> the batch begins; the clocks of producer and worker are the same machine's),
* ``take_gap``: end of the previous batch -> start of this one (the take window's wait),
* ``intake``, ``owner:<name>``, ``batch``: decode+dedup, each owner's step, the whole batch,
* ``visible``: batch start -> the profile owner's Redis commit (when the API can see the batch),
* ``loop_lag``: how late a 20 ms sleep wakes up (what holds the loop: timers, CPU-bound steps),
* ``timer:<name>``: duration of each timer run (``timed``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

LAG_TICK_S = 0.02


class Recorder:
    """Samples in milliseconds by name, kept until the next ``summary``."""

    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = {}
        self.enabled = False  # set by ``register``: nothing is kept unless something summarises it

    def add(self, name: str, ms: float) -> None:
        if self.enabled:
            self.samples.setdefault(name, []).append(ms)

    def summary(self, reset: bool = True) -> dict[str, tuple[int, float, float, float]]:
        """name -> (count, p50, p99, max), nearest-rank percentiles."""
        out = {}
        for name, xs in sorted(self.samples.items()):
            if not xs:
                continue
            s = sorted(xs)
            out[name] = (len(s), s[(len(s) - 1) // 2], s[min(len(s) - 1, int(len(s) * 0.99))], s[-1])
        if reset:
            self.samples = {}
        return out

    @staticmethod
    def format(summary: dict[str, tuple[int, float, float, float]]) -> str:
        return "; ".join(f"{k} n={n} p50={p50:.0f} p99={p99:.0f} max={mx:.0f}"
                         for k, (n, p50, p99, mx) in summary.items())


STATS = Recorder()  # one per worker process


def timed(name: str) -> Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]]:
    """Decorator: record the duration of each run of an async function as ``timer:<name>``."""

    def wrap(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        @functools.wraps(fn)
        async def run(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                STATS.add(f"timer:{name}", (time.perf_counter() - t0) * 1000)

        return run

    return wrap


async def loop_lag(stop: asyncio.Event | None = None) -> None:
    """Record how late each ``LAG_TICK_S`` sleep wakes (the loop was busy for that long)."""
    while stop is None or not stop.is_set():
        t0 = time.perf_counter()
        await asyncio.sleep(LAG_TICK_S)
        STATS.add("loop_lag", max(0.0, (time.perf_counter() - t0 - LAG_TICK_S) * 1000))


def register(app: Any, interval_s: float) -> None:
    """The loop-lag probe and the periodic summary line (``interval_s`` <= 0: neither)."""
    if interval_s <= 0:
        return
    STATS.enabled = True

    @app.task
    async def probe_loop_lag() -> None:
        await loop_lag()

    @app.timer(interval=interval_s, name="log_loop_stats")
    async def log_loop_stats() -> None:
        summary = STATS.summary()
        if summary:
            log.info("loop stats (ms, last %.0f s): %s", interval_s, Recorder.format(summary))

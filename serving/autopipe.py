"""Automatic pipelining of the API's Redis commands: the commands that concurrent requests
send in the same turn of the event loop go to Redis as ONE pipeline.

Owns the per-process queue of commands waiting for their batch. A command sent on its own costs
redis-py's asyncio client a connection taken from the pool and given back, a write and a read
syscall and an event-loop wake-up; in a pipeline those are shared by its commands. Under load a
worker has tens of requests in flight, each waiting on one Redis call, so
coalescing them cuts the client's share of a request and Redis' own per-call overhead (fewer reads
and writes). At low load nothing waits: the batch is flushed by ``loop.call_soon``, after the
callbacks already ready in this turn (the other requests' steps), and a batch of one is sent as a
plain command.

Each command keeps its own answer: the pipeline runs with ``raise_on_error=False``, parses every reply
with the command's own callbacks and options (redis-py's ``parse_response``), and a command's error
reply (``NOSCRIPT``, ``WRONGTYPE``...) is raised to that command's caller alone; a connection error
or timeout is raised to every caller in the batch (each then degrades as it would have alone).
Transactions, blocking commands and commands that change the connection's state are never batched
(``batchable``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

# never in a shared pipeline: connection state, transactions, blocking reads, pub/sub
UNBATCHABLE = frozenset({
    "WATCH", "UNWATCH", "MULTI", "EXEC", "DISCARD", "SELECT", "AUTH", "HELLO", "CLIENT", "RESET", "QUIT",
    "BLPOP", "BRPOP", "BRPOPLPUSH", "BLMOVE", "BLMPOP", "BZPOPMIN", "BZPOPMAX", "BZMPOP", "WAIT", "WAITAOF",
    "SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "UNSUBSCRIBE", "PUNSUBSCRIBE", "SUNSUBSCRIBE", "MONITOR",
})
MAX_BATCH = 512  # commands per pipeline (a larger backlog is sent as several pipelines at once)

Pending = tuple[tuple[Any, ...], dict[str, Any], "asyncio.Future[Any]"]


def batchable(args: tuple[Any, ...]) -> bool:
    """Whether a command may share a pipeline with other callers' commands."""
    if not args:
        return False
    name = args[0]
    name = (name.decode() if isinstance(name, bytes) else str(name)).upper()
    if name in UNBATCHABLE:
        return False
    if name in ("XREAD", "XREADGROUP"):
        return not any(isinstance(a, str | bytes) and (a.decode() if isinstance(a, bytes) else a).upper() == "BLOCK"
                       for a in args[1:])
    return True


class AutoPipeline:
    """Collects commands during one turn of the event loop and sends them as pipelines.

    ``single`` sends one command as usual (the client's own ``execute_command``); ``pipeline`` makes
    an empty non-transactional pipeline of the same client (breaker included)."""

    def __init__(self, single: Callable[..., Awaitable[Any]], pipeline: Callable[[], Any],
                 max_batch: int = MAX_BATCH) -> None:
        self.single = single
        self.pipeline = pipeline
        self.max_batch = max_batch
        self.pending: list[Pending] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.batches = 0  # pipelines and single sends, and the commands they carried (for tests/metrics)
        self.commands = 0

    def submit(self, args: tuple[Any, ...], options: dict[str, Any]) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        if not self.pending:
            loop.call_soon(self.flush)
        self.pending.append((args, options, fut))
        return fut

    def flush(self) -> None:
        pending, self.pending = self.pending, []
        for start in range(0, len(pending), self.max_batch):
            task = asyncio.ensure_future(self.send(pending[start:start + self.max_batch]))
            self.tasks.add(task)  # (a reference until it ends: the loop keeps only weak ones)
            task.add_done_callback(self.tasks.discard)

    async def send(self, batch: list[Pending]) -> None:
        self.batches += 1
        self.commands += len(batch)
        try:
            if len(batch) == 1:  # alone: a plain command (its error reply raises, and is handed on below)
                args, options, _fut = batch[0]
                results = [await self.single(*args, **options)]
            else:
                pipe = self.pipeline()
                for args, options, _fut in batch:
                    pipe.execute_command(*args, **options)
                results = await pipe.execute(raise_on_error=False)
        except BaseException as exc:  # noqa: BLE001 - every caller in the batch gets it, whatever it is
            for _a, _o, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_a, _o, fut), result in zip(batch, results, strict=True):
            if fut.done():  # the caller went away (its request was cancelled)
                continue
            if isinstance(result, Exception):
                fut.set_exception(result)
            else:
                fut.set_result(result)

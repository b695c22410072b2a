"""The liveness watchdog: a worker process that is up but no longer folding is replaced.

Two ways a worker stays up and folds nothing, seen with Faust over aiokafka:

* **Out of its consumer group.** The process stalls longer than the session timeout (a frozen VM, a
  swap storm, SIGSTOP, a blocked event loop; Faust logs "AIOKafkaConsumerThread keepalive is not
  responding"): the broker drops the member and gives its partitions to others. On waking, aiokafka's
  coordinator resets its generation and should rejoin, but its rejoin is skipped while its fetcher
  has been idle longer than ``max_poll_interval`` ("We will not attempt rejoin if there is no activity
  on consumer", ``GroupCoordinator.ensure_active_group``), and Faust, having no partitions left, may
  not fetch: the two wait for each other and nothing is assigned again until a restart.
* **A blocked event loop**: every agent, timer and commit waits behind it.

The watchdog is a daemon thread (it runs while the event loop is blocked) that looks every
``tick_s`` at (1) whether the process is a member of its group (aiokafka's coordinator holds a
generation: ``member_id`` and ``generation`` set; a member with no partitions, as in a group with more
processes than partitions, is a member) and (2) when the event loop last ran (a task beats every
second). Out of the group, or no beat, for ``AURA_WORKER_STALL_S`` seconds: the process is replaced
as on a Redis loss (streams/redisloss.py ``replace_process``, ``AURA_REDIS_LOSS_ACTION``: re-executed
under the same process id, or exit status 75 for a supervisor). Nothing is committed on the way; the
new process starts from the group's committed offsets and the owners' fences skip what was applied,
as after a SIGKILL. Time the whole process spent suspended (the watchdog's own tick came late) does
not count: after a SIGCONT the consumer gets the same ``stall_s`` to rejoin by itself.

A hand-made check rather than a library: the state read is Faust's and aiokafka's own (the consumer
thread's ``_consumer._coordinator``, as Faust reads it), and no supervisor sees inside the process.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from streams.redisloss import replace_process

log = logging.getLogger(__name__)

BEAT_S = 1.0  # the event loop's beat
UNKNOWN_MEMBER = ""  # aiokafka's JoinGroupRequest.UNKNOWN_MEMBER_ID
NO_GENERATION = -1  # aiokafka's OffsetCommitRequest.DEFAULT_GENERATION_ID


class Liveness:
    """The watchdog's decision over plain clock readings (no threads, no Kafka: tested as is)."""

    def __init__(self, stall_s: float, now: float, tick_s: float | None = None) -> None:
        self.stall_s = stall_s
        self.tick_s = tick_s if tick_s is not None else max(min(5.0, stall_s / 4), 0.05)
        self.loop_at = now  # the event loop's last beat
        self.tick_at = now  # the watchdog's last check
        self.out_since: float | None = None  # first check that found the process out of its group

    def beat(self, now: float) -> None:
        self.loop_at = now

    def check(self, now: float, member: bool | None) -> str | None:
        """One check at ``now``; ``member``: whether the consumer holds a generation (None: no
        consumer yet). Returns why the process must be replaced, or None."""
        if now - self.tick_at > 2 * self.tick_s + 1.0:  # the whole process was suspended: that time
            self.loop_at = max(self.loop_at, now)  # is no one's fault; a fresh window from here
            if self.out_since is not None:
                self.out_since = now
        self.tick_at = now
        if member is False:
            self.out_since = now if self.out_since is None else self.out_since
        else:
            self.out_since = None
        if self.out_since is not None and now - self.out_since >= self.stall_s:
            return f"out of its consumer group for {now - self.out_since:.0f} s (it was dropped and did not rejoin)"
        if now - self.loop_at >= self.stall_s:
            return f"its event loop has not run for {now - self.loop_at:.0f} s"
        return None


def membership(app: Any) -> bool | None:
    """Whether ``app``'s aiokafka consumer is a member of its group (None: no consumer started yet)."""
    try:
        coordinator = app.consumer._thread._consumer._coordinator
    except AttributeError:
        return None
    if coordinator is None:
        return None
    return coordinator.member_id != UNKNOWN_MEMBER and coordinator.generation != NO_GENERATION


class Watchdog(threading.Thread):
    """Checks ``liveness`` every tick with ``member()``; calls ``on_stall(reason)`` once when stalled."""

    def __init__(self, liveness: Liveness, member: Callable[[], bool | None], on_stall: Callable[[str], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(name="aura-liveness", daemon=True)
        self.liveness, self.member, self.on_stall, self.clock = liveness, member, on_stall, clock
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.liveness.tick_s):
            try:
                member = self.member()
            except Exception as exc:  # noqa: BLE001 - a consumer being rebuilt: unknown this time
                log.debug("liveness: membership unreadable (%s)", exc)
                member = None
            reason = self.liveness.check(self.clock(), member)
            if reason is not None:
                self.stopped.set()
                self.on_stall(reason)


def register(app: Any, res: Any) -> list[Any]:
    """Start the watchdog with the worker (``AURA_WORKER_STALL_S``; 0: off)."""
    s = res.settings
    stall_s = s.worker.stall_s
    if stall_s <= 0:
        return []
    action = s.worker.redis_loss_action

    def stalled(reason: str) -> None:
        log.error("worker of group %s is %s: replacing the process (%s); it starts again from the group's "
                  "committed offsets", app.conf.id, reason, action)
        replace_process(action)

    @app.task
    async def liveness_watch() -> None:
        live = Liveness(stall_s, time.monotonic())
        Watchdog(live, lambda: membership(app), stalled).start()
        while True:
            live.beat(time.monotonic())
            await asyncio.sleep(BEAT_S)

    return []

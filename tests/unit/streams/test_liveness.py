"""The liveness watchdog's decision (streams/liveness.py) over plain clock readings, and its thread
with a fake membership reading (the real stall, against Kafka: tests/e2e/test_worker_stall.py)."""

from __future__ import annotations

import threading
from types import SimpleNamespace

from streams.liveness import Liveness, Watchdog, membership


def ticks(live: Liveness, start: float, end: float, member: bool | None, beat: bool = True) -> list[str]:
    """Checks every tick from ``start`` to ``end`` (the loop beating when ``beat``); the reasons given."""
    out, t = [], start
    while t <= end:
        if beat:
            live.beat(t)
        reason = live.check(t, member)
        if reason:
            out.append(reason)
        t += live.tick_s
    return out


def test_a_member_with_a_running_loop_is_never_replaced():
    live = Liveness(20.0, 0.0)
    assert live.tick_s == 5.0
    assert ticks(live, 5.0, 1000.0, True) == []
    assert ticks(live, 1005.0, 2000.0, None) == []  # no consumer yet (starting): not out of the group


def test_out_of_the_group_for_stall_s_is_replaced_and_a_rejoin_resets_the_count():
    live = Liveness(20.0, 0.0)
    assert ticks(live, 5.0, 20.0, False) == []  # 15 s out
    assert ticks(live, 25.0, 25.0, True) == []  # rejoined: the count starts again
    assert ticks(live, 30.0, 45.0, False) == []
    got = ticks(live, 50.0, 50.0, False)
    assert len(got) == 1 and "out of its consumer group for 20 s" in got[0]


def test_a_blocked_loop_is_replaced():
    live = Liveness(20.0, 0.0)
    live.beat(3.0)
    assert ticks(live, 5.0, 20.0, True, beat=False) == []
    got = ticks(live, 25.0, 25.0, True, beat=False)
    assert len(got) == 1 and "event loop has not run for 22 s" in got[0]


def test_time_the_whole_process_was_suspended_does_not_count():
    live = Liveness(20.0, 0.0)
    live.beat(5.0)
    assert live.check(5.0, True) is None
    # SIGSTOP for 500 s: the watchdog's own tick comes late; the loop and the consumer get a fresh window
    assert live.check(505.0, False) is None
    assert ticks(live, 510.0, 520.0, False) == []
    got = ticks(live, 525.0, 525.0, False)
    assert got and "out of its consumer group" in got[0]
    # the same, with the loop still blocked after the wake-up
    live = Liveness(20.0, 0.0)
    assert live.check(300.0, True) is None
    assert ticks(live, 305.0, 315.0, True, beat=False) == []
    assert ticks(live, 320.0, 320.0, True, beat=False)


def test_membership_reads_aiokafkas_coordinator():
    def app(member_id: str, generation: int) -> SimpleNamespace:
        coordinator = SimpleNamespace(member_id=member_id, generation=generation)
        return SimpleNamespace(consumer=SimpleNamespace(_thread=SimpleNamespace(
            _consumer=SimpleNamespace(_coordinator=coordinator))))

    assert membership(app("faust-1", 4)) is True
    assert membership(app("", -1)) is False  # reset: dropped by the broker or left
    assert membership(app("faust-1", -1)) is False
    assert membership(SimpleNamespace(consumer=SimpleNamespace(_thread=SimpleNamespace(_consumer=None)))) is None


def test_the_watchdog_thread_calls_once_when_stalled():
    now = [0.0]
    live = Liveness(1.0, 0.0, tick_s=0.01)
    called: list[str] = []
    done = threading.Event()

    def clock() -> float:
        now[0] += 0.01  # a clock that advances one tick per check
        return now[0]

    def on_stall(reason: str) -> None:
        called.append(reason)
        done.set()

    dog = Watchdog(live, lambda: True, on_stall, clock=clock)  # a member, but no loop beats
    dog.start()
    assert done.wait(30)
    dog.join(30)
    assert not dog.is_alive() and len(called) == 1 and "event loop has not run" in called[0]

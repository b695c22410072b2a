"""The local stack without Docker: ``up``, ``down``, ``kill``, ``status`` and ``reset`` of Kafka,
Cassandra and Redis, and the ``aura stack`` command over them.

Owns the orchestration only: which services to start, waiting until each answers, stopping what
this stack started, wiping data. The files under ``Settings.home`` and the processes are handled by
infra/host.py, each service's configuration and probes by infra/services.py; the names callers use
(``StackError``, ``Paths``, ``SERVICES``, ...) are re-exported here.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import time

from aura.settings import Settings, get_settings
from infra.host import (
    INFRA_DIR,
    Paths,
    StackError,
    apt_install,
    java_major_version,
    log_tail,
    pid_alive,
    port_in_use,
    read_pid,
    reap,
    require_java17,
    resolve_classpath,
    say,
    spawn,
    stop_pid,
)
from infra.services import (
    SERVICE_TABLE,
    SERVICES,
    Service,
    cassandra_yaml,
    ensure_redis_server,
    kafka_properties,
)

__all__ = [
    "INFRA_DIR", "SERVICES", "SERVICE_TABLE", "Paths", "Service", "StackError", "apt_install", "cassandra_yaml",
    "down", "ensure_redis_server", "java_major_version", "kafka_properties", "kill", "log_tail", "main",
    "pid_alive", "port_in_use", "read_pid", "require_java17", "reset", "resolve_classpath", "spawn", "status",
    "up",
]


def up(s: Settings, services: tuple[str, ...] = SERVICES) -> dict[str, float]:
    """Start what is not running and wait until each service answers; idempotent.

    Returns the seconds each service took to become ready (0.0 when it already was).
    """
    paths = Paths(s.home, s.stack.maven_repo)
    if any(name in ("kafka", "cassandra") for name in services):
        require_java17()
    started_at = time.monotonic()
    pending: dict[str, int | None] = {}
    began: dict[str, float] = {}
    for name in services:
        began[name] = time.monotonic()
        svc = SERVICE_TABLE[name]
        pid = read_pid(paths, name)
        if pid is not None:
            pending[name] = pid
            continue
        if port_in_use(svc.port(s)):
            if svc.ready(s):
                if name == "redis":
                    say(f"redis: reusing the server already answering on port {svc.port(s)}")
                    pending[name] = None
                    continue
                raise StackError(
                    f"{name}: port {svc.port(s)} answers but not from a process this stack started "
                    f"(pid file {paths.pid(name)} missing); stop it or set another port")
            raise StackError(f"{name}: port {svc.port(s)} is taken by another process; free it or "
                             "configure another port (see README, Configuration)")
        began[name] = time.monotonic()
        pending[name] = svc.start(s, paths)
        say(f"{name}: started (pid {pending[name]}), log {paths.log(name)}")
    timings: dict[str, float] = {}
    deadline = started_at + s.stack.start_timeout_s
    waiting = dict(pending)
    while waiting:
        for name in list(waiting):
            pid = waiting[name]
            if SERVICE_TABLE[name].ready(s):
                timings[name] = time.monotonic() - began[name]
                say(f"{name}: ready in {timings[name]:.1f}s")
                del waiting[name]
            elif pid is not None and not pid_alive(pid):
                reap(pid)
                raise StackError(f"{name} died on start; last lines of {paths.log(name)}:\n"
                                 f"{log_tail(paths, name)}")
        if waiting and time.monotonic() > deadline:
            names = ", ".join(waiting)
            tails = "\n".join(f"--- {n}:\n{log_tail(paths, n, 20)}" for n in waiting)
            raise StackError(f"not ready after {s.stack.start_timeout_s:.0f}s: {names}\n{tails}")
        if waiting:
            time.sleep(0.5)
    return timings


def down(s: Settings, services: tuple[str, ...] = SERVICES) -> None:
    """Stop every process this stack started (SIGTERM, then SIGKILL after a grace period)."""
    paths = Paths(s.home, s.stack.maven_repo)
    for name in services:
        pid = read_pid(paths, name)
        if pid is None:
            paths.pid(name).unlink(missing_ok=True)
            continue
        say(f"{name}: stopping pid {pid}")
        stop_pid(pid, timeout_s=30.0)
        paths.pid(name).unlink(missing_ok=True)


def kill(s: Settings, service: str) -> None:
    """SIGKILL one service (crash simulation for recovery tests)."""
    paths = Paths(s.home, s.stack.maven_repo)
    pid = read_pid(paths, service)
    if pid is None:
        raise StackError(f"{service} is not running")
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    for _ in range(100):
        reap(pid)
        if not pid_alive(pid):
            break
        time.sleep(0.05)


def status(s: Settings) -> dict[str, dict[str, object]]:
    paths = Paths(s.home, s.stack.maven_repo)
    report: dict[str, dict[str, object]] = {}
    for name, svc in SERVICE_TABLE.items():
        pid = read_pid(paths, name)
        report[name] = {"pid": pid, "port": svc.port(s), "answers": svc.ready(s), "log": str(paths.log(name))}
    return report


def reset(s: Settings) -> None:
    """Stop the stack and wipe its data (the Maven cache stays)."""
    down(s)
    paths = Paths(s.home, s.stack.maven_repo)
    for name in SERVICES:
        shutil.rmtree(paths.data(name), ignore_errors=True)
    say(f"data wiped under {paths.home / 'data'}")


def main(argv: list[str]) -> int:
    s = get_settings()
    cmd = argv[0] if argv else "status"
    try:
        if cmd == "up":
            timings = up(s)
            say("all services ready: " + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()))
            say(f"logs: {Paths(s.home, s.stack.maven_repo).home / 'logs'}")
        elif cmd == "down":
            down(s)
        elif cmd == "reset":
            reset(s)
        elif cmd == "status":
            for name, info in status(s).items():
                state = "up" if info["answers"] else "down"
                say(f"{name:<10} {state:<5} pid={info['pid']} port={info['port']} log={info['log']}")
        else:
            say(f"unknown command {cmd!r}; use up | down | status | reset")
            return 2
    except StackError as exc:
        say(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

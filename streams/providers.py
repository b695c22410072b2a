"""The connectors' view of a delivery provider: a circuit breaker per provider and a pool of
persistent SMTP connections. Owns no stored state (the send records are streams/connectors.py's).

- ``Breaker``: after ``failures`` consecutive transient failures the provider is *open*: every
  message to it waits (nothing is dropped: the outbox partition is held, the messages stay
  unacknowledged) while one probe at a time tries it after a cool-down that doubles up to
  ``max_open_s``; the probe's success closes it and wakes every waiter at once. So a provider that is
  down costs one attempt per cool-down instead of one per message and backoff, and its recovery is
  seen within one cool-down. Each provider (the SMTP server, the webhook URL, the in-app inbox) has
  its own breaker and each channel its own outbox topic and agent: a provider that is down never
  holds back the messages of another.
- ``SmtpPool``: up to ``size`` open SMTP connections (aiosmtplib), each sending many messages
  (MAIL / RCPT / DATA on one session) instead of a connection, EHLO and QUIT per message. A
  connection that fails is closed and replaced; one that the server closed while idle is reopened
  once before the failure counts. aiosmtplib keeps no pool of its own; this one is small enough
  not to warrant another dependency.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from email.message import Message

import aiosmtplib

log = logging.getLogger(__name__)


class Breaker:
    """Closed -> (``failures`` transient failures in a row) open -> (cool-down) one probe -> closed on
    success, open again with a doubled cool-down on failure."""

    def __init__(self, name: str, failures: int = 5, first_open_s: float = 0.2, max_open_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name, self.threshold, self.first_open_s, self.max_open_s = name, max(1, failures), first_open_s, max_open_s
        self.clock = clock
        self.failed = 0  # consecutive transient failures
        self.open_s = first_open_s
        self.opened_at: float | None = None  # None: closed
        self.probing = False
        self.changed = asyncio.Event()  # set (and replaced) on every change of state: wakes the waiters
        self.opens = 0  # times it opened (logs, tests)

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half_open" if self.probing else "open"

    def probe_due(self) -> float:
        """Seconds until the next probe may go (0: now); only meaningful when open."""
        return 0.0 if self.opened_at is None else max(0.0, self.opened_at + self.open_s - self.clock())

    def try_probe(self) -> bool:
        """Whether the caller may send now: always when closed; when open, the one caller that takes
        the probe once the cool-down has passed."""
        if self.opened_at is None:
            return True
        if self.probing or self.probe_due() > 0:
            return False
        self.probing = True
        return True

    async def admit(self) -> None:
        """Wait until this caller may send (closed, or its turn to probe)."""
        while not self.try_probe():
            changed = self.changed
            wait = self.probe_due() if not self.probing else self.max_open_s
            try:
                await asyncio.wait_for(changed.wait(), timeout=max(wait, 0.01))
            except TimeoutError:
                pass

    def notify(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()

    def abandon(self) -> None:
        """The caller admitted stopped without an answer (cancelled): another may probe."""
        if self.probing:
            self.probing = False
            self.notify()

    def success(self) -> None:
        """The provider answered (accepted, or refused for good: it is up either way)."""
        if self.opened_at is not None:
            log.warning("provider %s is back: breaker closed after %d failures", self.name, self.failed)
        was = self.opened_at is not None
        self.failed, self.open_s, self.opened_at, self.probing = 0, self.first_open_s, None, False
        if was:
            self.notify()

    def failure(self) -> None:
        """A transient failure (the provider is unreachable, timed out or said try later)."""
        self.failed += 1
        if self.opened_at is not None:  # the probe failed: wait longer
            self.open_s = min(self.open_s * 2, self.max_open_s)
            self.opened_at, self.probing = self.clock(), False
            self.notify()
            return
        if self.failed >= self.threshold:
            self.opened_at, self.probing = self.clock(), False
            self.opens += 1
            self.notify()
            log.warning("provider %s failed %d times in a row: breaker open", self.name, self.failed)


class SmtpPool:
    """Persistent SMTP connections to one server, at most ``size`` in use at once."""

    def __init__(self, host: str, port: int, timeout_s: float, size: int = 8) -> None:
        self.host, self.port, self.timeout_s, self.size = host, port, timeout_s, max(1, size)
        self.gate = asyncio.Semaphore(self.size)
        self.idle: list[aiosmtplib.SMTP] = []
        self.opened = 0  # connections opened (benchmarks, tests)

    async def connect(self) -> aiosmtplib.SMTP:
        conn = aiosmtplib.SMTP(hostname=self.host, port=self.port, timeout=self.timeout_s, use_tls=False,
                               start_tls=False, local_hostname="aura.local")  # no getfqdn() per connection
        await conn.connect()
        self.opened += 1
        return conn

    async def send(self, msg: Message) -> None:
        """Send ``msg`` on a pooled connection; raises what aiosmtplib raises (the caller classifies)."""
        async with self.gate:
            conn = self.idle.pop() if self.idle else None
            reused = conn is not None
            if conn is None or not conn.is_connected:
                conn, reused = await self.connect(), False
            try:
                try:
                    await conn.send_message(msg)
                except (aiosmtplib.SMTPServerDisconnected, ConnectionError):
                    if not reused:
                        raise
                    self.discard(conn)  # closed by the server while idle: one fresh attempt
                    conn = await self.connect()
                    await conn.send_message(msg)
            except aiosmtplib.SMTPResponseException as exc:
                if exc.code == 421 or not conn.is_connected:
                    self.discard(conn)
                else:
                    self.idle.append(conn)  # a refused message leaves the session usable (aiosmtplib sent RSET)
                raise
            except BaseException:
                self.discard(conn)
                raise
            self.idle.append(conn)

    @staticmethod
    def discard(conn: aiosmtplib.SMTP) -> None:
        try:
            conn.close()
        except Exception:  # noqa: BLE001 - closing a broken connection: nothing to do about its error
            log.debug("closing a broken SMTP connection failed", exc_info=True)

    async def close(self) -> None:
        while self.idle:
            conn = self.idle.pop()
            try:
                await conn.quit()
            except Exception:  # noqa: BLE001 - the server may be gone already
                self.discard(conn)

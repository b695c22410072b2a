"""Running an import: rows of a file (jobs/importer.py) produced through Kafka at full speed.

Owns the produce loop of ``aura import``: each row is mapped, validated and framed exactly as the
producer helper does for live traffic (aura/producer.py), and queued without waiting. The rows are
cut into chunks of ``chunk`` produced rows; up to ``WINDOW`` chunks are in flight, and the
checkpoint moves over every leading chunk whose records Kafka has all acknowledged (in whatever
order the partitions acknowledge them). A run stopped anywhere (Ctrl-C, a crash, a broker failure)
resumes from the checkpoint, and the rows between the checkpoint and the stop that were produced
already carry the same deterministic event ids, which the intake deduplicates.

Bad rows are reported with their line numbers and skipped; ``strict`` reads the whole file first
and, if any row is bad, produces nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from aura import bootstrap
from aura.producer import EventProducer
from aura.settings import Settings
from jobs.importer import (
    ColumnMap,
    ImportFileError,
    Row,
    RowError,
    checkpoint_path,
    count_lines,
    detect_format,
    load_checkpoint,
    progress_line,
    read_rows,
    save_checkpoint,
    to_behavior,
    to_catalog,
)
from schemas.codec import DecodeError
from schemas.events import InvalidEvent

KINDS = {"events": "behavior_event", "catalog": "catalog_item"}
MAX_REPORTED = 1000  # bad rows listed on stderr; the rest are only counted
WINDOW = 4          # chunks in flight before the loop waits for acknowledgements
# librdkafka for a bulk load: fuller batches (fewer requests, less CPU per record) than live traffic's
# 5 ms linger; lz4 stays (cheapest per byte on this path), idempotence stays (no duplicates on retry)
IMPORT_PRODUCER: dict[str, Any] = {"linger.ms": 50, "batch.num.messages": 100_000, "batch.size": 4_000_000}


@dataclass
class ImportReport:
    rows: int = 0                 # rows read in this run (after the checkpoint)
    produced: int = 0             # rows produced and acknowledged in this run
    skipped_before: int = 0       # the checkpoint's line: rows up to it were done by an earlier run
    bad: list[RowError] = field(default_factory=list)
    bad_count: int = 0
    last_line: int = 0            # the checkpoint after this run
    failed: int = 0               # deliveries Kafka refused
    stopped: bool = False         # stopped early (stop_after or interrupt); resume to continue
    interrupted: bool = False     # Ctrl-C / SIGINT: what was produced is acknowledged and checkpointed
    elapsed_s: float = 0.0

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 130 if self.interrupted else 0


def encode_row(events: EventProducer, kind: str, row: Row, cmap: ColumnMap, now_ms: int) -> tuple[str, bytes, bytes]:
    """(topic, key, value) of one row; raises RowError with the intake's reason for a rejected one."""
    try:
        event = to_behavior(row, cmap) if kind == "events" else to_catalog(row, cmap, now_ms)
        return events.encode_as(KINDS[kind], event, now_ms, typed=True)  # the mapping types every field
    except (InvalidEvent, DecodeError) as exc:
        raise RowError(row.line, exc.reason, exc.detail[:200]) from None


class _Bad:
    def __init__(self, report: ImportReport, err: TextIO) -> None:
        self.report, self.err = report, err

    def __call__(self, e: RowError) -> None:
        self.report.bad_count += 1
        if len(self.report.bad) < MAX_REPORTED:
            self.report.bad.append(e)
            print(f"[aura import] skipped {e}", file=self.err, flush=True)  # noqa: T201


def check_file(events: EventProducer, path: str | Path, kind: str, cmap: ColumnMap, fmt: str | None,
               now_ms: int) -> list[RowError]:
    """Every bad row of the file (the ``--strict`` pass: nothing is produced)."""
    bad: list[RowError] = []
    for row in read_rows(path, fmt):
        if isinstance(row, RowError):
            bad.append(row)
            continue
        try:
            encode_row(events, kind, row, cmap, now_ms)
        except RowError as e:
            bad.append(e)
    return bad


class _Chunk:
    """The rows of one checkpoint step: done when every record queued for it is acknowledged."""

    __slots__ = ("line", "sent", "acked", "failed", "on_error")

    def __init__(self, on_error: Callable[[Any, Any], None]) -> None:
        self.line = self.sent = self.acked = self.failed = 0
        self.on_error = on_error

    def delivered(self, err: Any, msg: Any) -> None:
        if err is None:
            self.acked += 1
        else:
            self.failed += 1
            self.on_error(err, msg)

    @property
    def done(self) -> bool:
        return self.acked + self.failed >= self.sent


def import_producer(s: Settings) -> EventProducer:
    """The producer of an import: larger batches than live traffic's (IMPORT_PRODUCER)."""
    return EventProducer(s, bootstrap.kafka_producer(s, **IMPORT_PRODUCER))


def run_import(events: EventProducer, path: str | Path, kind: str, cmap: ColumnMap, *, fmt: str | None = None,
               resume: bool = True, chunk: int = 5000, stop_after: int | None = None, err: TextIO | None = None,
               progress_every_s: float = 1.0, progress: Callable[[str], None] | None = None,
               window: int = WINDOW) -> ImportReport:
    """Produce every good row after the checkpoint; see the module docstring.

    Up to ``window`` chunks are in flight: producing never waits for a chunk's acknowledgements
    unless that many are outstanding, and the checkpoint moves over every leading chunk whose
    records are all acknowledged (acknowledgements of different partitions come in any order)."""
    if kind not in KINDS:
        raise ImportFileError(f"unknown import kind {kind!r}")
    err = err or sys.stderr
    fmt = detect_format(path, fmt)
    cp = checkpoint_path(path, kind)
    report = ImportReport()
    report.skipped_before = start = load_checkpoint(cp, path) if resume else 0
    report.last_line = start
    bad = _Bad(report, err)
    total = count_lines(path) - (1 if fmt == "csv" else 0) if fmt != "parquet" else None
    now_ms = int(time.time() * 1000)
    t0 = last_progress = time.monotonic()
    producer, on_error = events.producer, events._on_delivery
    inflight: deque[_Chunk] = deque()
    current = _Chunk(on_error)
    queued = 0  # rows produced by this run, acknowledged or not

    def settle(wait: bool) -> bool:
        """Move the checkpoint over the leading acknowledged chunks (``wait``: flush first)."""
        if wait:
            remaining = producer.flush(60.0)
            if remaining:
                report.failed += remaining
                events.stats.errors.append(f"{remaining} records still queued after 60s")
        else:
            producer.poll(0)
        moved = False
        while inflight and inflight[0].done:
            c = inflight.popleft()
            if c.failed:
                report.failed += c.failed + sum(later.failed for later in inflight)
                inflight.clear()  # nothing after a refused record may be checkpointed
                break
            report.produced += c.acked
            report.last_line = c.line
            moved = True
        if moved:
            save_checkpoint(cp, path, report.last_line, report.produced)
        return not report.failed

    def close_chunk() -> None:
        nonlocal current
        inflight.append(current)
        current = _Chunk(on_error)

    try:
        for row in read_rows(path, fmt):
            line = row.line
            if line <= start:
                continue
            report.rows += 1
            if isinstance(row, RowError):
                bad(row)
            else:
                try:
                    topic, key, value = encode_row(events, kind, row, cmap, now_ms)
                except RowError as e:
                    bad(e)
                else:
                    while True:
                        try:
                            producer.produce(topic, value=value, key=key, on_delivery=current.delivered)
                            break
                        except BufferError:
                            producer.poll(0.05)  # the local queue is full: let deliveries drain
                    current.sent += 1
                    queued += 1
            current.line = line
            if stop_after is not None and queued >= stop_after:
                report.stopped = True
                break
            if current.sent >= chunk:
                close_chunk()
                if not settle(wait=len(inflight) >= window):
                    break
            now = time.monotonic()
            if progress is not None and now - last_progress >= progress_every_s:
                last_progress = now
                header = 1 if fmt == "csv" else 0
                progress(progress_line(line - header, total, now - t0, report.bad_count, report.rows))
    except KeyboardInterrupt:
        report.stopped = report.interrupted = True
    if current.line and not report.failed:
        close_chunk()
    if not report.failed:
        settle(wait=True)
    report.elapsed_s = time.monotonic() - t0
    return report


def say(msg: str) -> None:
    print(f"[aura] {msg}", flush=True)  # noqa: T201 - command-line tool


def command(s: Settings, args: argparse.Namespace) -> int:
    """``aura import [events|catalog] FILE``: a shop's history produced through the real intake
    (jobs/importrun.py); bad rows reported by line; exit 2 when ``--strict`` finds any."""
    if len(args.target) == 2 and args.target[0] in ("events", "catalog"):
        kind, path = args.target
    elif len(args.target) == 1:
        kind, path = "events", args.target[0]
    else:
        say("error: usage: aura import [events|catalog] FILE")
        return 2
    if not os.path.isfile(path):
        say(f"error: no such file: {path}")
        return 2
    cmap = ColumnMap(user_col=args.user_col, item_col=args.item_col, type_col=args.type_col,
                     default_type=args.default_type, time_col=args.time_col, time_unit=args.time_unit,
                     value_col=args.value_col, event_id_col=args.event_id_col, quantity_col=args.quantity_col,
                     order_col=args.order_col, currency=args.currency, title_col=args.title_col,
                     categories_col=args.categories_col, category_sep=args.category_sep, price_col=args.price_col,
                     brand_col=args.brand_col, extra=tuple(args.meta_col or ()))
    if kind == "events" and not args.type_col and not args.default_type:
        say("error: say where the event type comes from: --type-col COLUMN and/or --default-type TYPE")
        return 2
    events = import_producer(s)
    tty = sys.stderr.isatty()

    def progress(line: str) -> None:
        print(f"\r[aura import] {line}   " if tty else f"[aura import] {line}", end="" if tty else "\n",  # noqa: T201
              file=sys.stderr, flush=True)

    try:
        if args.strict:
            bad = check_file(events, path, kind, cmap, args.format, int(time.time() * 1000))
            if bad:
                for e in bad[:1000]:
                    print(f"[aura import] bad {e}", file=sys.stderr, flush=True)  # noqa: T201
                say(f"--strict: {len(bad)} bad rows; nothing produced")
                return 2
        report = run_import(events, path, kind, cmap, fmt=args.format, resume=not args.restart, chunk=args.chunk,
                            stop_after=args.stop_after, progress=progress)
    except ImportFileError as exc:
        say(f"error: {exc}")
        return 2
    if tty:
        print(file=sys.stderr)  # noqa: T201 - end the progress line
    rate = report.produced / report.elapsed_s if report.elapsed_s else 0.0
    say(f"imported {report.produced} {kind} rows ({rate:,.0f}/s), skipped {report.bad_count} bad rows"
         + (f", resumed after line {report.skipped_before}" if report.skipped_before else "")
         + (f"; stopped at line {report.last_line}, run again to resume" if report.stopped else "")
         + (f"; {report.failed} deliveries FAILED, checkpoint at line {report.last_line}" if report.failed else ""))
    return report.exit_code

"""The ``aura`` command: stack, migrate, worker, api, demo, run, schema, job, import, keys, agg, mail.

The entry point, the one package of aura/ that may import streams/, serving/, jobs/ and infra/:
it starts them. This module parses the command line; the subcommands are in processes.py (what runs
the system) and tools.py (what operators use). Each subcommand imports what it needs inside its
function, so a command loads only its own dependencies (``aura stack status`` never loads Faust,
``aura api`` never loads the stack manager).
"""

from __future__ import annotations

import argparse
import logging
import os

from aura.cli.processes import cmd_api, cmd_demo, cmd_mail, cmd_migrate, cmd_run, cmd_stack, cmd_worker
from aura.cli.tools import cmd_agg, cmd_deadletter, cmd_import, cmd_job, cmd_keys, cmd_schema


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="aura", description="Aura real-time personalization engine")
    sub = p.add_subparsers(dest="command", required=True)
    st = sub.add_parser("stack", help="local Kafka, Cassandra and Redis")
    st.add_argument("action", choices=["up", "down", "status", "reset", "kill"])
    st.add_argument("service", nargs="?", choices=["kafka", "cassandra", "redis", "mail"])
    st.set_defaults(func=cmd_stack)
    sub.add_parser("migrate", help="apply topic and table migrations").set_defaults(func=cmd_migrate)
    w = sub.add_parser("worker", help="run the stream worker (Faust)")
    w.add_argument("--loglevel", default="info")
    w.add_argument("--processes", type=int, default=1, help="worker processes in one consumer group")
    w.add_argument("--roles", help="state owners of this worker: all (default) or a subset of profiles,recs,"
                                   "decisions (a subset is its own consumer group)")
    w.add_argument("--split", action="store_true",
                   help="run the roles split: N processes for profiles, N for recs+decisions")
    w.set_defaults(func=cmd_worker)
    a = sub.add_parser("api", help="run the HTTP API (uvicorn)")
    a.add_argument("--host")
    a.add_argument("--port", type=int)
    a.add_argument("--workers", type=int, default=1)
    a.set_defaults(func=cmd_api)
    d = sub.add_parser("demo", help="produce synthetic storefront traffic")
    d.add_argument("--rate", type=float, default=50.0, help="events per second")
    d.add_argument("--duration", type=float, default=None, help="seconds; default forever")
    d.add_argument("--seed", type=int, default=7)
    d.add_argument("--history-min", type=int, default=0,
                   help="start the event clock this many minutes ago and catch up (see --speed)")
    d.add_argument("--speed", type=float, default=1.0, help="event clock speed while catching up")
    d.add_argument("--incidents", action="store_true",
                   help="play the scripted incidents (conversion drop, price error, surge, CTR collapse)")
    d.set_defaults(func=cmd_demo)
    r = sub.add_parser("run", help="stack + migrations + worker + API + demo traffic")
    r.add_argument("--rate", type=float, default=50.0)
    r.add_argument("--history-min", type=int, default=180,
                   help="demo traffic starts this many minutes back, with its scripted incidents")
    r.add_argument("--speed", type=float, default=40.0, help="how fast the demo's clock catches up")
    r.set_defaults(func=cmd_run)
    sc = sub.add_parser("schema", help="check Avro schema changes against released versions (evolution)")
    sc.add_argument("action", choices=["check", "release"])
    sc.add_argument("names", nargs="*", help="schema names (default: all)")
    sc.set_defaults(func=cmd_schema)
    jb = sub.add_parser("job", help="batch jobs: ease (rebuild EASE from Cassandra, publish to Redis + registry), "
                                    "train (a model on a time window, evaluated on a later one), "
                                    "profile-search (copy existing users into the search index, resumable)")
    jb.add_argument("job", choices=["ease", "train", "profile-search"])
    jb.add_argument("job_args", nargs=argparse.REMAINDER, help="--resume ID, --activate P, --every S, --no-eval")
    jb.set_defaults(func=cmd_job)
    im = sub.add_parser("import", help="bring a shop's history in: import [events|catalog] FILE (CSV, JSON lines, "
                                       "Parquet with pyarrow) through Kafka; resumable; see docs/events.md")
    im.add_argument("target", nargs="+", metavar="[events|catalog] FILE")
    im.add_argument("--format", choices=["csv", "jsonl", "parquet"], help="default: from the file name")
    im.add_argument("--user-col", default="user_id")
    im.add_argument("--item-col", default="item_id")
    im.add_argument("--type-col", help="column of the event type (view, purchase, rating, ...)")
    im.add_argument("--default-type", help="type of rows without one (all rows, without --type-col)")
    im.add_argument("--time-col", default="timestamp", help="catalog: optional (default: now)")
    im.add_argument("--time-unit", choices=["auto", "s", "ms", "iso"], default="auto",
                    help="epoch seconds, milliseconds or ISO-8601 (auto: by magnitude, else ISO)")
    im.add_argument("--value-col", help="rating or numeric value")
    im.add_argument("--event-id-col", help="default: a deterministic id from the row content")
    im.add_argument("--quantity-col", help="purchases: units of the row's item (default 1)")
    im.add_argument("--order-col", help="purchases: the order id (default: the event id)")
    im.add_argument("--currency", default="USD", help="purchases: currency of the prices")
    im.add_argument("--title-col", default="title", help="catalog")
    im.add_argument("--categories-col", default="categories", help="catalog; values split on --category-sep")
    im.add_argument("--category-sep", default="|")
    im.add_argument("--price-col", default="price", help="catalog price; purchases: unit price")
    im.add_argument("--brand-col", default="brand", help="catalog")
    im.add_argument("--meta-col", action="append", help="catalog: a column kept as metadata (repeatable)")
    im.add_argument("--strict", action="store_true", help="refuse the file (exit 2, nothing produced) if a row is bad")
    im.add_argument("--restart", action="store_true", help="ignore the checkpoint and start from the first row")
    im.add_argument("--chunk", type=int, default=5000, help="rows per acknowledged checkpoint")
    im.add_argument("--stop-after", type=int, help="stop after producing N rows (resume later)")
    im.set_defaults(func=cmd_import)
    ky = sub.add_parser("keys", help="API keys: create --scope S [--scope S2] --name N [--rate R --burst B], "
                                     "list, revoke ID")
    ky.add_argument("action", choices=["create", "list", "revoke"])
    ky.add_argument("key_id", nargs="?", help="key id to revoke")
    ky.add_argument("--scope", action="append", choices=["read", "events", "admin"],
                    help="repeatable; admin covers read and events (default: read)")
    ky.add_argument("--name", default="", help="who the key is for (e.g. storefront-eu)")
    ky.add_argument("--rate", type=float, default=None, help="requests/s (default: AURA_RATE_LIMIT_PER_S)")
    ky.add_argument("--burst", type=int, default=None, help="requests at once (default: AURA_RATE_LIMIT_BURST)")
    ky.set_defaults(func=cmd_keys)
    dl = sub.add_parser("deadletter", help="dead letters: tail [--last N] [--reason R]; replay --letter P:O | "
                                          "--reason R [--dry-run] (through the normal intake, exactly once)")
    dl.add_argument("action", choices=["tail", "replay"])
    dl.add_argument("--last", type=int, default=None, help="tail: the last N per partition (default: all)")
    dl.add_argument("--reason", default=None, help="only dead letters of this reason")
    dl.add_argument("--letter", action="append", help="replay: a dead letter's PARTITION:OFFSET (repeatable)")
    dl.add_argument("--dry-run", action="store_true", help="replay: say what would be replayed")
    dl.set_defaults(func=cmd_deadletter)
    ag = sub.add_parser("agg", help="aggregate topics for analysts (agg.*)")
    ag.add_argument("action", choices=["tail"])
    ag.add_argument("name", choices=["minute_metrics", "item_daily", "funnel", "revenue"])
    ag.add_argument("--rows", type=int, default=20)
    ag.add_argument("--once", action="store_true", help="print the table once the topic is read to its end")
    ag.set_defaults(func=cmd_agg)
    ml = sub.add_parser("mail", help="messages the local development mail server received (campaign emails)")
    ml.add_argument("action", choices=["list"])
    ml.add_argument("--to", help="only messages to this address")
    ml.add_argument("--limit", type=int, default=20)
    ml.add_argument("--body", action="store_true", help="print each message's text too")
    ml.set_defaults(func=cmd_mail)
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=os.environ.get("AURA_LOGLEVEL", "WARNING"))
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)

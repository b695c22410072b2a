"""The ``aura`` command: stack, migrate, worker, api, demo, run, schema, job, import, keys, agg, mail.

The one module of aura/ that may import streams/, serving/, jobs/ and infra/: it is the entry point
that starts them. Each subcommand imports what it needs inside its function, so a command loads
only its own dependencies (``aura stack status`` never loads Faust, ``aura api`` never loads the
stack manager).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import subprocess
import sys
import time

from aura import layout
from aura.settings import Settings, get_settings


def _say(msg: str) -> None:
    print(f"[aura] {msg}", flush=True)  # noqa: T201 - command-line tool


def cmd_stack(args: argparse.Namespace) -> int:
    from infra import stack

    if args.action == "kill":
        stack.kill(get_settings(), args.service)
        return 0
    return stack.main([args.action])


def cmd_migrate(_args: argparse.Namespace) -> int:
    from infra.migrate import migrate

    applied = migrate(get_settings())
    _say(f"migrations applied: {applied or 'none pending'}")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    roles = getattr(args, "roles", None)
    if roles:
        try:
            layout.worker_roles(roles)
        except ValueError as exc:
            _say(f"error: {exc}")
            return 2
        os.environ["AURA_WORKER_ROLES"] = roles  # this process and its children
    if getattr(args, "split", False) or getattr(args, "processes", 1) > 1:
        return run_worker_processes(args.processes, args.loglevel, split=getattr(args, "split", False))
    import faust

    from streams.app import create_app

    s = get_settings()
    if s.worker.nice:
        os.nice(s.worker.nice)  # lower priority: e.g. the recs group of a split deployment
    app = create_app(s)
    worker = faust.Worker(app, loglevel=args.loglevel, quiet=True)
    worker.execute_from_commandline()
    return 0


def run_worker_processes(n: int, loglevel: str, split: bool = False) -> int:
    """``aura worker --processes N``: N worker processes in one consumer group (Kafka splits the
    partitions among them; one core each). ``--split``: N processes for each role group of
    ``layout.SPLIT_ROLES`` (profiles; recs + decisions), each group its own consumer group, so the
    profiles a storefront reads do not wait for the recommenders' work. Signals are passed on;
    returns when all have exited."""
    s = get_settings()
    role_sets = layout.SPLIT_ROLES if split else (os.environ.get("AURA_WORKER_ROLES", "all"),)

    def nice(roles: str) -> int:  # split: the profiles group first, the others at worker_split_nice
        if not split:
            return s.worker.nice
        return 0 if "profiles" in layout.worker_roles(roles) else s.worker.split_nice

    procs = [subprocess.Popen([sys.executable, "-m", "aura.cli", "worker", "--loglevel", loglevel],  # noqa: S603
                              env={**os.environ, "AURA_WORKER_ROLES": roles, "AURA_WORKER_NICE": str(nice(roles))})
             for roles in role_sets for _ in range(n)]

    def forward(signum: int, _frame: object) -> None:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes = [p.wait() for p in procs]
    return max(codes, key=abs)


def cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    s = get_settings()
    if args.workers > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        from serving.metrics import prepare_multiprocess_dir

        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(prepare_multiprocess_dir(s))  # /metrics sums the workers
    # an import string, not the factory itself: uvicorn needs one to start several worker processes
    uvicorn.run("serving.app:create_app", factory=True, host=args.host or s.api.host, port=args.port or s.api.port,
                workers=args.workers, log_level="warning", access_log=False)
    return 0


async def _demo_config(s: Settings) -> list[str]:
    """The experiment, rule, segment and strategy bandit the demo traffic refers to (aura/demo.py)."""
    from aura import bootstrap, demo
    from aura.layout import RedisKeys

    redis, session = bootstrap.redis_async(s), bootstrap.cassandra_session(s)
    try:
        return await demo.configure(redis, RedisKeys(s.redis.prefix), session)
    finally:
        await redis.aclose()
        session.cluster.shutdown()


def cmd_demo(args: argparse.Namespace) -> int:
    from aura import bootstrap, demo
    from aura.producer import EventProducer

    s = get_settings()
    started = install_demo_campaigns(s)
    _say(f"demo campaigns running: {', '.join(started)} (mail: `aura mail list`)")
    _say(f"demo configuration created: {', '.join(asyncio.run(_demo_config(s))) or 'already there'}")
    producer = EventProducer(s, bootstrap.kafka_producer(s))
    sent = demo.run(producer, rate=args.rate, duration_s=args.duration, seed=args.seed,
                    history_min=args.history_min, speed=args.speed,
                    incidents=demo.INCIDENTS if args.incidents else ())
    _say(f"demo sent {sent} events; delivery failures: {producer.stats.failed}")
    return 0 if producer.stats.failed == 0 else 1


def install_demo_campaigns(s: Settings) -> list[str]:
    """Store the demo's campaigns (aura/demo.py) and set them running; existing ones are left as they are."""
    import asyncio

    from aura import bootstrap, demo
    from aura.configcache import ConfigCache
    from aura.layout import RedisKeys, Tables
    from aura.state.campaigns import validate_campaign

    async def install() -> list[str]:
        session, redis = bootstrap.cassandra_session(s), bootstrap.redis_async(s)
        cache = ConfigCache("campaigns", Tables.CAMPAIGNS, "campaign_id", redis, RedisKeys(s.redis.prefix), session,
                            validate_campaign)
        try:
            now = int(time.time() * 1000)
            for doc in demo.demo_campaigns():
                doc = {**doc, "status": "running", "version": 1, "created_at": now, "running_at": now}
                validate_campaign(doc)
                await cache.insert(doc["id"], doc)
            return [c.id for c in (await cache.get()).values() if c.id.startswith("demo-") and c.status == "running"]
        finally:
            await redis.aclose()
            session.cluster.shutdown()

    return asyncio.run(install())


def cmd_mail(args: argparse.Namespace) -> int:
    """The local development mail server's newest messages: ``aura mail list [--to ADDRESS] [--limit N]``."""
    from aura.state import maildir

    s = get_settings()
    for m in reversed(maildir.list_messages(maildir.root(s), limit=args.limit, to=args.to)):
        print(f"--- {m['date']}  to {m['to']}  [{m['message_id']}]\n    {m['subject']}", flush=True)  # noqa: T201
        if args.body:
            print("    " + m["text"].replace("\n", "\n    "), flush=True)  # noqa: T201
    _say(f"Maildir: {maildir.root(s)}")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    """Check the current Avro schemas against their released versions; release a changed one."""
    from schemas import compat

    if args.action == "release":
        if not args.names:
            _say("name the schema(s) to release")
            return 2
        for name in args.names:
            try:
                path = compat.release(name)
            except compat.IncompatibleSchema as exc:
                _say(f"{name}: refused, incompatible with its released versions: {exc}")
                return 1
            _say(f"{name}: released as {path.name}" if path else f"{name}: unchanged, nothing to release")
        return 0
    results = compat.check_all(names=args.names or None)
    for r in results:
        against = f" (against v{r.latest})" if r.latest else ""
        _say(f"{r.name:24s} {r.status}{against}")
        for problem in r.problems:
            _say(f"    {problem}")
    bad = [r.name for r in results if not r.ok]
    _say(f"incompatible: {', '.join(bad)}" if bad else f"{len(results)} schemas checked, all compatible")
    return 1 if bad else 0


def demo_read_key(s: Settings) -> str:
    """A read-scope API key named ``demo`` for the links that ``aura run`` prints."""
    from aura import bootstrap
    from aura.apikeys import KeyStore

    session = bootstrap.cassandra_session(s)
    redis = bootstrap.redis_sync(s)
    try:
        _rec, token = KeyStore(s, session, redis).create("demo", ["read"], None, None)
        return token
    finally:
        redis.close()
        session.cluster.shutdown()


def cmd_run(args: argparse.Namespace) -> int:
    """Stack, migrations, worker, API and demo traffic; Ctrl-C stops the processes (not the stack)."""
    from infra import stack
    from infra.migrate import migrate

    s = get_settings()
    if stack.main(["up"]) != 0:
        return 1
    migrate(s)
    logs = s.home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    me = [sys.executable, "-m", "aura.cli"]
    procs: dict[str, subprocess.Popen[bytes]] = {}
    for name, argv in (("worker", [*me, "worker"]), ("api", [*me, "api"]),
                       ("demo", [*me, "demo", "--rate", str(args.rate), "--incidents",
                                 "--history-min", str(args.history_min), "--speed", str(args.speed)])):
        log = open(logs / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child process
        procs[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)  # noqa: S603
        _say(f"{name} started (pid {procs[name].pid}), log {logs / f'{name}.log'}")
    base = f"http://{s.api.host}:{s.api.port}"
    token = demo_read_key(s)
    _say("the platform is running. Look at:")
    _say(f"  {base}/docs                                   interactive API (Authorize with the key below)")
    _say(f"  {base}/v1/health                              each dependency's status (open)")
    _say(f"  a read-scope API key for this demo: {token}")
    for path in ("/v1/profiles/u000000/activity", "/v1/profiles/u000000",
                 "/v1/recommendations/users/u000000?limit=5", "/v1/recommendations/trending?limit=5",
                 "/v1/analytics/funnel", "/v1/analytics/insights?timeframe=6h",
                 "/v1/campaigns/demo-cart-abandonment/performance", "/v1/campaigns/mail?limit=5"):
        _say(f"  curl -s -H 'X-API-Key: {token}' '{base}{path}'")
    _say("campaign emails arrive at the local mail server: `aura mail list` (the demo's users u000000..u000049)")
    _say("Ctrl-C stops worker, API and demo; `make down` stops Kafka, Cassandra, Redis and the mail server.")
    stop = False

    def on_signal(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        while not stop:
            for name, proc in procs.items():
                if proc.poll() is not None:
                    _say(f"{name} exited with {proc.returncode}; see {logs / f'{name}.log'}")
                    stop = True
            time.sleep(0.5)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
    return 0


def cmd_job(args: argparse.Namespace) -> int:
    """Batch jobs: ``aura job ease [--resume ID] [--activate PLACEMENT] [--every SECONDS]``;
    ``aura job train MODEL_ID --type item_knn --train-from MS --train-to MS --eval-to MS``."""
    from jobs import ease, train

    jobs = {"ease": ease.main, "train": train.main}
    return jobs[args.job](args.job_args) if args.job in jobs else 2


def cmd_import(args: argparse.Namespace) -> int:
    """``aura import [events|catalog] FILE``: a shop's history produced through the real intake."""
    from jobs.importrun import command

    return command(get_settings(), args)


def cmd_keys(args: argparse.Namespace) -> int:
    """API keys: ``aura keys create --scope read --name x``, ``list``, ``revoke ID``."""
    from aura import bootstrap
    from aura.apikeys import ApiKeyError, KeyStore

    s = get_settings()
    session = bootstrap.cassandra_session(s)
    redis = bootstrap.redis_sync(s)
    try:
        store = KeyStore(s, session, redis)
        if args.action == "create":
            try:
                rec, token = store.create(args.name, args.scope or ["read"], args.rate, args.burst)
            except ApiKeyError as exc:
                _say(f"error: {exc}")
                return 2
            _say(f"created key {rec.key_id} ({rec.name}) scopes={','.join(sorted(rec.scopes))} "
                 f"rate={rec.rate_per_s:g}/s burst={rec.burst}")
            _say("the token is shown once; store it now:")
            print(token, flush=True)  # noqa: T201 - the one place the token is ever shown
            return 0
        if args.action == "list":
            for rec in store.list():
                state = "revoked" if rec.revoked else "active"
                print(f"{rec.key_id}  {state:8} {','.join(sorted(rec.scopes)):18} "  # noqa: T201
                      f"{rec.rate_per_s:>8g}/s burst {rec.burst:<6} {rec.name}", flush=True)
            return 0
        if not args.key_id:
            _say("error: revoke needs a key id (see `aura keys list`)")
            return 2
        if store.revoke(args.key_id):
            _say(f"revoked {args.key_id}")
            return 0
        _say(f"no key {args.key_id}")
        return 1
    finally:
        redis.close()
        session.cluster.shutdown()


def cmd_agg(args: argparse.Namespace) -> int:
    """Tail an aggregate topic as a live table (topics in docs/analytics.md)."""
    from streams.aggregates import tail

    tail(get_settings(), args.name, rows=args.rows, once=args.once)
    return 0


def cmd_deadletter(args: argparse.Namespace) -> int:
    """``aura deadletter tail`` (reason, source, offset, preview) and ``aura deadletter replay``."""
    from aura import bootstrap, deadletters

    s = get_settings()
    if args.action == "tail":
        shown = 0
        for d in deadletters.read(s, last=args.last, reason=args.reason):
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(d.dead_at_ms / 1000))
            print(f"{d.ref:>10}  {when}  {d.reason:22} {d.source_topic}[{d.source_partition}]@{d.source_offset}  "  # noqa: T201
                  f"key={(d.key or b'').decode('utf-8', 'replace')[:40]!r}\n            {d.detail[:200]}\n"
                  f"            {d.preview()}", flush=True)
            shown += 1
        _say(f"{shown} dead letters")
        return 0
    if not args.letter and not args.reason:
        _say("error: replay needs --letter PARTITION:OFFSET (see `aura deadletter tail`) or --reason REASON")
        return 2
    wanted = set(args.letter or ())
    letters = [d for d in deadletters.read(s, reason=args.reason) if not wanted or d.ref in wanted]
    missing = wanted - {d.ref for d in letters}
    if missing:
        _say(f"error: no dead letter at {sorted(missing)}")
        return 1
    redis = bootstrap.redis_sync(s)
    try:
        report = deadletters.replay(s, redis, letters, dry_run=args.dry_run)
    finally:
        redis.close()
    verb = "would replay" if args.dry_run else "replayed"
    _say(f"{verb} {len(report.replayed)}: {report.replayed}; already replayed {len(report.skipped)}: "
         f"{report.skipped}; without a value {len(report.unreplayable)}")
    return 0


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
                                    "train (a model on a time window, evaluated on a later one)")
    jb.add_argument("job", choices=["ease", "train"])
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


if __name__ == "__main__":
    sys.exit(main())

"""The ``aura`` subcommands that run the system: stack, migrate, worker, api, demo, run, mail.

Part of the entry point, the one place of aura/ that may import streams/, serving/, jobs/ and infra/;
each command imports what it needs inside its function, so it loads only its own dependencies.
"""

from __future__ import annotations

import argparse
import asyncio
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
    import mode.loop

    from streams.app import create_app, resources, tune_gc
    from streams.redisloss import replace_process

    s = get_settings()
    if s.worker.nice:
        os.nice(s.worker.nice)  # lower priority: e.g. the recs group of a split deployment
    mode.loop.use(s.worker.loop)  # before any client binds to a loop
    res = resources(s)
    app = create_app(s, res)
    worker = faust.Worker(app, loglevel=args.loglevel, quiet=True)
    tune_gc(s.worker.gc_gen0)
    try:
        worker.execute_from_commandline()
    finally:
        if res.redis_guard is not None and res.redis_guard.lost_reason is not None:
            replace_process(s.worker.redis_loss_action)  # Redis lost writes: start again, refold (streams/redisloss.py)
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
                workers=args.workers, log_level="warning", access_log=False, timeout_keep_alive=s.api.keepalive_s)
    return 0


async def _demo_config(s: Settings) -> list[str]:
    """The experiment, rule, segment and strategy bandit the demo traffic refers to (aura/demo.py)."""
    from aura import bootstrap, demo
    from aura.keys import keys_for

    redis, session = bootstrap.redis_async(s), bootstrap.cassandra_session(s)
    try:
        return await demo.configure(redis, keys_for(s), session)
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
    from aura.keys import keys_for
    from aura.layout import Tables
    from aura.state.campaigns import validate_campaign

    async def install() -> list[str]:
        session, redis = bootstrap.cassandra_session(s), bootstrap.redis_async(s)
        cache = ConfigCache("campaigns", Tables.CAMPAIGNS, "campaign_id", redis, keys_for(s), session,
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

"""The ``aura`` subcommands for operators: schema, job, import, keys, agg, deadletter.

Part of the entry point (see aura/cli/processes.py); each command imports what it needs inside
its function.
"""

from __future__ import annotations

import argparse
import time

from aura.cli.processes import _say
from aura.settings import get_settings


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


def cmd_job(args: argparse.Namespace) -> int:
    """Batch jobs: ``aura job ease [--resume ID] [--activate PLACEMENT] [--every SECONDS]``;
    ``aura job train MODEL_ID --type item_knn --train-from MS --train-to MS --eval-to MS``;
    ``aura job profile-search [--batch N] [--restart]``."""
    from jobs import ease, profile_search, train

    jobs = {"ease": ease.main, "train": train.main, "profile-search": profile_search.main}
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

"""Campaign latency and send rate: a trigger event produced -> the message accepted by the SMTP server.

    .venv/bin/python -m bench.campaigns --rate 100 --seconds 30 [--channel webhook] [--b-tree ../old --repeat 3]

A real ``aura worker`` over fresh topics and a fresh Redis prefix, the local stack's mail server
(infra/mailsink.py), and one running email campaign triggered by ``view`` events with no delay (its
messages rendered with the user's live recommendations). Users with email addresses are created
first; then one trigger per user is produced at ``--rate`` triggers/s, each stamped with its
produce time. The SMTP server's ``accepted.log`` gives the time each message was accepted; the
figure is accepted - produced (p50 / p90 / p99 / max, ms) and the sends per second over the run.
With ``--rate-per-min`` below the trigger rate, the channel's rate limit is the bottleneck: the
busiest 60 s and the minute starting 5 s after the first message are compared with it.
With ``--channel webhook`` the campaign is a webhook one and the messages go, HMAC-signed, to a
local receiver in its own process (bench/webhook_receiver.py), whose log gives the arrival times.
Both ends read the same clock (one machine).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

from aura import bootstrap
from aura.configcache import ConfigCache
from aura.keys import RedisKeys
from aura.layout import Tables
from aura.producer import EventProducer
from aura.settings import REPO_ROOT, Settings, get_settings, settings_env
from aura.state import maildir
from aura.state.campaigns import validate_campaign
from bench.pipeline import bench_settings, cleanup, prepare, stop_worker

WEBHOOK_SECRET = "bench-secret"


async def create_campaign(s: Settings, cid: str, channel: str = "email") -> None:
    session, redis = bootstrap.cassandra_session(s), bootstrap.redis_async(s)
    cache = ConfigCache("campaigns", Tables.CAMPAIGNS, "campaign_id", redis, RedisKeys(s.redis.prefix), session,
                        validate_campaign)
    body = "{% for r in recommendations %}{{ r.item_id }}\n{% endfor %}"
    template = ({"subject": "Hello {{ user.id }}", "body": body} if channel == "email"
                else {"title": "Hello {{ user.id }}", "body": body})
    doc = {"id": cid, "status": "running", "channel": channel, "audience": {"type": "everyone"},
           "trigger": {"type": "event", "event_type": "view"}, "template": template}
    validate_campaign(doc)
    await cache.insert(cid, doc)
    await redis.aclose()
    session.cluster.shutdown()


async def delete_campaign(s: Settings, cid: str) -> None:
    session, redis = bootstrap.cassandra_session(s), bootstrap.redis_async(s)
    await ConfigCache("campaigns", Tables.CAMPAIGNS, "campaign_id", redis, RedisKeys(s.redis.prefix), session,
                      validate_campaign).delete(cid)
    await redis.aclose()
    session.cluster.shutdown()


def accepted(s: Settings, suffix: str) -> dict[str, int]:
    """Address -> the time the mail server first accepted a message to it."""
    log = Path(maildir.root(s)) / "accepted.log"
    out: dict[str, int] = {}
    for ln in log.read_text().splitlines() if log.exists() else []:
        t, _mid, rcpt, _what = ln.split("\t")
        if rcpt.endswith(suffix):
            out.setdefault(rcpt, int(t))
    return out


def received(log: Path, suffix: str) -> dict[str, int]:
    """User id + ``suffix`` -> the time the webhook receiver first accepted a message for the user."""
    out: dict[str, int] = {}
    for ln in log.read_text().splitlines() if log.exists() else []:
        t, user, _key = ln.split("\t")
        if user != "-":
            out.setdefault(f"{user}{suffix}", int(t))
    return out


class WebhookReceiver:
    """bench/webhook_receiver.py in its own process, on a free port, logging to ``log``."""

    def __init__(self, log: Path) -> None:
        self.log = log
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/hook"
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.webhook_receiver", "--port", str(port),  # noqa: S603
                                      "--log", str(log), "--secret", WEBHOOK_SECRET], cwd=REPO_ROOT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("the webhook receiver did not start")

    def bad_signatures(self) -> int:
        return sum(1 for ln in self.log.read_text().splitlines() if ln.endswith("\tbad-signature"))

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def pct(xs: list[float], q: float) -> float:
    return sorted(xs)[min(len(xs) - 1, int(q * len(xs)))]


def busiest_minute(times_ms: list[int]) -> int:
    """The most messages accepted in any 60 s window (sliding over the accepted times)."""
    ts, best, j = sorted(times_ms), 0, 0
    for i, t in enumerate(ts):
        while ts[j] <= t - 60_000:
            j += 1
        best = max(best, i - j + 1)
    return best


def steady_minute(times_ms: list[int]) -> int:
    """Messages accepted in the minute that starts 5 s after the first one (0 when the run is shorter)."""
    ts = sorted(times_ms)
    if not ts or ts[-1] - ts[0] < 65_000:
        return 0
    t0 = ts[0] + 5_000
    return sum(1 for t in ts if t0 <= t < t0 + 60_000)


def run(rate: float, seconds: float, tree: Path, per_min: float = 1e9, tick_s: float | None = None,
        channel: str = "email") -> dict[str, float]:
    """One run over fresh topics and prefix with the worker of checkout ``tree``; returns its figures."""
    s = bench_settings(get_settings()).replace(campaign_rate_per_min=per_min)
    if tick_s is not None:
        s = s.replace(campaign_tick_s=tick_s)
    tag = uuid.uuid4().hex[:8]
    receiver = None
    if channel == "webhook":
        (s.home / "logs").mkdir(parents=True, exist_ok=True)
        receiver = WebhookReceiver(s.home / "logs" / f"bench-webhooks-{tag}.log")
        s = s.replace(campaign_webhook_url=receiver.url, campaign_webhook_secret=WEBHOOK_SECRET)
    prepare(s)
    suffix = f"@{tag}.bench"
    n = int(rate * seconds)
    users = [f"bu{tag}-{i}" for i in range(n)]
    producer = EventProducer(s, bootstrap.kafka_producer(s))
    now = int(time.time() * 1000)
    for u in users:
        producer.send_identity({"event_id": f"{u}-id", "event_type": "create", "user_id": u, "event_time": now,
                                "attributes": {"email": f"{u}{suffix}"}})
    producer.flush(60)
    cid = f"bench-{tag}"
    asyncio.run(create_campaign(s, cid, channel))

    def arrived() -> dict[str, int]:
        return received(receiver.log, suffix) if receiver else accepted(s, suffix)

    logs = s.home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **settings_env(s), "PYTHONPATH": str(tree)}
    worker = subprocess.Popen([sys.executable, "-m", "aura.cli", "worker"], cwd=tree, env=env,  # noqa: S603
                              stdout=open(logs / "bench-campaigns.log", "ab"), stderr=subprocess.STDOUT)  # noqa: SIM115
    try:
        r = bootstrap.redis_sync(s)
        deadline = time.monotonic() + 180
        while r.hlen(f"{s.redis.prefix}:user:{{{users[-1]}}}:attrs") == 0 and time.monotonic() < deadline:
            time.sleep(0.5)  # the worker is up and has folded the identities
        produced: dict[str, int] = {}
        due_key, backlog = RedisKeys(s.redis.prefix).campaign_due(), [0]
        start = last_look = time.monotonic()
        for i, u in enumerate(users):
            ahead = start + i / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
            if time.monotonic() - last_look >= 1.0:  # messages due and not yet in the outbox (the drainer's lag)
                backlog.append(r.zcard(due_key))
                last_look = time.monotonic()
            t = int(time.time() * 1000)
            producer.send({"event_id": f"{u}-v", "event_type": "view", "user_id": u, "item_id": "item-00001",
                           "event_time": t})
            produced[f"{u}{suffix}"] = t
        producer.flush(30)
        deadline = time.monotonic() + 180 + (n / per_min * 60 if per_min < 1e9 else 0)
        got = arrived()
        while len(got) < n and time.monotonic() < deadline:
            time.sleep(1)
            backlog.append(r.zcard(due_key))
            got = arrived()
        if receiver and receiver.bad_signatures():
            raise RuntimeError(f"{receiver.bad_signatures()} webhooks with a bad signature")
        lat = [got[k] - produced[k] for k in got] or [float("nan")]
        span = (max(got.values()) - min(got.values())) / 1000 if len(got) > 1 else 0.0
        return {"triggers": n, "accepted": len(got), "p50": statistics.median(lat), "p90": pct(lat, 0.9),
                "p99": pct(lat, 0.99), "max": max(lat), "sends_s": len(got) / max(span, 1e-9),
                "due_max": max(backlog), "busiest_minute": busiest_minute(list(got.values())) if got else 0,
                "steady_minute": steady_minute(list(got.values()))}
    finally:
        stop_worker(worker)
        asyncio.run(delete_campaign(s, cid))
        cleanup(s)
        if receiver:
            receiver.close()


def line(label: str, f: dict[str, float]) -> str:
    return (f"{label}: triggers {f['triggers']:.0f}, accepted {f['accepted']:.0f}; trigger -> accepted ms: "
            f"p50 {f['p50']:.0f} p90 {f['p90']:.0f} p99 {f['p99']:.0f} max {f['max']:.0f}; "
            f"sends/s {f['sends_s']:.1f}; due entries not yet drained: max {f['due_max']:.0f}; "
            f"busiest 60 s: {f['busiest_minute']:.0f} messages; steady minute: {f['steady_minute']:.0f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rate", type=float, default=100.0, help="triggers per second")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--b-tree", type=Path, default=None,
                    help="B: the worker of another checkout (e.g. a git worktree of an older commit), run "
                         "alternately with this one's (A); medians of --repeat runs each")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--channel", choices=("email", "webhook"), default="email",
                    help="email: the stack's mail server; webhook: a local receiver (bench/webhook_receiver.py)")
    ap.add_argument("--rate-per-min", type=float, default=1e9,
                    help="AURA_CAMPAIGN_RATE_PER_MIN of the worker (the default: no limit); the busiest 60 s of "
                         "accepted messages is then compared with it")
    ap.add_argument("--tick-s", type=float, default=None,
                    help="AURA_CAMPAIGN_TICK_S of the worker (default: the setting's default)")
    a = ap.parse_args()
    trees = {"A": REPO_ROOT} | ({"B": a.b_tree.resolve()} if a.b_tree else {})
    runs: dict[str, list[dict[str, float]]] = {k: [] for k in trees}
    for i in range(a.repeat):
        for label, tree in trees.items():
            f = run(a.rate, a.seconds, tree, a.rate_per_min, a.tick_s, a.channel)
            runs[label].append(f)
            print(line(f"run {i + 1} {label} ({tree})", f), flush=True)  # noqa: T201
    med = {label: {k: statistics.median(f[k] for f in fs) for k in fs[0]} for label, fs in runs.items()}
    for label, tree in trees.items():
        print(line(f"median {label} ({tree}, {a.repeat} runs)", med[label]))  # noqa: T201
    if a.rate_per_min < 1e9:
        for label in trees:
            m = med[label]
            print(f"rate limit {a.rate_per_min:g}/min, {label}: busiest 60 s {m['busiest_minute']:.0f} "  # noqa: T201
                  f"({(m['busiest_minute'] / a.rate_per_min - 1) * 100:+.2f}%); steady minute "
                  f"{m['steady_minute']:.0f} ({(m['steady_minute'] / a.rate_per_min - 1) * 100:+.2f}%)")
    if "B" in med:
        print(f"A/B sends/s {med['A']['sends_s'] / med['B']['sends_s']:.2f}x; "  # noqa: T201
              f"p99 B/A {med['B']['p99'] / med['A']['p99']:.2f}x")


if __name__ == "__main__":
    main()

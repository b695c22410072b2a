"""Bandit benchmark: regret in simulated environments, decision latency through the API, and
reward-to-policy freshness through Kafka and the worker.

    .venv/bin/python -m bench.bandits                  # everything (needs the stack: aura stack up)
    .venv/bin/python -m bench.bandits --sim-only       # regret only, no services

1. Regret. Environments with known arm means (Bernoulli rewards): ``stationary`` (5 arms, fixed
   means), ``drifting`` (5 arms whose means follow shifted sinusoids, so the best arm changes) and
   ``contextual`` (4 arms whose means depend on two binary context features). Every policy sees the
   same reward draws (common random numbers: one uniform matrix per seed, reward = u[t, arm] <
   mean[t, arm]); ours (aura/state/bandits.py) run next to river's (river.bandit) and an oracle that
   always pulls the best arm; cumulative regret = sum_t (best mean_t - mean_t of the pulled arm).
   Medians over seeds are printed.
2. Decision latency: ``aura api`` under uvicorn (a subprocess), POST /v1/bandits/{id}/choose
   sequentially over HTTP keep-alive; client-side latency p50/p99.
3. Freshness: ``aura worker`` (a subprocess); for each reward event, the time from producing it to
   the bandit state in Redis reflecting it (the API reads that state on the next choose).

Services use their own keyspace (aura_bench), topic prefix and Redis prefix; the Redis keys and
topics are removed at the end.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aura.state.bandits import feature_vector, new_state, pull, update, validate_bandit

# ---------------------------------------------------------------------------------------------
# environments


@dataclass
class Env:
    name: str
    means: np.ndarray  # [T, K] mean reward of each arm at each step
    contexts: list[dict[str, Any]] | None = None  # contextual: the context at each step


STATIONARY = [0.04, 0.05, 0.06, 0.08, 0.10]


def stationary(steps: int, _rng: np.random.Generator) -> Env:
    return Env("stationary", np.tile(np.array(STATIONARY), (steps, 1)))


def drifting(steps: int, _rng: np.random.Generator) -> Env:
    k = 5
    t = np.arange(steps)[:, None]
    phase = 2 * math.pi * np.arange(k)[None, :] / k
    means = 0.07 + 0.04 * np.sin(2 * math.pi * t / (steps / 2) + phase)  # two full cycles
    return Env("drifting", means)


CTX_BASE = np.array([0.05, 0.05, 0.05, 0.05])
CTX_W = np.array([[0.08, 0.00], [0.00, 0.08], [0.05, 0.05], [-0.03, -0.03]])  # effect of (mobile, returning)


def contextual(steps: int, rng: np.random.Generator) -> Env:
    feats = rng.integers(0, 2, size=(steps, 2))
    means = np.clip(CTX_BASE[None, :] + feats @ CTX_W.T, 0.005, 1.0)
    ctx = [{"device": "mobile" if f[0] else "desktop", "returning": float(f[1])} for f in feats]
    return Env("contextual", means, ctx)


# ---------------------------------------------------------------------------------------------
# policies under test: choose(t, ctx) -> arm index, learn(arm index, reward, ctx)


class Ours:
    def __init__(self, doc: dict[str, Any], k: int, seed: int) -> None:
        self.cfg = validate_bandit({"id": "sim", "arms": [str(i) for i in range(k)], **doc})
        self.state = new_state(self.cfg)
        self.rng = np.random.default_rng(seed)

    def _x(self, ctx: dict[str, Any] | None) -> np.ndarray | None:
        return feature_vector(self.cfg.features, ctx or {}) if self.cfg.policy == "linucb" else None

    def choose(self, t: int, ctx: dict[str, Any] | None) -> int:
        return int(pull(self.cfg, self.state, self.cfg.arms, self.rng, self._x(ctx))[0])

    def learn(self, arm: int, reward: float, ctx: dict[str, Any] | None) -> None:
        update(self.cfg, self.state, str(arm), reward, self._x(ctx))


class River:
    def __init__(self, policy: Any, k: int, contextual: bool = False) -> None:
        self.policy, self.arms, self.contextual = policy, list(range(k)), contextual

    @staticmethod
    def _ctx(ctx: dict[str, Any] | None) -> dict[str, float]:
        ctx = ctx or {}
        return {"mobile": 1.0 if ctx.get("device") == "mobile" else 0.0, "returning": float(ctx.get("returning", 0))}

    def choose(self, t: int, ctx: dict[str, Any] | None) -> int:
        if self.contextual:
            return self.policy.pull(self.arms, context=self._ctx(ctx))
        return self.policy.pull(self.arms)

    def learn(self, arm: int, reward: float, ctx: dict[str, Any] | None) -> None:
        if self.contextual:
            self.policy.update(arm, self._ctx(ctx), reward)
        else:
            self.policy.update(arm, reward)


class Oracle:
    def __init__(self, env: Env) -> None:
        self.env = env

    def choose(self, t: int, ctx: dict[str, Any] | None) -> int:
        return int(np.argmax(self.env.means[t]))

    def learn(self, arm: int, reward: float, ctx: dict[str, Any] | None) -> None:
        pass


class Uniform:
    def __init__(self, k: int, seed: int) -> None:
        self.k, self.rng = k, np.random.default_rng(seed)

    def choose(self, t: int, ctx: dict[str, Any] | None) -> int:
        return int(self.rng.integers(self.k))

    def learn(self, arm: int, reward: float, ctx: dict[str, Any] | None) -> None:
        pass


def policies(env: Env, seed: int) -> dict[str, Callable[[], Any]]:
    from river import bandit, proba

    k = env.means.shape[1]
    if env.contexts is not None:
        return {
            "ours linucb (alpha 0.5)": lambda: Ours({"policy": "linucb", "features": ["device=mobile", "returning"],
                                                     "params": {"alpha": 0.5}}, k, seed),
            "ours thompson (no context)": lambda: Ours({"policy": "thompson"}, k, seed),
            "river LinUCBDisjoint (alpha 0.5)": lambda: River(bandit.LinUCBDisjoint(alpha=0.5, seed=seed), k, True),
            "uniform random": lambda: Uniform(k, seed),
            "oracle": lambda: Oracle(env),
        }
    return {
        "ours thompson": lambda: Ours({"policy": "thompson"}, k, seed),
        "ours thompson discount 0.995": lambda: Ours({"policy": "thompson", "discount": 0.995}, k, seed),
        "ours ucb1 (c 1)": lambda: Ours({"policy": "ucb1", "params": {"c": 1.0}}, k, seed),
        "ours epsilon-greedy 0.1": lambda: Ours({"policy": "epsilon_greedy", "params": {"epsilon": 0.1}}, k, seed),
        "ours thompson + floor 0.05": lambda: Ours({"policy": "thompson", "floor": 0.05}, k, seed),
        "river ThompsonSampling(Beta)": lambda: River(bandit.ThompsonSampling(reward_obj=proba.Beta(), seed=seed), k),
        "river UCB (delta 1)": lambda: River(bandit.UCB(delta=1.0, seed=seed), k),
        "river EpsilonGreedy 0.1": lambda: River(bandit.EpsilonGreedy(epsilon=0.1, seed=seed), k),
        "uniform random": lambda: Uniform(k, seed),
        "oracle": lambda: Oracle(env),
    }


def run(env: Env, agent: Any, uniforms: np.ndarray) -> tuple[float, float]:
    """Cumulative regret at the end, and microseconds per step (choose + learn)."""
    best = env.means.max(axis=1)
    regret = 0.0
    started = time.perf_counter()
    for t in range(len(env.means)):
        ctx = env.contexts[t] if env.contexts is not None else None
        arm = agent.choose(t, ctx)
        reward = 1.0 if uniforms[t, arm] < env.means[t, arm] else 0.0
        agent.learn(arm, reward, ctx)
        regret += best[t] - env.means[t, arm]
    return regret, (time.perf_counter() - started) / len(env.means) * 1e6


def regret_tables(steps: int, seeds: int) -> None:
    for make in (stationary, drifting, contextual):
        results: dict[str, list[tuple[float, float]]] = {}
        for seed in range(seeds):
            rng = np.random.default_rng(1000 + seed)
            env = make(steps, rng)
            uniforms = rng.random(env.means.shape)
            for name, factory in policies(env, seed).items():
                results.setdefault(name, []).append(run(env, factory(), uniforms))
        print(f"\n## {env.name}: {steps} steps, {seeds} seeds (median cumulative regret; min-max; us/step)")
        print(f"{'policy':38s} {'regret':>9s} {'min':>8s} {'max':>8s} {'us/step':>8s}")
        for name, rows in sorted(results.items(), key=lambda kv: statistics.median(r for r, _ in kv[1])):
            regs = [r for r, _ in rows]
            print(f"{name:38s} {statistics.median(regs):9.1f} {min(regs):8.1f} {max(regs):8.1f} "
                  f"{statistics.median(u for _, u in rows):8.1f}")


# ---------------------------------------------------------------------------------------------
# services: API latency and freshness


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q / 100 * (len(s) - 1))))]


def wait_until(pred: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")


def services(latency_n: int, freshness_n: int) -> None:
    import httpx

    from aura import bootstrap, layout
    from aura.apikeys import KeyStore
    from aura.keys import RedisKeys
    from aura.producer import EventProducer
    from aura.settings import REPO_ROOT, Settings, settings_env
    from infra.migrate import ensure_topics, migrate

    tag = f"bench{uuid.uuid4().hex[:8]}"
    port = 18000 + os.getpid() % 1000
    s = Settings().replace(cassandra_keyspace="aura_bench", topic_prefix=tag, redis_prefix=tag,
                           consumer_group=f"{tag}-w", topic_partitions=4, api_port=port)
    migrate(s)
    ensure_topics(s, layout.ALL_TOPICS)
    session = bootstrap.cassandra_session(s)
    _rec, token = KeyStore(s, session).create("bench", ("admin",), 1e6, 1_000_000)
    env = {**os.environ, **settings_env(s)}
    logs = Path(s.home) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    procs: list[subprocess.Popen[bytes]] = []
    redis = bootstrap.redis_sync(s)
    try:
        api_log = open(logs / f"{tag}-api.log", "wb")  # noqa: SIM115
        procs.append(subprocess.Popen([sys.executable, "-m", "aura.cli", "api", "--port", str(port)], cwd=REPO_ROOT,
                                      env=env, stdout=api_log, stderr=subprocess.STDOUT))
        base = f"http://127.0.0.1:{port}/v1"
        client = httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=10)

        def api_up() -> bool:
            try:
                return client.get(f"{base}/health").status_code in (200, 503)
            except httpx.HTTPError:
                return False

        wait_until(api_up, 60, "the API")
        bid = f"bench-{uuid.uuid4().hex[:6]}"
        r = client.post(f"{base}/bandits", json={"id": bid, "policy": "thompson", "arms": ["a", "b", "c", "d", "e"],
                                                 "floor": 0.05})
        assert r.status_code == 201, r.text
        ctx_bid = f"{bid}-ctx"
        r = client.post(f"{base}/bandits", json={"id": ctx_bid, "policy": "linucb", "arms": ["a", "b", "c", "d"],
                                                 "features": ["device=mobile", "visits"]})
        assert r.status_code == 201, r.text

        for name, b, body in (("thompson, 5 arms", bid, {"user_id": "u1"}),
                              ("linucb, 4 arms, 2 features", ctx_bid,
                               {"user_id": "u1", "context": {"device": "mobile", "visits": 3}})):
            for _ in range(200):  # warm-up
                client.post(f"{base}/bandits/{b}/choose", json=body)
            lat = []
            for _ in range(latency_n):
                t0 = time.perf_counter()
                r = client.post(f"{base}/bandits/{b}/choose", json=body)
                lat.append((time.perf_counter() - t0) * 1000)
                assert r.status_code == 200, r.text
            print(f"\n## decision latency, POST /v1/bandits/{{id}}/choose ({name}), uvicorn 1 process, "
                  f"{latency_n} sequential requests")
            print(f"p50 {pct(lat, 50):.2f} ms  p90 {pct(lat, 90):.2f} ms  p99 {pct(lat, 99):.2f} ms  "
                  f"max {max(lat):.2f} ms")

        # freshness: worker folds the decisions made above, then each reward is timed
        worker_log_path = logs / f"{tag}-worker.log"
        worker_log = open(worker_log_path, "wb")  # noqa: SIM115
        procs.append(subprocess.Popen([sys.executable, "-m", "aura.cli", "worker"], cwd=REPO_ROOT, env=env,
                                      stdout=worker_log, stderr=subprocess.STDOUT))
        wait_until(lambda: b"Worker ready" in worker_log_path.read_bytes(), 120, "the worker")
        decisions = [client.post(f"{base}/bandits/{bid}/choose", json={"user_id": f"fu{i}"}).json()["decision_id"]
                     for i in range(freshness_n)]
        key = RedisKeys(s.redis.prefix).bandit_state(bid)
        total = 200 + latency_n + freshness_n
        wait_until(lambda: redis.hget(key, "state") and f'"pulls": {total}' in redis.hget(key, "state"), 120,
                   "the decisions to be folded")
        producer = EventProducer(s, bootstrap.kafka_producer(s, **{"linger.ms": 0}))
        fresh = []
        now = int(time.time() * 1000)
        for i, d in enumerate(decisions):
            ver = redis.hget(key, "ver")
            t0 = time.perf_counter()
            producer.send({"event_id": f"{tag}-r{i}", "event_type": "click", "user_id": f"fu{i}", "item_id": "x",
                           "event_time": now + i, "recommendation_id": d})
            producer.producer.flush(5)
            while redis.hget(key, "ver") == ver:
                time.sleep(0.0005)
                if time.perf_counter() - t0 > 10:
                    raise SystemExit("a reward was not folded within 10 s")
            fresh.append((time.perf_counter() - t0) * 1000)
        print(f"\n## reward-to-policy freshness: produce (acks) -> Kafka -> worker -> Redis state, {freshness_n} "
              f"sequential rewards (worker batch within {s.worker.batch_within_s * 1000:.0f} ms)")
        print(f"p50 {pct(fresh, 50):.1f} ms  p90 {pct(fresh, 90):.1f} ms  p99 {pct(fresh, 99):.1f} ms  "
              f"max {max(fresh):.1f} ms")
        client.delete(f"{base}/bandits/{bid}")
        client.delete(f"{base}/bandits/{ctx_bid}")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        for k in redis.scan_iter(f"{s.redis.prefix}:*", count=1000):
            redis.delete(k)
        admin = bootstrap.kafka_admin(s)
        mine = [layout.topic(s, spec) for spec in layout.ALL_TOPICS]
        for fut in admin.delete_topics(mine, operation_timeout=30).values():
            try:
                fut.result()
            except Exception:  # noqa: BLE001, S110 - best effort clean-up
                pass
        session.cluster.shutdown()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=10_000)
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--latency-n", type=int, default=2000)
    p.add_argument("--freshness-n", type=int, default=300)
    p.add_argument("--sim-only", action="store_true")
    p.add_argument("--services-only", action="store_true")
    args = p.parse_args(argv)
    print(f"# bench.bandits  {time.strftime('%Y-%m-%d %H:%M:%S')}  cpus={os.cpu_count()}  "
          f"load={os.getloadavg()[0]:.2f}")
    if not args.services_only:
        regret_tables(args.steps, args.seeds)
    if not args.sim_only:
        services(args.latency_n, args.freshness_n)
    return 0


if __name__ == "__main__":
    sys.exit(main())

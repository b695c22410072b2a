"""Degradation with REAL outages: the API keeps answering when Redis dies, and when Cassandra dies too.

The shared stack must stay up for the other engineers, so this test takes its own dependencies
down instead: a private ``redis-server`` on a free port (SIGKILLed, then restarted), and the real
Cassandra reached through a TCP proxy that the test closes (every open connection is cut and new
ones are refused, which is what the driver sees when the node dies). That is cheaper than a
private Cassandra node (1 GiB heap, tens of seconds to start on two shared cores) and exercises
the same client paths: connection errors, NoHostAvailable, the breakers, the fallbacks.

Checked: Redis down -> profile activity from Cassandra, recommendations from the stale popular
list with ``X-Aura-Degraded``, keys authenticated from the local cache or Cassandra, the Redis
breaker open; both down -> 503 with Retry-After where nothing can answer, the stale popular list
where it can; no route answers 500 in any phase (every route of the app is swept, so routes added
later are covered); Redis back -> the breaker closes and answers are fresh again.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading
import uuid

import pytest
import redis
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient

from aura.keys import RedisKeys
from aura.state import profile_codec
from aura.state.profiles import Profile
from serving.app import create_app
from tests.conftest import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateRedis:
    """A redis-server of this test only (never the shared one)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> PrivateRedis:
        from infra.stack import ensure_redis_server

        self.proc = subprocess.Popen(  # noqa: S603
            [ensure_redis_server(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        wait_for(lambda: _ping(client), timeout=10, what="private redis")
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def _ping(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


class TcpProxy:
    """127.0.0.1:<port> -> 127.0.0.1:<target>; ``stop`` cuts every connection and refuses new ones."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = free_port()
        self.listener: socket.socket | None = None
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()

    def start(self) -> TcpProxy:
        lst = socket.socket()
        lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lst.bind(("127.0.0.1", self.port))
        lst.listen(64)
        self.listener = lst
        threading.Thread(target=self._accept, args=(lst,), daemon=True).start()
        return self

    def _accept(self, lst: socket.socket) -> None:
        while True:
            try:
                client, _ = lst.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def stop(self) -> None:
        if self.listener is not None:
            self.listener.close()
            self.listener = None
        with self.lock:
            for s in self.conns:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
            self.conns.clear()


def sweep(client: TestClient) -> list[tuple[str, str, int]]:
    """Call every route of the app once (admin key, placeholder ids, empty JSON bodies): any 5xx
    other than 503 is a failure to degrade."""
    bad = []
    for ctx in iter_route_contexts(client.app.routes):
        if not ctx.methods or ctx.path in ("/docs", "/docs/oauth2-redirect", "/redoc"):
            continue
        path = re.sub(r"\{[^}]+\}", "zz-degraded", ctx.path)
        for method in sorted(ctx.methods - {"HEAD", "OPTIONS"}):
            kwargs = {"json": {}} if method in ("POST", "PUT", "PATCH") else {}
            r = client.request(method, path, **kwargs)
            if r.status_code >= 500 and r.status_code != 503:
                bad.append((method, path, r.status_code))
            elif r.status_code == 503 and "detail" not in r.json() and path != "/v1/health":
                bad.append((method, path, 503))
    return bad


def test_api_degrades_instead_of_failing_when_redis_then_cassandra_die(isolated, api_key, cassandra, tmp_path):
    rport = free_port()
    private = PrivateRedis(rport).start()
    proxy = TcpProxy(isolated.cassandra.port).start()
    s = isolated.replace(**{"redis_url": f"redis://127.0.0.1:{rport}/0", "cassandra_port": proxy.port,
                                    "breaker_reset_s": 1.0, "api_redis_timeout_s": 0.3, "home": tmp_path,
                                    "health_cache_s": 0.0})
    keys = RedisKeys(s.redis.prefix)
    user = f"deg-{uuid.uuid4().hex[:8]}"
    seed = redis.Redis(port=rport, decode_responses=True)
    profile_codec.write_sync(seed, keys, user, Profile(counts={"view": 5}, first_seen=1000, last_seen=5000,
                                                       recent=["i5", "i4"], version=1))
    seed.zadd(keys.recs_popular(), {"p1": 30, "p2": 20, "p3": 10})
    cassandra.execute("INSERT INTO user_activity (user_id, counts, first_seen, last_seen, recent_items) "
                      "VALUES (%s, %s, %s, %s, %s)", (user, {"view": 2}, 1000, 2000, ["i2"]))
    admin = api_key("admin")
    try:
        with TestClient(create_app(s), raise_server_exceptions=False, headers={"X-API-Key": admin}) as c:
            state = c.app.state.aura
            # all up
            r = c.get(f"/v1/profiles/{user}/activity")
            assert r.status_code == 200 and r.json()["source"] == "redis" and r.json()["counts"] == {"view": 5}
            wait_for(lambda: state.popular.get(), timeout=10, what="the popular list cached")
            r = c.get(f"/v1/recommendations/users/{user}")
            assert r.status_code == 200 and "X-Aura-Degraded" not in r.headers
            assert sweep(c) == []

            # Redis dies
            private.kill()
            r = c.get(f"/v1/profiles/{user}/activity")
            assert r.status_code == 200 and r.json()["source"] == "cassandra" and r.json()["counts"] == {"view": 2}
            r = c.get(f"/v1/recommendations/users/{user}?limit=2")
            assert r.status_code == 200 and r.headers["X-Aura-Degraded"] == "stale-popular"
            assert [i["item_id"] for i in r.json()["items"]] == ["p1", "p2"]
            h = c.get("/v1/health")
            assert h.status_code == 503 and h.json()["status"] == "degraded"
            assert not h.json()["dependencies"]["redis"]["ok"] and h.json()["dependencies"]["cassandra"]["ok"]
            for _ in range(5):
                c.get(f"/v1/profiles/{user}/activity")
            st = c.get("/v1/stats").json()
            assert st["breakers"]["redis"]["opened_total"] >= 1 and st["counters_stale"] is True
            assert state.breakers.redis.rejected_total > 0  # calls skipped, not timed out
            fresh = api_key("read")  # never seen by this process: validated in Cassandra
            assert c.get(f"/v1/profiles/{user}/activity", headers={"X-API-Key": fresh}).status_code == 200
            assert c.get(f"/v1/profiles/{user}/activity", headers={"X-API-Key": fresh[:-2] + "AA"}).status_code == 401
            assert sweep(c) == []

            # Cassandra dies too
            proxy.stop()
            r = c.get(f"/v1/profiles/{user}/activity")
            assert r.status_code == 503 and "detail" in r.json() and int(r.headers["Retry-After"]) >= 1
            r = c.post("/v1/recommendations/generate", json={"user_id": user, "limit": 3})
            assert r.status_code == 200 and r.headers["X-Aura-Degraded"] == "stale-popular"
            assert [i["item_id"] for i in r.json()["items"]] == ["p1", "p2", "p3"]
            assert c.get(f"/v1/profiles/{user}/activity", headers={"X-API-Key": fresh}).status_code == 503
            unknown = api_key("read")  # neither store can vouch for it: 503, not 401 and not 500
            r = c.get(f"/v1/profiles/{user}/activity", headers={"X-API-Key": unknown})
            assert r.status_code == 503 and r.headers["X-Aura-Degraded"] == "cassandra-down"
            assert c.get("/v1/health").json()["status"] in ("down", "degraded")  # kafka still answers
            assert sweep(c) == []

            # Redis comes back (empty): the breaker closes after its reset period, answers are fresh
            private = PrivateRedis(rport).start()
            seed = redis.Redis(port=rport, decode_responses=True)
            seed.zadd(keys.recs_popular(), {"n1": 5})

            def fresh_again():
                r = c.get(f"/v1/recommendations/users/{user}")
                return r.status_code == 200 and "X-Aura-Degraded" not in r.headers

            wait_for(fresh_again, timeout=20, interval=0.3, what="recommendations served fresh again")
            assert state.breakers.redis.state == "closed"
    finally:
        proxy.stop()
        private.kill()


def test_api_started_while_cassandra_is_down_reconnects_by_itself(isolated, api_key, cassandra, tmp_path):
    proxy = TcpProxy(isolated.cassandra.port)  # port reserved, nothing listening yet: Cassandra is "down"
    s = isolated.replace(**{"cassandra_port": proxy.port, "breaker_reset_s": 0.5, "home": tmp_path,
                                    "health_cache_s": 0.0})
    user = f"late-{uuid.uuid4().hex[:8]}"
    cassandra.execute("INSERT INTO user_activity (user_id, counts, first_seen, last_seen, recent_items) "
                      "VALUES (%s, %s, %s, %s, %s)", (user, {"click": 1}, 1000, 2000, ["i9"]))
    token = api_key("read")
    try:
        with TestClient(create_app(s), raise_server_exceptions=False, headers={"X-API-Key": token}) as c:
            state = c.app.state.aura
            assert state.cassandra is None
            h = c.get("/v1/health").json()
            assert h["status"] == "degraded" and not h["dependencies"]["cassandra"]["ok"]
            r = c.get(f"/v1/profiles/{user}/activity")  # the key cannot be checked anywhere yet
            assert r.status_code == 503 and "Retry-After" in r.headers
            proxy.start()
            wait_for(lambda: state.cassandra is not None, timeout=30, interval=0.2, what="background reconnect")
            r = c.get(f"/v1/profiles/{user}/activity")
            assert r.status_code == 200 and r.json()["source"] == "cassandra" and r.json()["counts"] == {"click": 1}
            assert c.get("/v1/health").json()["dependencies"]["cassandra"]["ok"]
    finally:
        proxy.stop()

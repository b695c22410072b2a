"""System routes of a real ``aura api --workers 2``: /metrics sums every worker (multiprocess mode)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys

import httpx
import pytest

from aura.settings import REPO_ROOT, settings_env
from tests.conftest import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_metrics_of_a_multi_worker_api_count_every_request(isolated, api_key, tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    s = isolated.replace(**{"home": tmp_path})
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    log = open(tmp_path / "api.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "aura.cli", "api", "--port", str(port), "--workers", "2"],
                            cwd=REPO_ROOT, env={**env, **settings_env(s)}, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        def up() -> bool:
            try:
                return httpx.get(f"{base}/metrics", timeout=2).status_code == 200
            except httpx.HTTPError:
                return proc.poll() is not None

        wait_for(up, timeout=60, interval=0.3, what="aura api --workers 2")
        assert proc.poll() is None, (tmp_path / "api.log").read_text()
        token = api_key("read")
        n = 60
        with httpx.Client(base_url=base, headers={"X-API-Key": token}, timeout=5) as c:
            for i in range(n):  # new connections, so both workers get some
                r = httpx.get(f"{base}/v1/profiles/nobody-{i}/activity", headers={"X-API-Key": token}, timeout=5)
                assert r.status_code == 404
            for _ in range(10):  # whichever worker answers the scrape, it reports the sum
                text = c.get("/metrics").text
                m = re.search(r'aura_http_responses_total\{method="GET",route="/v1/profiles/\{user_id\}/activity",'
                              r'status="4xx"\} (\S+)', text)
                assert m and float(m.group(1)) == n, m and m.group(0)
        assert len(list((tmp_path / "run").glob("prometheus-*/*.db"))) >= 2  # both workers wrote their share
    finally:
        proc.terminate()
        proc.wait(20)
        log.close()


def test_lone_surrogates_in_json_bodies_get_422_never_500(api_client):
    """``"\\ud9d2"`` is valid JSON but not encodable text: echoing it in a 422, or encoding it in a
    route (Kafka keys, hashes), must not turn into a 500 (found by the OpenAPI fuzzer)."""
    bodies = {
        "/v1/experiments/assign": '{"user_id": "u\\ud9d2x"}',
        "/v1/recommendations/generate": '{"user_id": "u\\ud9d2x", "limit": 3}',
        "/v1/events": '{"event_id": "e\\ud9d2", "event_type": "view", "user_id": "u", "event_time": 1}',
    }
    for path, body in bodies.items():
        r = api_client.post(path, content=body, headers={"content-type": "application/json"})
        assert r.status_code == 422, (path, r.status_code, r.text[:200])
        assert "detail" in r.json()


def test_context_times_outside_the_calendar_get_422_never_500(api_client):
    """``context.time`` beyond year 9999 once reached ``datetime.fromtimestamp`` (found by the fuzzer)."""
    for path in ("/v1/experiments/assign", "/v1/personalization/evaluate"):
        ok = api_client.post(path, json={"user_id": "u1", "context": {"time": 1_700_000_000_000}})
        assert ok.status_code == 200, (path, ok.status_code, ok.text[:200])  # the same body with a sane time
        for t in (2_282_000_000_000_000, -1):
            r = api_client.post(path, json={"user_id": "u1", "context": {"time": t}})
            assert r.status_code == 422, (path, t, r.status_code, r.text[:200])

"""Console benchmark: bundle size and the first load of ``/console`` over loopback.

    .venv/bin/python -m bench.console_load [--runs 7]      # needs the stack (aura stack up) and a build

1. Bundle: every file the first visit downloads (index.html and the hashed JS and CSS of
   serving/console/dist), raw and gzip -9 sizes (uvicorn does not compress; a proxy in front would).
2. First load: ``aura api`` (a subprocess, its own keyspace aura_bench and Redis prefix) serves the
   build; Debian's headless chromium (Playwright), a fresh profile per run (cold cache), opens
   ``/console/#/overview`` with an API key already in session storage (the sign-in is not timed).
   Measured from navigation start in the page: DOMContentLoaded, the first response of
   ``/v1/analytics/engagement``, and time to first data (the overview says "updated", i.e. its
   live engagement answer has been rendered). Then a reload in the same browser (warm: the hashed
   assets come from the cache). Medians over ``--runs``.

The counters are empty (no worker runs): the overview's requests are answered from Redis with zeros,
which costs the same round trips as with traffic.
"""

from __future__ import annotations

import argparse
import gzip
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from aura.settings import REPO_ROOT

DIST = REPO_ROOT / "serving" / "console" / "dist"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
TIMING_JS = """() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const eng = performance.getEntriesByType('resource').filter(r => r.name.includes('/v1/analytics/engagement'));
  return {dcl: nav.domContentLoadedEventEnd, first_api: eng.length ? Math.min(...eng.map(r => r.responseEnd)) : null,
          transferred: performance.getEntriesByType('resource').reduce((s, r) => s + (r.transferSize || 0), 0)
                       + (nav.transferSize || 0)};
}"""


def bundle() -> dict[str, tuple[int, int]]:
    """name -> (raw bytes, gzip -9 bytes) of index.html and every asset."""
    if not (DIST / "index.html").is_file():
        raise SystemExit("no console build: run `make console` first")
    files = [DIST / "index.html", *sorted((DIST / "assets").iterdir())]
    return {f.name: (f.stat().st_size, len(gzip.compress(f.read_bytes(), 9))) for f in files}


def wait_until(pred: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}")


def first_loads(runs: int) -> list[dict[str, float]]:
    import httpx
    from playwright.sync_api import sync_playwright

    from aura import bootstrap
    from aura.apikeys import KeyStore
    from aura.settings import Settings, settings_env
    from infra.console import ensure_chromium
    from infra.migrate import migrate

    chromium = ensure_chromium()
    tag = f"bench{uuid.uuid4().hex[:8]}"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    s = Settings().replace(cassandra_keyspace="aura_bench", topic_prefix=tag, redis_prefix=tag)
    migrate(s)
    session = bootstrap.cassandra_session(s)
    _rec, token = KeyStore(s, session).create("bench-console", ("admin",), 1e6, 1_000_000)
    log = Path(tempfile.mkdtemp(prefix="console-bench-")) / "api.log"
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    with open(log, "wb") as out:
        api = subprocess.Popen([sys.executable, "-m", "aura.cli", "api", "--port", str(port)], cwd=REPO_ROOT,
                               env={**env, **settings_env(s)}, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    results: list[dict[str, float]] = []
    try:
        def up() -> bool:
            try:
                return httpx.get(f"{base}/v1/health", timeout=2).status_code in (200, 503)
            except httpx.HTTPError:
                return api.poll() is not None

        wait_until(up, 90, "the API")
        init = f"sessionStorage.setItem('aura.console.apiKey', {token!r})"
        with sync_playwright() as pw:
            for _ in range(runs):
                with tempfile.TemporaryDirectory(prefix="console-bench-profile-") as profile:
                    ctx = pw.chromium.launch_persistent_context(profile, executable_path=chromium, headless=True,
                                                                args=FLAGS, viewport={"width": 1400, "height": 1000})
                    ctx.add_init_script(init)
                    page = ctx.pages[0] if ctx.pages else ctx.new_page()
                    row: dict[str, float] = {}
                    for phase in ("cold", "warm"):
                        if phase == "cold":
                            page.goto(f"{base}/console/#/overview")
                        else:
                            page.reload()
                        page.get_by_text("Live · updated").wait_for(timeout=60_000)  # no eval: the page's CSP
                        row[f"{phase}_data"] = page.evaluate("performance.now()")
                        t = page.evaluate(TIMING_JS)
                        row[f"{phase}_dcl"], row[f"{phase}_api"] = t["dcl"], t["first_api"] or float("nan")
                        row[f"{phase}_bytes"] = t["transferred"]
                    results.append(row)
                    ctx.close()
    finally:
        api.terminate()
        api.wait(20)
        redis = bootstrap.redis_sync(s)
        for key in redis.scan_iter(f"{tag}:*", count=1000):
            redis.delete(key)
        session.cluster.shutdown()
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.console_load", description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=7)
    args = p.parse_args(argv)
    sizes = bundle()
    raw, gz = sum(r for r, _ in sizes.values()), sum(g for _, g in sizes.values())
    print("## bundle (first visit downloads every file)")
    for name, (r, g) in sizes.items():
        print(f"  {name:36s} {r / 1024:8.1f} KiB  gzip {g / 1024:7.1f} KiB")
    print(f"  {'total':36s} {raw / 1024:8.1f} KiB  gzip {gz / 1024:7.1f} KiB")
    rows = first_loads(args.runs)
    print(f"\n## first load of /console/#/overview over loopback, median of {len(rows)} runs (ms from navigation)")
    for phase in ("cold", "warm"):
        med = {k: statistics.median(r[f"{phase}_{k}"] for r in rows) for k in ("dcl", "api", "data", "bytes")}
        print(f"  {phase}: DOMContentLoaded {med['dcl']:.0f}, first engagement answer {med['api']:.0f}, "
              f"first data rendered {med['data']:.0f}; transferred {med['bytes'] / 1024:.0f} KiB")
    print("  runs (cold data ms): " + ", ".join(f"{r['cold_data']:.0f}" for r in rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The operator console in a real headless Chromium (Debian's ``chromium``, driven by Playwright)
against the real API on the real stack, fed by demo traffic: every page of the console's registry
loads without console errors and shows live data (a screenshot of each goes to docs/console/), and
the main flows work: look up a user and see their recommendations; create a rule and test it;
create and start an experiment.

The pages come from the console itself (``window.auraConsolePages``, built from
serving/console/src/pages/registry.ts), so pages added there are covered without touching this file.
Chromium is installed with apt-get when missing (infra/console.py); if it cannot be, the test fails
with the installer's error rather than skipping.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from aura import layout
from aura.settings import REPO_ROOT, Settings, settings_env
from tests.conftest import WorkerProcess, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow]

SHOTS = REPO_ROOT / "docs" / "console"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage"]
TRAFFIC = textwrap.dedent("""
    from aura import bootstrap, demo
    from aura.producer import EventProducer
    from aura.settings import get_settings
    s = get_settings()
    producer = EventProducer(s, bootstrap.kafka_producer(s))
    demo.run(producer, rate=6.0, history_min=3, speed=3.0, report_every_s=60.0)
""")


@dataclass
class Console:
    base: str
    key: str
    settings: Settings
    logs: dict[str, Path] = field(default_factory=dict)

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.base, headers={"X-API-Key": self.key}, timeout=10)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _spawn(argv: list[str], settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    out = open(log, "ab")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(argv, cwd=REPO_ROOT, env={**env, **settings_env(settings)}, stdout=out,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def chromium() -> str:
    from infra.console import ensure_chromium

    return ensure_chromium()  # raises with apt-get's output when it cannot be installed


@pytest.fixture(scope="module")
def console(stack: Settings, key_store: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    """A worker, the API (with the console build) on a free port and demo traffic, all on this
    module's own topics, consumer group and Redis prefix."""
    from aura import layout
    from infra.console import build
    from infra.migrate import drop_topics, ensure_topics

    build(if_missing=True)
    tmp = tmp_path_factory.mktemp("console")
    tag = f"t{uuid.uuid4().hex[:10]}"
    s = stack.replace(**{"topic_prefix": tag, "redis_prefix": tag, "consumer_group": f"{tag}-worker",
                         "topic_partitions": 4, "home": tmp, "recs_publish_interval_s": 0.5,
                         "recs_content_rebuild_s": 0.5})
    ensure_topics(s, layout.ALL_TOPICS)
    worker = WorkerProcess(s, tmp / "worker.log")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        worker.start(ready_timeout=180)
        port = _free_port()
        procs.append(_spawn([sys.executable, "-m", "aura.cli", "api", "--port", str(port)], s, tmp / "api.log"))
        procs.append(_spawn([sys.executable, "-c", TRAFFIC], s, tmp / "traffic.log"))
        _rec, key = key_store.create("console-e2e", ("admin",), 100_000.0, 100_000)
        c = Console(base=f"http://127.0.0.1:{port}", key=key, settings=s,
                    logs={"api": tmp / "api.log", "worker": tmp / "worker.log", "traffic": tmp / "traffic.log"})

        def up() -> bool:
            if procs[0].poll() is not None:
                raise AssertionError(f"the API exited:\n{c.logs['api'].read_text()[-3000:]}")
            try:
                return httpx.get(f"{c.base}/v1/health", timeout=3).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, timeout=120, interval=0.5, what="the API")
        with c.api() as http:
            def live() -> bool:
                events = http.get("/v1/analytics/engagement", params={"grain": "minute", "timeframe": "30m"}).json()
                profiles = http.get("/v1/profiles", params={"limit": 5}).json()["profiles"]
                trending = http.get("/v1/recommendations/trending").json()["items"]
                return bool(sum(b["events"] for b in events["series"]) > 0 and profiles and trending)

            wait_for(live, timeout=240, interval=1.0, what="demo traffic in the analytics, profiles and trending")
            created = _configure(http, tag)  # pages of configuration objects show rows on a fresh keyspace too
        try:
            yield c
        finally:
            with c.api() as http:
                for path in reversed(created):
                    http.delete(path)
    finally:
        for p in reversed(procs):
            _stop(p)
        worker.stop()
        drop_topics(s, tag)


def _configure(http: httpx.Client, tag: str) -> list[str]:
    """What ``make run`` configures before the demo traffic, under this module's own ids: an experiment,
    a rule, a bandit, a placement's strategies and a draft campaign (a draft never sends). Returns the
    paths to delete afterwards."""
    oid = f"console-fixture-{tag}"
    made: list[str] = []
    for path, doc in (
        ("/v1/experiments", {"id": oid, "variants": [{"id": "control"}, {"id": "treat"}],
                             "conversion_events": ["purchase"]}),
        ("/v1/personalization/rules", {"id": oid, "priority": 1, "variant": "fixture",
                                       "conditions": {"field": "context.page", "op": "equals", "value": oid}}),
        ("/v1/bandits", {"id": oid, "arms": ["a", "b"]}),
        ("/v1/campaigns", {"id": oid, "channel": "in_app", "trigger": {"type": "api"},
                           "template": {"title": "Hi", "body": "{{ recommendations | length }} picks"}}),
    ):
        r = http.post(path, json=doc)
        assert r.status_code == 201, (path, r.text)
        made.append(f"{path}/{oid}")
    r = http.put(f"/v1/strategies/{oid}", json={"strategies": ["hybrid", "trending"]})
    assert r.status_code == 201, r.text
    made.append(f"/v1/strategies/{oid}")
    return made


@dataclass
class Browser:
    page: Any
    errors: list[str]

    def expect_clean(self, where: str) -> None:
        assert not self.errors, f"console errors on {where}: {self.errors}"


@pytest.fixture
def browser(console: Console, chromium: str, tmp_path: Path) -> Iterator[Browser]:
    """A signed-in page of the console (the key pasted on the sign-in screen, as an operator does)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(  # a fresh profile directory per test
            str(tmp_path / "profile"), executable_path=chromium, headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": 1400, "height": 1000})
        page = context.pages[0] if context.pages else context.new_page()
        page.set_default_timeout(60_000)
        errors: list[str] = []
        page.on("console", lambda m: errors.append(f"{m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
        page.on("response", lambda r: errors.append(f"HTTP {r.status} {r.request.method} {r.url}")
                if r.status >= 400 else None)
        page.goto(f"{console.base}/console/")
        page.get_by_label("API key").fill(console.key)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_selector("nav")
        assert console.key not in httpx.get(f"{console.base}/console/").text  # never in the page source
        assert page.evaluate("sessionStorage.getItem('aura.console.apiKey')") == console.key
        try:
            yield Browser(page, errors)
        finally:
            context.close()


def shows_live_data(page: Any) -> bool:
    """A page shows data when its main area has table rows or a drawn chart line, and no error."""
    return bool(page.evaluate("""() => {
        const main = document.querySelector('main') || document.body;
        return main.querySelectorAll('table tbody tr, path.recharts-line-curve').length > 0;
    }"""))


def alerts(page: Any) -> list[str]:
    return [t.strip() for t in page.locator("main [role=alert]").all_inner_texts()]


def demo_user(console: Console) -> str:
    """A recently active user whose profile in this console's own state (its Redis prefix) has
    affinities to show: the search index lives in the test keyspace every suite shares."""
    with console.api() as http:
        def find() -> str | None:
            since = int((time.time() - 3600) * 1000)
            listed = http.get("/v1/profiles", params={"limit": 100, "active_since": since}).json()["profiles"]
            for p in listed:
                r = http.get(f"/v1/profiles/{p['user_id']}")
                if r.status_code == 200 and r.json()["affinities"]:
                    return str(p["user_id"])
            return None

        return str(wait_for(find, timeout=60, interval=1.0, what="a demo user in the search index"))


def test_every_page_loads_live_data_without_errors(console: Console, browser: Browser) -> None:
    page = browser.page
    pages = page.evaluate("window.auraConsolePages")
    assert pages and {"/overview", "/profiles", "/recommendations", "/personalization", "/experiments"} <= {
        p["path"] for p in pages}
    nav = set(page.eval_on_selector_all("nav a[href^='#/']", "els => els.map(e => e.getAttribute('href'))"))
    assert {f"#{p['path']}" for p in pages} <= nav, nav  # every registered page is in the navigation
    SHOTS.mkdir(parents=True, exist_ok=True)
    for p in pages:
        page.goto(f"{console.base}/console/#{p['path']}")
        page.wait_for_selector("main h1")
        try:
            wait_for(lambda: shows_live_data(page), timeout=60, interval=0.5, what=f"live data on {p['path']}")
        except AssertionError as exc:
            raise AssertionError(f"{p['path']}: {exc}; alerts: {alerts(page)}") from exc
        page.wait_for_load_state("networkidle")
        assert alerts(page) == [], (p["path"], alerts(page))
        browser.expect_clean(p["path"])
        page.screenshot(path=str(SHOTS / f"{p['path'].strip('/').replace('/', '-')}.png"), full_page=True)

    # the overview refreshes by itself: its data requests repeat while the page stays open
    page.goto(f"{console.base}/console/#/overview")
    for _ in range(3):  # each refresh is a new request (the sync driver sees events while it waits)
        page.wait_for_event("request", predicate=lambda r: "/v1/analytics/engagement" in r.url, timeout=60_000)
    assert page.locator("#kpi-events-per-second").inner_text() not in ("", "–")
    # the worker group's consumer lag, read from Kafka (/v1/stats/lag)
    page.wait_for_selector("[data-testid='lag'] tr")
    assert layout.worker_group(console.settings) in page.locator("[data-testid='lag']").inner_text()
    # dark mode on a narrow screen
    page.get_by_role("button", name="Dark mode").click()
    page.set_viewport_size({"width": 390, "height": 844})
    wait_for(lambda: page.evaluate("document.documentElement.dataset.theme") == "dark", timeout=10)
    page.wait_for_selector("path.recharts-line-curve")
    page.screenshot(path=str(SHOTS / "overview-narrow-dark.png"), full_page=False)
    browser.expect_clean("dark mode")


def test_look_up_a_user_and_see_their_recommendations(console: Console, browser: Browser) -> None:
    page = browser.page
    user = demo_user(console)
    page.goto(f"{console.base}/console/#/profiles")
    page.get_by_label("User id").fill(user)
    page.get_by_role("button", name="Look up").click()
    page.wait_for_selector("[data-testid='affinities']")
    assert f"user={user}" in page.url
    rows = page.locator("[data-testid='recs-default'] tbody tr")
    wait_for(lambda: rows.count() > 0, timeout=60, what="recommendations for the user")
    first = rows.first.inner_text()
    assert any(src in first for src in ("cooc", "popular", "trending", "content", "ease", "user", "collab")), first
    page.screenshot(path=str(SHOTS / "flow-profile-lookup.png"), full_page=True)
    browser.expect_clean("profile lookup")


def test_create_a_rule_and_test_it(console: Console, browser: Browser) -> None:
    page = browser.page
    rule_id = f"console-e2e-{uuid.uuid4().hex[:6]}"
    device = f"dev-{rule_id}"
    page.goto(f"{console.base}/console/#/personalization")
    page.get_by_role("button", name="New rule").click()
    page.get_by_label("Rule id").fill(rule_id)
    # the server's field error comes back to the field (an unknown profile field is a 422)
    page.get_by_label("Conditions (JSON)").fill('{"field": "nowhere.x", "op": "equals", "value": 1}')
    page.get_by_role("button", name="Create rule").click()
    page.wait_for_selector("text=The rule was not saved")
    assert "422" in page.get_by_text("The rule was not saved").locator("..").locator("..").inner_text()
    try:
        condition = f'{{"field": "context.device", "op": "equals", "value": "{device}"}}'
        page.get_by_label("Conditions (JSON)").fill(condition)
        page.get_by_label("Priority").fill("900")
        page.get_by_label("Variant").fill("e2e")
        page.get_by_label("Content (JSON)").fill('{"banner": "console-e2e"}')
        page.get_by_role("button", name="Create rule").click()
        page.wait_for_selector(f"tr[data-rule='{rule_id}']")
        with console.api() as http:
            assert http.get(f"/v1/personalization/rules/{rule_id}").json()["priority"] == 900
        page.get_by_label("Test user id").fill("console-e2e-user")
        page.get_by_label("Device").fill(device)
        page.get_by_role("button", name="Evaluate").click()
        winner = page.locator("#evaluation-winner")
        winner.wait_for()
        assert rule_id in winner.inner_text() and "console-e2e" in winner.inner_text()
        page.screenshot(path=str(SHOTS / "flow-rule-test.png"), full_page=True)
        # the server is the judge: a visitor on another device gets no match from this rule
        page.get_by_label("Device").fill("another-device")
        page.get_by_role("button", name="Evaluate").click()
        wait_for(lambda: rule_id not in winner.inner_text(), timeout=30, what="no match on another device")
        errors = [e for e in browser.errors if "422" not in e]  # the refused first save logs its 422
        assert not errors, errors
    finally:
        with console.api() as http:
            http.delete(f"/v1/personalization/rules/{rule_id}")


def test_create_and_start_an_experiment(console: Console, browser: Browser) -> None:
    page = browser.page
    exp_id = f"console-e2e-{uuid.uuid4().hex[:6]}"
    page.goto(f"{console.base}/console/#/experiments")
    page.get_by_role("button", name="New experiment").click()
    page.get_by_label("Experiment id").fill(exp_id)
    page.get_by_label("Variants (id:weight, first is control)").fill("control:1, green:1")
    page.get_by_role("button", name="Create experiment").click()
    try:
        page.wait_for_selector("[data-testid='experiment-results']")
        assert f"id={exp_id}" in page.url
        page.get_by_role("button", name="Start").click()
        with console.api() as http:
            wait_for(lambda: http.get(f"/v1/experiments/{exp_id}").json()["status"] == "running", timeout=30,
                     what="the experiment running")
            for n in range(40):  # visitors are assigned; the results page counts their exposures
                http.post(f"/v1/experiments/{exp_id}/assign", json={"user_id": f"ce2e-{n}"})
        exposures = page.locator("[data-testid='experiment-results'] tbody tr td:nth-child(2)")
        wait_for(lambda: sum(int(t.replace(",", "")) for t in exposures.all_inner_texts()) == 40, timeout=90,
                 interval=1.0, what="40 exposures in the results")
        page.get_by_role("button", name="Stop").wait_for()
        page.screenshot(path=str(SHOTS / "flow-experiment.png"), full_page=True)
        browser.expect_clean("experiment flow")
    finally:
        with console.api() as http:
            http.post(f"/v1/experiments/{exp_id}/status", json={"status": "stopped"})
            http.delete(f"/v1/experiments/{exp_id}")


def test_the_api_serves_the_build_with_its_caching(console: Console) -> None:
    """The real API serves the real build: the page revalidated, the hashed assets cached for a year
    (the missing-build page is covered by tests/unit/serving/test_console.py)."""
    r = httpx.get(f"{console.base}/console/", timeout=10)
    assert r.status_code == 200 and r.headers["cache-control"] == "no-cache"
    asset = next(p.name for p in (REPO_ROOT / "serving" / "console" / "dist" / "assets").glob("*.js"))
    r = httpx.get(f"{console.base}/console/assets/{asset}", timeout=10)
    assert r.status_code == 200 and "immutable" in r.headers["cache-control"]

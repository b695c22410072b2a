"""The optimization and campaign flows of the operator console in a real headless Chromium against
the real API, worker and demo traffic (the fixtures of tests/e2e/test_console.py): create a bandit
and choose an arm for a user, and see the worker fold that decision into the arm's pulls; create a
campaign (the server's template error shown at its field first), see its audience size and a
preview of its message for a demo user, activate it, trigger it, and see the send counted on its
performance. Screenshots go to docs/console/.
"""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import wait_for
from tests.e2e.test_console import (  # noqa: F401 - the fixtures are used by name
    SHOTS,
    Browser,
    Console,
    alerts,
    browser,
    chromium,
    console,
    demo_user,
    shows_live_data,
)

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow]

GROUPS = {"Optimization", "Campaigns", "Models", "Analytics", "Content"}


def test_these_groups_pages_show_live_data_without_errors(console: Console, browser: Browser) -> None:  # noqa: F811
    """Every page of these groups (from the console's registry) with a bandit, a strategy and a draft
    campaign configured: it loads, shows data (table rows or a drawn chart), no error banner, no console
    error, no failed request; a screenshot of each goes to docs/console/. Insights also runs a detection
    on demand."""
    page = browser.page
    tag = uuid.uuid4().hex[:6]
    bandit_id, placement, campaign_id = f"console-e2e-{tag}", f"console-e2e-{tag}", f"console-e2e-{tag}"
    with console.api() as http:
        assert http.post("/v1/bandits", json={"id": bandit_id, "arms": ["a", "b"]}).status_code == 201
        assert http.put(f"/v1/strategies/{placement}", json={"strategies": ["hybrid", "trending"]}).status_code == 201
        assert http.post("/v1/campaigns", json={
            "id": campaign_id, "channel": "in_app", "trigger": {"type": "api"},
            "template": {"title": "Hi", "body": "{{ recommendations | length }} picks"}}).status_code == 201
    try:
        pages = [p for p in page.evaluate("window.auraConsolePages") if p["group"] in GROUPS]
        assert {p["group"] for p in pages} == GROUPS, pages
        SHOTS.mkdir(parents=True, exist_ok=True)
        for p in pages:
            page.goto(f"{console.base}/console/#{p['path']}")
            page.wait_for_selector("main h1")
            try:
                wait_for(lambda: shows_live_data(page), timeout=60, interval=0.5, what=f"live data on {p['path']}")
            except AssertionError as exc:
                raise AssertionError(f"{p['path']}: {exc}; alerts: {alerts(page)}") from exc
            if p["path"] == "/analytics/insights":  # what the engine found (or nothing), and a detection run now
                page.wait_for_selector("[data-testid='insights']")
                page.get_by_role("button", name="Detect now").click()
                page.get_by_text("minutes with data").wait_for()
            page.wait_for_load_state("networkidle")
            assert alerts(page) == [], (p["path"], alerts(page))
            browser.expect_clean(p["path"])
            page.screenshot(path=str(SHOTS / f"{p['path'].strip('/').replace('/', '-')}.png"), full_page=True)
    finally:
        with console.api() as http:
            http.delete(f"/v1/campaigns/{campaign_id}")
            http.delete(f"/v1/strategies/{placement}")
            http.delete(f"/v1/bandits/{bandit_id}")


def test_create_a_bandit_and_choose(console: Console, browser: Browser) -> None:  # noqa: F811
    page = browser.page
    bandit_id = f"console-e2e-{uuid.uuid4().hex[:6]}"
    page.goto(f"{console.base}/console/#/optimization/bandits")
    page.wait_for_selector("main h1")
    # the form's own checks: nothing is sent
    page.get_by_label("Bandit id").fill("not an id!")
    page.get_by_role("button", name="Create bandit").click()
    page.get_by_text("Fix the highlighted fields").wait_for()
    assert page.get_by_text("at least one arm").is_visible()
    try:
        page.get_by_label("Bandit id").fill(bandit_id)
        page.get_by_label("Arms").fill("summer, sale, new-in")
        page.get_by_role("button", name="Create bandit").click()
        page.get_by_role("heading", name=bandit_id).wait_for()
        assert f"id={bandit_id}" in page.url
        with console.api() as http:
            assert http.get(f"/v1/bandits/{bandit_id}").json()["config"]["arms"] == ["summer", "sale", "new-in"]
        page.get_by_label("User id").fill("console-e2e-user")
        page.get_by_role("button", name="Choose", exact=True).click()
        arm = page.get_by_test_id("chosen-arm").inner_text()
        assert arm in ("summer", "sale", "new-in"), arm
        assert bandit_id in page.get_by_test_id("choice").inner_text()  # the decision id to send back
        # the worker folds the decision: the page (refreshing itself) shows the pull on that arm
        row = page.locator("[data-testid='arm-allocation'] tbody tr", has_text=arm)
        wait_for(lambda: "100.0%" in row.inner_text(), timeout=90, interval=1.0, what="the pull folded into the arm")
        page.screenshot(path=str(SHOTS / "flow-bandit.png"), full_page=True)
        browser.expect_clean("bandit flow")
        # an API error is shown with its message: the id exists
        page.get_by_label("Bandit id").fill(bandit_id)
        page.get_by_label("Arms").fill("a")
        page.get_by_role("button", name="Create bandit").click()
        assert "exists" in page.get_by_test_id("form-error").inner_text()
    finally:
        with console.api() as http:
            http.delete(f"/v1/bandits/{bandit_id}")


def test_create_and_activate_a_campaign(console: Console, browser: Browser) -> None:  # noqa: F811
    page = browser.page
    campaign_id = f"console-e2e-{uuid.uuid4().hex[:6]}"
    user = demo_user(console)
    page.goto(f"{console.base}/console/#/campaigns")
    page.get_by_role("button", name="New campaign").click()
    page.get_by_label("Campaign id").fill(campaign_id)
    page.get_by_label("Channel", exact=True).select_option("in_app")
    page.get_by_label("When", exact=True).select_option("api")  # transactional: sent when the API triggers it
    page.get_by_label("Title", exact=True).fill("Picked for you, {{ user.id }")  # a template syntax error
    page.get_by_label("Body", exact=True).fill("{% for r in recommendations %}{{ r.item_id }} {% endfor %}")
    page.get_by_label("Holdout share").fill("0")
    page.get_by_role("button", name="Create draft").click()
    try:
        # the server's 422 comes back to the template field
        page.get_by_test_id("form-error").wait_for()
        assert "template.title" in page.get_by_test_id("form-error").inner_text()
        assert page.get_by_text("invalid template", exact=False).count() >= 1
        page.get_by_label("Title", exact=True).fill("Picked for you, {{ user.id }}")
        page.get_by_role("button", name="Create draft").click()
        status = page.get_by_test_id("campaign-status")
        wait_for(lambda: "draft" in status.inner_text(), timeout=30, what="the draft")
        assert f"id={campaign_id}" in page.url
        wait_for(lambda: "users" in page.get_by_test_id("audience-size").inner_text(), timeout=30,
                 what="the audience size")
        page.get_by_label("Preview for user").fill(user)
        page.get_by_role("button", name="Preview").click()
        preview = page.get_by_test_id("campaign-preview")
        preview.wait_for()
        assert f"Picked for you, {user}" in preview.inner_text()
        page.get_by_role("button", name="Activate").click()
        wait_for(lambda: "running" in status.inner_text(), timeout=30, what="the campaign running")
        with console.api() as http:
            assert http.get(f"/v1/campaigns/{campaign_id}").json()["status"] == "running"
            r = http.post(f"/v1/campaigns/{campaign_id}/trigger", json={"user_id": user, "occurrence_id": "e2e-1"})
            assert r.status_code == 202, r.text
        counts = page.get_by_test_id("campaign-counts")
        wait_for(lambda: any(k in counts.inner_text() for k in ("queued", "sent", "suppressed", "held")),
                 timeout=120, interval=1.0, what="the triggered message counted on the performance")
        page.screenshot(path=str(SHOTS / "flow-campaign.png"), full_page=True)
        errors = [e for e in browser.errors if "422" not in e]  # the refused first save logs its 422
        assert not errors, errors
        page.get_by_role("button", name="Pause").click()
        wait_for(lambda: "paused" in status.inner_text(), timeout=30, what="the campaign paused")
    finally:
        with console.api() as http:
            http.post(f"/v1/campaigns/{campaign_id}/complete")
            http.delete(f"/v1/campaigns/{campaign_id}")

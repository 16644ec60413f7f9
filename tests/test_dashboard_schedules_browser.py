"""The Schedules panel in a real browser: a schedule firing every second shows its cron,
workflow, next time and last run, whose order opens from the row; the panel is hidden for an
app without schedules.

Same setup as test_dashboard_browser (Debian's chromium, a live server on an ephemeral
127.0.0.1 port, waits on conditions only); it skips or fails the same way without a browser.
"""

from __future__ import annotations

import pytest
import test_dashboard_browser as shared
from test_dashboard_browser import HEARTBEATS, dashboard

from scheduler import App, Cluster

pytestmark = pytest.mark.slow  # a live server and a real browser

browser = shared.browser  # the module-scoped chromium fixture, launched once per module

ROW = "#schedules tr[data-schedule='tick']"


def ticking_app() -> App:
    app = App("shop")
    app.add_step("reconcile", lambda ctx: {"ok": True})
    app.workflow("nightly", ["reconcile"])
    app.schedule("tick", cron="* * * * * *", workflow="nightly")
    return app


def test_a_schedule_shows_its_runs_and_opens_its_last_order(browser, tmp_path):
    cluster = Cluster(workers=1, app=ticking_app(), **HEARTBEATS)
    with dashboard(browser, tmp_path, cluster) as d:
        d.page.goto(d.url + "/")
        d.wait_live()
        d.page.locator(ROW).wait_for()
        assert d.page.locator("#schedules-wrap").is_visible()
        assert d.page.locator(f"{ROW} .sch-cron").text_content() == "* * * * * * (UTC)"
        assert d.page.locator(f"{ROW} .sch-workflow").text_content() == "nightly"
        d.wait(f"() => document.querySelector(\"{ROW} .sch-last\").textContent !== 'not yet'")
        d.page.locator(f"{ROW} .sch-open").click()
        d.wait("() => document.querySelector('#tl-title').textContent.startsWith('o-')")
        opened = d.page.inner_text("#tl-title")
        order = cluster.get_order(opened)
        assert order["workflow"] == "nightly"
        assert any(e["type"] == "schedule_fired" for e in cluster.story(opened))
        d.shot("schedules")
        assert d.errors == []


def test_the_panel_is_hidden_without_schedules(browser, tmp_path):
    cluster = Cluster(workers=1, **HEARTBEATS)
    with dashboard(browser, tmp_path, cluster) as d:
        d.page.goto(d.url + "/")
        d.wait_live()
        d.page.locator("#step-controls tr").first.wait_for()
        d.wait("() => window.performance.getEntriesByType('resource')"
               ".some((e) => e.name.includes('/api/schedules'))")
        assert not d.page.locator("#schedules-wrap").is_visible()
        assert d.errors == []

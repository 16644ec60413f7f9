"""The page says which server leads when several share one PostgreSQL database (issue 15):
the leader's page says it leads; a standby's page, refused a live connection, names the
leader and links to it; when the leader goes, the standby's page connects by itself, takes a
snapshot and says it leads under the next epoch, holding what the old leader acknowledged."""

from __future__ import annotations

from contextlib import ExitStack

import pytest
import test_dashboard_browser as shared
from ha import ha_app, leading, role
from test_dashboard_browser import VIEWPORT, WAIT_MS
from web import LIVE_CONFIG, ORDER, LiveServer

pytestmark = pytest.mark.slow  # PostgreSQL, two servers and a browser
browser = shared.browser  # the module-scoped chromium fixture


def open_page(context, url: str, errors: list[str]):
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url + "/")
    return page


def test_the_page_says_which_server_leads_and_follows_a_failover(browser, pg_url):
    errors: list[str] = []
    with ExitStack() as server_a:
        a = server_a.enter_context(ha_app(pg_url, "http://a", config=LIVE_CONFIG))
        leading(a)
        a_url = server_a.enter_context(LiveServer(a)).url
        with (ha_app(pg_url, "http://b", config=LIVE_CONFIG) as b, LiveServer(b) as live_b):
            # Playwright's waits evaluate with eval, which the page's own CSP forbids.
            context = browser.new_context(viewport=VIEWPORT, bypass_csp=True)
            try:
                on_a = open_page(context, a_url, errors)
                on_a.locator("#conn[data-state='live']").wait_for()
                on_a.locator("#server-role", has_text="leads · epoch 1").wait_for()

                on_b = open_page(context, live_b.url, errors)
                standby = on_b.locator("#server-role", has_text="standby")
                standby.wait_for()
                assert "leader:" in standby.inner_text()
                assert standby.inner_text().endswith("epoch 1")
                assert standby.get_attribute("href") == "http://a"
                assert on_b.locator("#conn").get_attribute("data-state") != "live"

                # The leader goes (its services stop and give up the lease): b takes over.
                reply = a.test_client().post("/api/orders", json=ORDER)
                assert reply.status_code == 201
                order_id = reply.get_json()["id"]
                server_a.close()
                leading(b, timeout=30)
                assert role(b)["epoch"] == 2
                on_b.locator("#conn[data-state='live']").wait_for(timeout=30_000)
                on_b.locator("#server-role", has_text="leads · epoch 2").wait_for()
                assert on_b.locator("#server-role").get_attribute("href") is None
                on_b.wait_for_function(
                    "id => window.orderflowDashboard.store.orders.get(id) !== undefined",
                    arg=order_id, timeout=30_000)
                assert errors == []
            finally:
                context.close()

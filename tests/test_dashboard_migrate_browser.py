"""Moving an old version's orders from the page (issue 23 item 4), in a real browser: the
old version is offered with its unfinished orders, the confirmation says how many move and
what becomes of their steps, a "Keep" moves nothing, a yes moves them (audited) and they
complete on the new version with the step it added before their payment skipped.

Same setup as test_dashboard_browser (Debian's chromium, a live server on an ephemeral
127.0.0.1 port, waits on conditions only); it skips or fails the same way without a browser.
"""

from __future__ import annotations

import pytest
import test_dashboard_browser as shared
from conftest import wait_for
from test_dashboard_browser import dashboard
from test_deploys import FAST, SHOP_V2
from test_migrate_api import paid_orders
from test_store import journal_at

from scheduler import Cluster

pytestmark = pytest.mark.slow  # a live server and a real browser

browser = shared.browser  # the module-scoped chromium fixture, launched once per module


def test_an_old_versions_orders_are_moved_from_the_page_after_a_confirmation(
        browser, tmp_path):
    db = str(tmp_path / "of.db")
    ids = paid_orders(db, 2)
    cluster = Cluster(workers=1, app=SHOP_V2, journal=journal_at(db), **FAST)
    with dashboard(browser, tmp_path, cluster) as d:
        d.page.goto(d.url + "/")
        d.wait_live()
        row = d.page.locator("#version-moves tr[data-key='checkout@v1']")
        row.wait_for()
        assert row.locator("td").nth(0).text_content() == "checkout v1"
        assert row.locator("td").nth(1).text_content() == "2"
        assert row.locator("option").all_text_contents() == ["checkout2 v2"]
        row.locator(".vm-move").click()
        d.page.locator("#confirm-ok").wait_for(state="visible")
        assert d.page.locator("#confirm-ok").text_content() == "Move 2 orders"
        message = d.page.locator("#confirm-message").text_content()
        assert message.startswith("2 unfinished orders of checkout v1 move to checkout2 v2.")
        assert "2 steps added before steps that ran will be skipped" in message
        d.page.click("#confirm-cancel")
        assert cluster.get_order(ids[0])["version"] == "v1"
        row.locator(".vm-move").click()
        d.page.locator("#confirm-ok").wait_for(state="visible")
        d.page.click("#confirm-ok")
        wait_for(lambda: all(cluster.get_order(i)["status"] == "completed" for i in ids),
                 message="the moved orders to complete")
        assert cluster.get_order(ids[0])["tasks"]["fraud"]["status"] == "skipped"
        d.page.locator("#version-moves-wrap").wait_for(state="hidden")
        actions = [e["action"] for e in cluster.events() if e["type"] == "operator_action"]
        assert actions == ["migrate"]
        assert not d.errors, d.errors

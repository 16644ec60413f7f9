"""Running an order again from a step, and replaying it as new, from the order view (issue 23
item 5), in a real browser: the confirmation says whether a charge is repeated; the same
keys by default, new ones when the box is ticked; a replay opens the new order.

Same setup as test_dashboard_browser (Debian's chromium, a live server on an ephemeral
127.0.0.1 port, waits on conditions only); it skips or fails the same way without a browser.
"""

from __future__ import annotations

import pytest
import test_dashboard_browser as shared
from conftest import wait_for
from test_dashboard_browser import dashboard
from test_deploys import FAST, ORDER
from test_rerun_api import shop

from scheduler import Cluster

pytestmark = pytest.mark.slow  # a live server and a real browser

browser = shared.browser  # the module-scoped chromium fixture, launched once per module


def test_an_order_runs_again_and_is_replayed_from_its_view(browser, tmp_path):
    charges: list = []
    cluster = Cluster(workers=1, app=shop(charges), **FAST)
    with dashboard(browser, tmp_path, cluster) as d:
        d.page.goto(d.url + "/")
        d.wait_live()
        oid = cluster.submit(ORDER, "checkout")
        wait_for(lambda: cluster.get_order(oid)["status"] == "completed")
        d.page.goto(f"{d.url}/#order={oid}")
        d.page.locator("#timeline .tl-rerun").wait_for()
        d.page.select_option("#timeline .tl-rerun-step", "payment")
        d.page.check("#timeline .tl-rerun-new-keys")
        d.page.click("#timeline .tl-rerun")
        d.page.locator("#confirm-ok").wait_for(state="visible")
        assert d.page.locator("#confirm-ok").text_content() == "Run again with new keys"
        assert "a payment among them is charged again" in d.page.locator(
            "#confirm-message").text_content()
        d.page.click("#confirm-ok")
        wait_for(lambda: len(charges) == 2, message="the payment to run again")
        assert charges == [f"{oid}:payment", f"{oid}:payment:rerun-1"]
        wait_for(lambda: cluster.get_order(oid)["status"] == "completed")
        d.page.locator("#timeline .tl-replay").wait_for()
        d.page.click("#timeline .tl-replay")
        d.page.locator("#confirm-ok").wait_for(state="visible")
        d.page.click("#confirm-ok")
        d.wait("(old) => document.querySelector('#tl-title').textContent !== old", oid)
        new_id = d.page.inner_text("#tl-title")
        assert cluster.get_order(new_id)["data"] == cluster.get_order(oid)["data"]
        actions = [e["action"] for e in cluster.events() if e["type"] == "operator_action"]
        assert actions == ["rerun", "replay", "replay"]
        assert not d.errors, d.errors

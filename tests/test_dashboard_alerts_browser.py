"""Alerts on the page (issue 24, item 8): a failure spike is a banner in the server's words
while it holds and gone once it clears, and an incident in the log that stays."""

from __future__ import annotations

import pytest
import test_dashboard_browser as shared
from conftest import wait_for
from test_dashboard_browser import WAIT_MS, dashboard
from web import ORDER, STEADY

from scheduler import Cluster, RetryPolicy
from scheduler.runtime.alerts import AlertSettings

pytestmark = pytest.mark.slow  # a live server and a real browser
browser = shared.browser  # the module-scoped chromium fixture, launched once per module


class Gateway:
    """A payment step whose gateway is down until `up` is set."""

    def __init__(self):
        self.up = False

    def __call__(self, ctx):
        if not self.up:
            raise RuntimeError(f"payment gateway answered 503 for {ctx.order_id}")


def test_a_failure_spike_is_a_banner_while_it_holds_and_an_incident_that_stays(
        browser, tmp_path):
    gateway = Gateway()
    handlers = {"payment": gateway, "packing": lambda ctx: None, "shipping": lambda ctx: None}
    settings = AlertSettings(failure_min_attempts=5, failure_window=60, every=0.05)
    cluster = Cluster(workers=2, handlers=handlers, alerts=settings,
                      retry=RetryPolicy(max_retries=0), **STEADY)
    with dashboard(browser, tmp_path, cluster) as d:
        d.page.goto(d.url + "/")
        d.wait_live()
        cluster.submit_many([ORDER] * 6)
        banner = d.page.locator("#alerts .alert-banner[data-alert='failure_spike']"
                                "[data-subject='payment']")
        banner.wait_for(timeout=WAIT_MS)
        [alert] = cluster.alerts()
        assert banner.locator(".alert-title").text_content() == "Failure spike"
        # The server's own words, shown as text.
        assert banner.locator(".alert-message").text_content() == alert["message"]
        assert "like: RuntimeError: payment gateway answered 503 for o-" in alert["message"]
        assert banner.locator(".alert-since").text_content().startswith("for ")
        assert d.page.locator("#alerts").is_visible()
        d.shot("alert-banner")
        incident = d.page.locator("#log-list li.incident[data-type='alert_raised']")
        incident.wait_for(timeout=WAIT_MS)
        # The gateway is back: successes bring the share under a quarter, the server clears
        # the alert, the banner goes; the incident stays, marked cleared.
        gateway.up = True
        cluster.submit_many([ORDER] * 19)
        wait_for(lambda: not cluster.alerts(), 10, message="the alert cleared")
        banner.wait_for(state="detached", timeout=WAIT_MS)
        assert d.page.locator("#alerts").is_hidden()
        d.page.locator("#log-list li.incident[data-type='alert_raised']",
                       has_text="(cleared)").wait_for(timeout=WAIT_MS)
        d.shot("alert-banner-cleared")
        assert d.errors == []

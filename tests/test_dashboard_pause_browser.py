"""Pausing a step from the page, and a circuit breaker tripping on a failure spike (issue 24,
item 7), in a real browser: a paused step holds its orders and resuming runs them; a breaker
trips when the gateway fails every charge, and after resume the orders complete without
having used up their retries.

Same setup as test_dashboard_browser (Debian's chromium, a live server on an ephemeral
127.0.0.1 port, waits on conditions only); it skips or fails the same way without a browser.
"""

from __future__ import annotations

import threading

import pytest
import test_dashboard_browser as shared
from conftest import wait_for
from test_dashboard_browser import HEARTBEATS, ORDER_DATA, dashboard

from scheduler import App, BreakerPolicy, Cluster, TaskContext

pytestmark = pytest.mark.slow  # a live server and a real browser

browser = shared.browser  # the module-scoped chromium fixture, launched once per module

RETRIES = 3


def gateway_app(down: threading.Event) -> App:
    """payment fails ("gateway answered 503") while `down` is set; packing succeeds."""
    app = App("shop")

    @app.step(retries=RETRIES, backoff=(0.2, 0.5), breaker=BreakerPolicy(
        share=0.5, min_attempts=20, window=60.0, probe_after=600.0))
    def payment(ctx: TaskContext) -> dict:
        if down.is_set():
            raise RuntimeError("gateway answered 503")
        return {"charge": ctx.idempotency_key}

    @app.step()
    def packing(ctx: TaskContext) -> dict:
        return {}

    app.workflow("checkout", ["payment", "packing"])
    return app


def click_and_confirm(d, step: str, action: str) -> None:
    d.page.locator(f"#step-controls tr[data-step='{step}'] .sc-toggle").click()
    d.page.locator("#confirm-ok").wait_for(state="visible")
    assert d.page.locator("#confirm-ok").text_content() == f"{action} {step}"
    d.page.click("#confirm-ok")


def state_text(d, step: str) -> str:
    return d.page.locator(f"#step-controls tr[data-step='{step}'] .sc-state").text_content()


def payment_attempts(cluster: Cluster, ids: list[str]) -> list[int]:
    return sorted(cluster.get_order(i)["tasks"]["payment"]["attempts"] for i in ids)


def test_a_paused_step_holds_orders_and_resuming_from_the_page_runs_them(browser, tmp_path):
    down = threading.Event()
    cluster = Cluster(workers=2, app=gateway_app(down), seed=7, **HEARTBEATS)
    with dashboard(browser, tmp_path, cluster) as d:
        d.page.goto(d.url + "/")
        d.wait_live()
        d.page.locator("#step-controls tr[data-step='payment']").wait_for()
        assert state_text(d, "payment") == "running (circuit breaker on)"
        click_and_confirm(d, "payment", "Pause")
        d.wait("() => document.querySelector(\"#step-controls tr[data-step='payment']\")"
               ".classList.contains('paused')")
        reason = state_text(d, "payment")
        assert reason.startswith("payment is paused by 127.0.0.1 since ")
        assert cluster.steps()[1]["paused"]["reason"] == reason  # (steps by name)
        ids = cluster.submit_many([ORDER_DATA] * 5, "checkout")
        wait_for(lambda: all(cluster.get_order(i)["tasks"]["payment"]["waiting_for"] == reason
                             for i in ids), message="the orders to wait with the reason")
        assert payment_attempts(cluster, ids) == [0] * 5
        d.shot("paused")
        click_and_confirm(d, "payment", "Resume")
        assert cluster.wait_until_idle(20.0)
        assert all(cluster.get_order(i)["status"] == "completed" for i in ids)
        assert payment_attempts(cluster, ids) == [1] * 5
        d.wait_text("#step-controls tr[data-step='payment'] .sc-state",
                    "running (circuit breaker on)")
        # Limits change live from the page too.
        row = d.page.locator("#step-controls tr[data-step='payment']")
        row.locator(".sc-max").fill("3")
        row.locator(".sc-save").click()
        wait_for(lambda: cluster.steps()[1]["max_in_flight"] == 3,
                 message="the limit to be set")

        def actions() -> list[str]:
            return [e["action"] for e in cluster.events() if e["type"] == "operator_action"]

        # The limit holds at once; the API records its audit just after (another stimulus).
        wait_for(lambda: len(actions()) == 3, message="the limits change to be audited")
        assert actions() == ["pause", "resume", "limits"]
        assert not d.errors, d.errors


def test_a_breaker_trips_on_a_failure_spike_and_orders_complete_after_resume(
        browser, tmp_path):
    down = threading.Event()
    down.set()
    cluster = Cluster(workers=3, app=gateway_app(down), seed=7, **HEARTBEATS)
    with dashboard(browser, tmp_path, cluster) as d:
        d.page.goto(d.url + "/")
        d.wait_live()
        ids = cluster.submit_many([ORDER_DATA] * 40, "checkout")
        d.wait("() => document.querySelector(\"#step-controls tr[data-step='payment']\")"
               "?.classList.contains('paused')")
        assert state_text(d, "payment").startswith(
            "payment is paused by the circuit breaker since ")
        assert ("attempts in 60 s failed with: RuntimeError: gateway answered 503"
                in state_text(d, "payment"))
        # Every attempt in flight ends; every order then waits, none failed.
        wait_for(lambda: all(cluster.get_order(i)["tasks"]["payment"]["status"] == "ready"
                             for i in ids), timeout=20, message="every payment to be held")
        before = payment_attempts(cluster, ids)
        assert max(before) < RETRIES + 1  # nobody used up its attempts
        assert not [i for i in ids if cluster.get_order(i)["status"] == "failed"]
        assert "payment paused by its circuit breaker: its orders wait" in [
            i["title"] for i in cluster.incidents()]
        d.shot("breaker")
        down.clear()  # the gateway is back
        click_and_confirm(d, "payment", "Resume")
        assert cluster.wait_until_idle(30.0)
        statuses = {cluster.get_order(i)["status"] for i in ids}
        assert statuses == {"completed"}
        after = payment_attempts(cluster, ids)
        # Each order's payment ran once more after the resume, and succeeded then.
        assert after == sorted(a + 1 for a in before)
        assert max(after) <= RETRIES + 1
        (trip,) = [e for e in cluster.events() if e["type"] == "breaker_tripped"]
        print(f"attempts before resume: {before}; after: {after}; trip: {trip['message']}")
        assert not d.errors, d.errors

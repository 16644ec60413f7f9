"""The operator's console, round 2 (issue 24), items 5, 6 and 8, in a real browser: an
order's view shows what was ordered, each step's result and each failed attempt's error with
its traceback, folded; the search box finds orders the way operators think of them and its
search is an address to share; and the smaller items. Same setup as test_dashboard_browser
(Debian's chromium, live servers on ephemeral 127.0.0.1 ports, waits on conditions only); it
skips or fails the same way without a browser.
"""

from __future__ import annotations

import pytest
import test_dashboard_browser as shared
from test_dashboard_browser import XSS, dashboard
from web import STEADY

from scheduler import App, Cluster, TaskContext

pytestmark = pytest.mark.slow  # live servers and a real browser
browser = shared.browser  # the module-scoped chromium fixture, launched once per module

ORDERED = {"customer": "Ada", "items": [{"sku": f"SKU-{XSS}", "qty": 2, "price": 1.25},
                                        {"sku": "B-2", "qty": 1, "price": 1.25}]}


def render_pdf(order: dict) -> bytes:
    raise RuntimeError(f"invoice PDF renderer crashed on {XSS}")


def invoice_app() -> App:
    """payment answers a charge id; invoice crashes in a helper, twice (one retry)."""
    app = App("shop")

    @app.step()
    def payment(ctx: TaskContext) -> dict:
        return {"charge_id": "ch_1", "amount": 3.75}

    @app.step(retries=1, backoff=(0.001, 0.001))
    def invoice(ctx: TaskContext) -> dict:
        return {"pdf": render_pdf(ctx.order)}

    app.workflow("checkout", ["payment", "invoice"])
    return app


# ---------------------------------------------------------------- item 5: the order view


def test_an_orders_view_shows_its_lines_results_and_each_attempts_traceback_folded(
        browser, tmp_path):
    cluster = Cluster(workers=1, app=invoice_app(), seed=7, **STEADY)
    with dashboard(browser, tmp_path, cluster) as d:
        order_id = cluster.submit({**ORDERED, "workflow": "checkout"})
        assert cluster.wait_until_idle(10)
        d.page.goto(f"{d.url}/#order={order_id}")
        view = d.page.locator("#tl-body")
        view.locator(".tl-attempts").wait_for()
        # What was ordered, line by line: the SKU as text, the line totals, the total.
        rows = view.locator(".tl-items tbody tr")
        assert rows.count() == 2
        assert rows.nth(0).locator("td").all_inner_texts() == [f"SKU-{XSS}", "2", "1.25", "2.50"]
        assert view.locator(".tl-items tfoot td").all_inner_texts() == ["Total", "3.75"]
        assert "3 units in 2 lines · total 3.75" in view.locator(".tl-summary").inner_text()
        # Each step's result is on the page: the charge id without unfolding anything.
        payment = view.locator(".tl-attempts-step[data-step='payment']")
        assert '"charge_id": "ch_1"' in payment.locator(".tl-result summary").inner_text()
        # Each failed attempt: its worker, its error, and its traceback folded.
        invoice = view.locator(".tl-attempts-step[data-step='invoice']")
        failures = invoice.locator(".tl-failure")
        assert failures.count() == 2
        first = failures.nth(0)
        assert first.locator(".tl-failure-which").inner_text() == "Attempt 1 on w-1"
        assert first.locator(".tl-error").inner_text() == (
            f"RuntimeError: invoice PDF renderer crashed on {XSS}")
        trace = first.locator(".tl-trace")
        line = render_pdf.__code__.co_firstlineno + 1
        summary = trace.locator("summary").inner_text()
        assert f"raised at test_dashboard_order_view_browser.py:{line} in render_pdf" in summary
        assert not trace.locator("pre").is_visible()  # folded
        trace.locator("summary").click()
        shown = trace.locator("pre").inner_text()
        assert shown.startswith("Traceback (most recent call last):")
        assert "in invoice" in shown and "in render_pdf" in shown
        assert shown.endswith(f"RuntimeError: invoice PDF renderer crashed on {XSS}")
        assert d.page.locator("#tl-body img").count() == 0  # text, never markup
        d.shot("order-view")
        # Unfolded, it stays so while the view refreshes (a retry's events reload it).
        cluster.retry_order(order_id)
        d.wait("() => document.querySelectorAll("
               "'#tl-body .tl-attempts-step[data-step=\"invoice\"] .tl-failure').length === 4")
        assert view.locator(".tl-failure").nth(0).locator(".tl-trace pre").is_visible()
        assert not view.locator(".tl-failure").nth(2).locator(".tl-trace pre").is_visible()
        assert d.errors == []

"""The operator's console, round 2 (issue 24), items 5, 6 and 8, in a real browser: an
order's view shows what was ordered, each step's result and each failed attempt's error with
its traceback, folded; the search box finds orders the way operators think of them and its
search is an address to share; and the smaller items. Same setup as test_dashboard_browser
(Debian's chromium, live servers on ephemeral 127.0.0.1 ports, waits on conditions only); it
skips or fails the same way without a browser.
"""

from __future__ import annotations

import json

import pytest
import requests
import test_dashboard_browser as shared
from conftest import wait_for
from test_dashboard_browser import XSS, dashboard
from test_waits import ORDER as WAITING_ORDER
from test_waits import shop as waiting_shop
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


# ---------------------------------------------------------------- item 6: search


def declining_app() -> App:
    """payment fails for good for a customer named fail-*; shipping passes."""
    app = App("shop")

    @app.step(retries=0)
    def payment(ctx: TaskContext) -> dict:
        if str(ctx.order.get("customer", "")).startswith("fail"):
            raise RuntimeError("card declined by the issuing bank")
        return {}

    @app.step()
    def shipping(ctx: TaskContext) -> dict:
        return {}

    app.workflow("checkout", ["payment", "shipping"])
    return app


def order_of(customer: str, sku: str) -> dict:
    return {"customer": customer, "workflow": "checkout",
            "items": [{"sku": sku, "qty": 1, "price": 2.0}]}


ROW_IDS = ("() => [...document.querySelectorAll('#orders-body .row:not([hidden])')]"
           ".map(r => r.dataset.id)")


def test_a_search_by_sku_error_and_time_is_an_address_that_a_reload_restores(browser, tmp_path):
    cluster = Cluster(workers=2, app=declining_app(), seed=7, **STEADY)
    # A fresh page reads one page of orders (500): the oldest of 510 is only on the server.
    with dashboard(browser, tmp_path, cluster, {"DASHBOARD_INITIAL_ORDERS": 1}) as d:
        rare = cluster.submit(order_of("grace", "RARE-MUG-7"))
        failed = cluster.submit(order_of("fail-bob", "MUG-9"))
        cluster.submit_many([order_of("ada", "BOOK-1")] * 508, "checkout")
        assert cluster.wait_until_idle(30)
        d.page.goto(d.url + "/")
        d.wait_live()
        # The SKU of an order the page does not hold: the server finds it.
        d.page.fill("#order-search", "rare-mug")
        d.row(rare).wait_for()
        d.wait_text("#order-count", "1 order found")
        assert d.page.evaluate("() => window.location.search") == "?q=rare-mug"
        # An error's text, under Failed.
        d.page.fill("#order-search", "declined")
        d.page.click("[data-filter='failed']")
        d.wait(f"() => JSON.stringify(({ROW_IDS})()) === JSON.stringify([{failed!r}])")
        assert d.page.evaluate("() => window.location.search") == "?q=declined&stage=failed"
        # The address is the search: a reload (or the link shared) shows the same.
        d.page.reload()
        d.wait_live()
        d.wait(f"() => JSON.stringify(({ROW_IDS})()) === JSON.stringify([{failed!r}])")
        assert d.page.input_value("#order-search") == "declined"
        assert d.page.get_attribute("[data-filter='failed']", "aria-pressed") == "true"
        d.shot("search-restored")
        # Nothing matches: the table says what was searched, not that there are no orders.
        d.page.fill("#order-search", "no-such-thing")
        d.wait("() => document.getElementById('orders-empty').textContent.includes('Searched')")
        empty = d.page.inner_text("#orders-empty")
        assert empty == ("No order found for “no-such-thing” in an id, customer, SKU, error or "
                         "workflow; failed only. Searched the server (its memory and journal) "
                         "and the orders held here.")
        # A time range: everything was submitted before this minute's end, nothing after.
        d.page.fill("#order-search", "")
        d.page.click("[data-filter='all']")
        d.page.fill("#order-since", "2999-01-01T00:00")
        d.page.dispatch_event("#order-since", "change")
        d.wait("() => document.getElementById('orders-empty').textContent.includes('Searched')")
        assert d.page.inner_text("#orders-empty").startswith(
            "No order found for submitted from 2999-01-01 00:00. Searched the server")
        assert d.page.evaluate("() => window.location.search") == "?from=2999-01-01T00%3A00"
        d.page.click("#order-search-clear")
        d.wait("() => document.querySelectorAll('#orders-body .row:not([hidden])').length > 10")
        assert d.page.evaluate("() => window.location.search") == ""
        assert d.errors == []


# ---------------------------------------------------------------- item 8: smaller items

KINDS = "() => [...document.querySelectorAll('#log-list > li')].map(li => li.dataset.type)"


def test_a_click_on_an_entrys_kind_filters_the_log_and_an_empty_kind_says_so(browser, tmp_path):
    cluster = Cluster(workers=2, app=declining_app(), seed=7, **STEADY)
    with dashboard(browser, tmp_path, cluster) as d:
        for n in range(3):
            cluster.submit(order_of(f"fail-{n}", "MUG-9"))
        cluster.submit(order_of("ada", "BOOK-1"))
        assert cluster.wait_until_idle(10)
        d.page.goto(d.url + "/")
        d.wait_live()
        d.wait(f"() => ({KINDS})().includes('worker_added') && ({KINDS})().includes('task_failed')")
        # The kind of an entry, clicked: only that kind shows, and its button says so.
        d.page.locator("#log-list > li[data-type='task_failed'] .ev-badge").first.click()
        d.wait(f"() => ({KINDS})().length > 0 && ({KINDS})().every(t => ['task_failed',"
               " 'order_failed', 'result_rejected'].includes(t))")
        assert d.page.get_attribute("#log-groups [data-group='failures']", "aria-pressed") == "true"
        # A kind with nothing in the log: the log says the kind hides the rest.
        d.page.click("#log-groups [data-group='moves']")
        d.page.locator("#log-empty").wait_for()
        assert d.page.inner_text("#log-empty") == (
            "No moves in the log. Showing Moves only: click Moves again, or All, for every kind.")
        d.page.click("#log-groups [data-group='moves']")  # again: every kind
        d.wait(f"() => new Set(({KINDS})()).size > 2")
        assert d.errors == []


VIEW_CUT = """() => [...document.querySelectorAll(`#tl-body .tl-failure-which, #tl-body summary,
    #tl-body .chip-name, #tl-body th, .search-time, #order-count`)]
  .filter(e => e.offsetParent !== null && e.scrollWidth > e.clientWidth + 1)
  .map(e => `${e.className}: ${e.textContent.trim().slice(0, 40)}`)"""


@pytest.mark.parametrize("viewport", [{"width": 1440, "height": 900},
                                      {"width": 390, "height": 844}], ids=["1440x900", "390px"])
def test_the_order_view_and_the_search_bar_cut_no_label(browser, tmp_path, viewport):
    cluster = Cluster(workers=1, app=invoice_app(), seed=7, **STEADY)
    with dashboard(browser, tmp_path, cluster) as d:
        order_id = cluster.submit({**ORDERED, "workflow": "checkout"})
        assert cluster.wait_until_idle(10)
        d.page.set_viewport_size(viewport)
        d.page.goto(f"{d.url}/?q=ada#order={order_id}")
        d.page.locator("#tl-body .tl-trace").first.wait_for()
        d.page.locator("#tl-body .tl-trace summary").first.click()
        assert d.page.evaluate(VIEW_CUT) == []
        # The page does not scroll sideways at any width, the traceback scrolls in its box.
        assert d.page.evaluate("() => document.documentElement.scrollWidth") <= viewport["width"]
        assert d.errors == []


# ---------------------------------------------------------------- issue 22: a signal by hand

SIGNAL_FORM = "#tl-body form.tl-signal[data-signal='payment_confirmed']"


def test_the_operator_sends_a_signal_from_the_order_view_and_bad_data_changes_nothing(
        browser, tmp_path):
    # reserve -> wait for payment_confirmed -> charge -> review an hour later.
    cluster = Cluster(workers=1, app=waiting_shop(delay="1h"), seed=7, **STEADY)
    with dashboard(browser, tmp_path, cluster) as d:
        order_id = cluster.submit({**WAITING_ORDER, "workflow": "checkout"})
        wait_for(lambda: cluster.get_order(order_id)["status"] == "waiting", 10,
                 message="the order to wait for payment_confirmed")

        def order() -> dict:
            return requests.get(f"{d.url}/api/orders/{order_id}", timeout=10).json()

        d.page.goto(f"{d.url}/#order={order_id}")
        form = d.page.locator(SIGNAL_FORM)
        data, send = form.locator("textarea"), form.locator("button[type=submit]")
        error = form.locator(".tl-signal-error")
        assert form.locator(".tl-signal-error").is_hidden()
        # Data that is not JSON: said under the form, nothing sent, no confirmation asked.
        typed = '{"txn": "t-1", '
        data.fill(typed)
        send.click()
        error.wait_for()
        assert error.inner_text().startswith("Not sent: the data is not JSON (")
        assert data.get_attribute("aria-invalid") == "true"
        assert d.page.locator("#confirm-dialog").is_hidden()
        d.shot("signal-not-json")
        # The view reloads every second while the order waits: what was typed, the message
        # and the focus stay as they were.
        d.page.evaluate("() => { document.querySelector('#tl-body .tl-summary')"
                        ".dataset.before = 'reload' }")
        d.wait("() => !document.querySelector('#tl-body .tl-summary').dataset.before")
        assert data.input_value() == typed and error.is_visible()
        assert d.page.evaluate("() => document.activeElement.classList"
                               ".contains('tl-signal-data')")
        untouched = order()
        assert untouched["status"] == "waiting"
        assert untouched["tasks"]["payment_confirmed"]["status"] == "waiting"
        assert not [e for e in untouched["events"] if e["type"].startswith("signal_")]
        # Asked first, with what follows; "Keep" sends nothing.
        sent = {"txn": "t-1", "note": XSS}
        data.fill(json.dumps(sent))
        assert error.is_hidden()  # typing clears the message
        send.click()
        assert d.page.inner_text("#confirm-title") == f"Send payment_confirmed to order {order_id}?"
        assert "the steps after it run" in d.page.inner_text("#confirm-message")
        d.page.click("#confirm-cancel")
        assert d.page.locator("#confirm-dialog").is_hidden()
        assert order()["tasks"]["payment_confirmed"]["status"] == "waiting"
        # Confirmed: the order moves past its wait (charge runs, review waits its hour).
        send.click()
        d.page.click("#confirm-ok")
        d.page.locator("#tl-body .dag-node[data-step='charge'][data-status='succeeded']").wait_for()
        assert d.page.locator(SIGNAL_FORM).count() == 0  # the wait is over
        after = order()
        assert after["tasks"]["payment_confirmed"]["status"] == "succeeded"
        assert after["tasks"]["payment_confirmed"]["result"] == sent
        assert after["tasks"]["review"]["status"] == "waiting"
        # Audited: who sent it and what, once.
        [received] = [e for e in after["events"] if e["type"] == "signal_received"]
        assert received["who"] == "127.0.0.1" and received["step"] == "payment_confirmed"
        assert received["data"] == sent
        d.page.locator("#tl-body .tl-event[data-type='signal_received']").wait_for()
        assert d.page.locator("#tl-body img").count() == 0  # text, never markup
        d.shot("signal-sent")
        assert d.errors == []


def test_a_signal_another_sender_delivered_first_is_refused_and_said(browser, tmp_path):
    cluster = Cluster(workers=1, app=waiting_shop(delay="1h"), seed=7, **STEADY)
    with dashboard(browser, tmp_path, cluster) as d:
        order_id = cluster.submit({**WAITING_ORDER, "workflow": "checkout"})
        wait_for(lambda: cluster.get_order(order_id)["status"] == "waiting", 10,
                 message="the order to wait for payment_confirmed")
        d.page.goto(f"{d.url}/#order={order_id}")
        form = d.page.locator(SIGNAL_FORM)
        form.wait_for()

        def gateway_first(route):
            # The gateway's webhook lands between the operator's click and the request.
            cluster.signal(order_id, "payment_confirmed", {"data": "from the gateway"})
            route.continue_()

        d.page.route("**/signals/payment_confirmed", gateway_first)
        form.locator("textarea").fill('"by hand"')
        form.locator("button[type=submit]").click()
        d.page.click("#confirm-ok")
        # The server's refusal is said (and stays said once the form goes with its wait).
        notice = d.page.locator(".toast.tone-bad", has_text="not delivered")
        notice.wait_for()
        assert "one came already" in notice.inner_text()
        d.page.locator(SIGNAL_FORM).wait_for(state="detached")
        order = requests.get(f"{d.url}/api/orders/{order_id}", timeout=10).json()
        assert order["tasks"]["payment_confirmed"]["result"] == "from the gateway"
        [refused] = [e for e in order["events"] if e["type"] == "signal_refused"]
        assert refused["who"] == "127.0.0.1"
        # The browser's own line for the 409, and nothing else.
        assert d.errors == ["Failed to load resource: the server responded with a status of "
                            "409 (CONFLICT)"]

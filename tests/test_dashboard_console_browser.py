"""The operator's console, round 2 (issue 24), in a real browser: a restart mid-burst stays an
incident on a reconnected and on a fresh page; a page that cannot hear its server greys at
once and says how old its numbers are, then what it missed; worker cards of process workers
fit at 1440 x 900 and on a phone; every count agrees with /api/stats at 3,000 orders while the
page holds 2,000; the chaos knobs are the server's on every page, and only the demo's; Kill
says which steps would have nowhere to go; a log kind click shows that kind; no label is cut.

Same setup as test_dashboard_browser (Debian's chromium, live servers on ephemeral 127.0.0.1
ports, waits on conditions only); it skips or fails the same way without a browser.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import test_dashboard_browser as shared
from conftest import wait_for
from test_dashboard_browser import HEARTBEATS, ORDER_DATA, WAIT_MS, dashboard
from web import LIVE_CONFIG, STEADY, LiveServer, app_over, fast_cluster

from dashboard import services
from scheduler import App, Cluster, TaskContext
from scheduler.journal.location import open_journal, parse_location

pytestmark = pytest.mark.slow  # live servers and a real browser

browser = shared.browser  # the module-scoped chromium fixture, launched once per module

LAPTOP = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}
SET_RANGE = "(el, v) => { el.value = v; el.dispatchEvent(new Event('input', {bubbles: true})) }"


class ProcessLike:
    """A worker as a worker process shows (kind, host, pid, tags) that runs nothing: it
    only sits on the ring, so its card can be looked at."""

    kind, slots, steps = "process", 8, None

    def __init__(self, tags=()):
        self.tags = frozenset(tags)

    def start(self): ...
    def deliver(self, dispatch): ...
    def cancel(self, dispatch): ...
    def stop(self): ...
    def kill(self): ...

    def join(self, timeout):
        return True


def join_process_workers(cluster: Cluster, ids, tags=("payments", "eu")) -> None:
    for n, worker_id in enumerate(ids):
        cluster.join_worker(worker_id, ProcessLike(tags), meta={
            "host": "orderflow-payments-eu-west-1.internal", "pid": 552_830 + n})


def shop_app(tags=("payments",)) -> App:
    """payment (needing `tags`) fails for good for a customer named fail-*; packing,
    invoice and shipping pass; checkout is a chain, checkout_invoiced fans out."""
    app = App("shop")

    @app.step(retries=0, tags=set(tags))
    def payment(ctx: TaskContext) -> dict:
        if str(ctx.order.get("customer", "")).startswith("fail"):
            raise RuntimeError("card declined by the issuing bank")
        return {}

    @app.step()
    def packing(ctx: TaskContext) -> dict:
        return {}

    @app.step()
    def invoice(ctx: TaskContext) -> dict:
        return {}

    @app.step()
    def shipping(ctx: TaskContext) -> dict:
        return {}

    app.workflow("checkout", ["payment", "packing", "shipping"])
    app.workflow("checkout_invoiced", {"payment": [], "packing": ["payment"],
                                       "invoice": ["payment"],
                                       "shipping": ["packing", "invoice"]})
    return app


@contextmanager
def page_on(browser, viewport=shared.VIEWPORT) -> Iterator:
    """A fresh browser context and page (CSP bypassed for wait_for_function); its errors."""
    context = browser.new_context(viewport=viewport, bypass_csp=True)
    try:
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        # A server that is down refuses the page's requests (or, while it closes, drops a
        # socket mid-request, even mid-body: a length mismatch): the browser says so on its
        # console, which is what the test does to it, not a fault of the page.
        expected = ("ERR_CONNECTION_REFUSED", "ERR_CONNECTION_RESET",
                    "ERR_SOCKET_NOT_CONNECTED", "ERR_CONTENT_LENGTH_MISMATCH",
                    "WebSocket connection to")
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" and not any(
            e in m.text for e in expected) else None)
        yield page, errors
    finally:
        context.close()


def live(page) -> None:
    page.locator("#conn[data-state='live']").wait_for(timeout=WAIT_MS)


def text(page, selector: str) -> str:
    return page.inner_text(selector)


# ---------------------------------------------------------------- item 1: incidents


def test_a_restart_mid_burst_of_1000_stays_pinned_on_a_reconnected_and_a_reloaded_page(
        browser, tmp_path):
    db = str(tmp_path / "journal.db")

    def over_the_journal() -> Cluster:
        # Slow enough steps that the burst is mid-way when the server goes.
        return fast_cluster(workers=2, slots=4, latency_ms=(30, 60),
                            journal=open_journal(parse_location(db)), **STEADY)

    with page_on(browser) as (page, errors):
        first = over_the_journal()
        with app_over(first, LIVE_CONFIG) as app, LiveServer(app) as server:
            page.goto(server.url + "/")
            live(page)
            first.submit_many([ORDER_DATA] * 1000)
            wait_for(lambda: 20 <= first.stats()["progress"]["completed"], timeout=60,
                     message="the burst under way")
            port = server.port
        page.locator("#conn:not([data-state='live'])").wait_for()
        second = over_the_journal()
        with app_over(second, LIVE_CONFIG) as app, LiveServer(app, port=port) as server:
            [restart] = [i for i in second.incidents() if i["kind"] == "server_restarted"]
            # More recoveries than a snapshot carries events: the restart's event is not
            # among them, its record is.
            assert restart["counts"]["recovered"] > services(app).stream.settings.snapshot_events
            pinned = page.locator("#incidents li.incident[data-kind='server_restarted']")
            pinned.wait_for(timeout=30_000)
            assert pinned.locator(".incident-head").inner_text() == restart["title"]
            # Whole, however long its counts run.
            assert pinned.locator(".incident-text").evaluate(
                "e => e.scrollHeight <= e.clientHeight + 1 && e.scrollWidth <= e.clientWidth + 1")
            # The page says it was away and that the restart happened meanwhile.
            page.locator("#missed:not([hidden])", has_text="server restarted").wait_for()
            (tmp_path / "restart-reconnected.png").write_bytes(page.screenshot())
            # A fresh page, whatever the recoveries and events that followed, shows it too.
            page.reload()
            live(page)
            pinned.wait_for()
            assert pinned.locator(".incident-head").inner_text().startswith(
                "server restarted: ")
            entry = page.locator("#log-list li.incident[data-kind='server_restarted']")
            entry.locator(".incident-head").click()
            page.wait_for_function("() => document.querySelectorAll(\"#log-list li.incident"
                                   " li.log-child[data-type='task_recovered']\").length > 0")
            assert second.wait_until_idle(120)
        assert errors == []


# ---------------------------------------------------------------- item 2: liveness


def test_a_stopped_server_greys_the_page_at_once_and_once_back_it_says_what_it_missed(
        browser, tmp_path):
    # No workers: the orders wait, so their Time column would tick while the page is live.
    cluster = fast_cluster(workers=0, **STEADY)
    with page_on(browser) as (page, errors), app_over(cluster, LIVE_CONFIG) as app:
        cluster.submit_many([ORDER_DATA] * 3)
        server = LiveServer(app).__enter__()
        port = server.port
        try:
            page.goto(server.url + "/")
            live(page)
            page.wait_for_function("() => document.querySelector(\"[data-filter='queued']"
                                   " .seg-count\").textContent === '3'")
            assert page.evaluate("() => document.body.dataset.live") == "live"
            stopped_at = time.time()
        finally:
            server.__exit__(None, None, None)  # the server goes: its connections close
        page.wait_for_function("() => document.body.dataset.live === 'lost'")
        lost_at = page.evaluate("() => window.orderflowDashboard.store.lost.at")
        print(f"\npage greyed {lost_at - stopped_at * 1000:.0f} ms after the server stopped")
        # Greyed, and labelled with the numbers' age; the pill says what happened.
        for selector in ("#tiles", "#worker-cards", "#chart"):
            assert "grayscale" in page.evaluate(
                "s => getComputedStyle(document.querySelector(s).closest("
                "'.tiles, .worker-cards, .chart-body')).filter", selector)
        assert page.locator("#tiles-stale").is_visible()
        assert page.locator("#workers-stale").is_visible()
        assert text(page, "#conn-text") == "Connection lost"
        # The clocks stop: two seconds on (by the page's own label), the orders' age is
        # what it was once the page knew.
        page.wait_for_function("() => new Promise(r => requestAnimationFrame("
                               "() => requestAnimationFrame(() => r(true))))")
        age = text(page, "#orders-body .row .c-age")
        two_seconds = r"/^last known, ([2-9]|\d\d+) s ago$/"
        page.wait_for_function(f"() => {two_seconds}.test("
                               "document.getElementById('tiles-stale').textContent)")
        assert text(page, "#orders-body .row .c-age") == age
        assert page.evaluate(f"() => {two_seconds}.test("
                             "document.getElementById('workers-stale').textContent)")
        (tmp_path / "lost.png").write_bytes(page.screenshot())
        # Meanwhile two workers join and the orders complete; then the server is back.
        cluster.add_worker()
        cluster.add_worker()
        assert cluster.wait_until_idle(20)
        with LiveServer(app, port=port):
            live(page)
            page.wait_for_function("() => document.body.dataset.live === 'live'")
            banner = page.locator("#missed")
            banner.wait_for()
            assert text(page, "#missed-text").startswith("Back after ")
            assert "3 orders completed · 0 failed" in text(page, "#missed-text")
            assert not page.locator("#tiles-stale").is_visible()
            page.wait_for_function("() => document.querySelector(\"[data-filter='completed']"
                                   " .seg-count\").textContent === '3'")
        assert errors == []


def test_a_silent_server_greys_the_page_after_a_second_without_word(browser, tmp_path):
    cluster = fast_cluster(workers=1, **STEADY)
    with dashboard(browser, tmp_path, cluster) as d:
        d.page.goto(d.url + "/")
        d.wait_live()
        # The stream stops (a frozen server): the connection stays open, nothing comes.
        services(d.app).stream.stop()
        d.page.wait_for_function("() => document.body.dataset.live === 'lost'")
        assert d.page.evaluate("() => window.orderflowDashboard.store.lost.reason") == "silent"
        assert text(d.page, "#conn-text") == "No word from the server"
        assert text(d.page, "#tiles-stale").startswith("last known, ")
        # Silent means two missed `workers` messages, and never less than a second.
        assert d.page.evaluate("() => window.orderflowDashboard.store.config"
                               ".workers_interval") == 0.5
        assert d.errors == []


# ---------------------------------------------------------------- item 3: cards and counts


CARD_FITS = """() => [...document.querySelectorAll('#worker-cards .worker')].map(card => {
    const box = card.getBoundingClientRect();
    const id = card.querySelector('.worker-id');
    const buttons = [...card.querySelectorAll('button')].map(b => b.getBoundingClientRect());
    return {
      id: card.dataset.worker,
      overflows: card.scrollWidth > card.clientWidth + 1,
      idCut: id.scrollWidth > id.clientWidth + 1,
      buttonsInside: buttons.every(b => b.left >= box.left - 1 && b.right <= box.right + 1
                                        && b.right <= window.innerWidth),
    };
  })"""


@pytest.mark.parametrize("viewport", [LAPTOP, PHONE], ids=["1440x900", "390px"])
def test_worker_cards_of_process_workers_fit_their_column(browser, tmp_path, viewport):
    cluster = fast_cluster(workers=2, **STEADY)
    with dashboard(browser, tmp_path, cluster) as d:
        join_process_workers(cluster, ["p-552e83-5", "p-552e83-12"])
        d.page.set_viewport_size(viewport)
        d.page.goto(d.url + "/")
        d.wait_live()
        d.page.locator("[data-worker='p-552e83-12'].w-alive").wait_for()
        cards = d.page.evaluate(CARD_FITS)
        assert [c["id"] for c in cards] == ["w-1", "w-2", "p-552e83-5", "p-552e83-12"]
        for card in cards:
            assert card == {**card, "overflows": False, "idCut": False, "buttonsInside": True}
        assert d.page.evaluate("() => document.documentElement.scrollWidth"
                               " <= document.documentElement.clientWidth")
        (tmp_path / f"cards-{viewport['width']}.png").write_bytes(
            d.page.locator(".workers-panel").screenshot())
        assert d.errors == []


def test_every_count_agrees_with_the_server_at_3000_orders_while_the_page_holds_2000(
        browser, tmp_path):
    cluster = Cluster(workers=4, app=shop_app(tags=()), seed=7, **STEADY)
    failing = {"customer": "fail-fast", "items": [{"sku": "A", "qty": 1, "price": 1}]}
    with dashboard(browser, tmp_path, cluster) as d:
        # 30 failures among the oldest 1,000 (beyond the 2,000 a page reads), 30 among the
        # newest.
        for _ in range(2):
            cluster.submit_many([failing] * 30 + [ORDER_DATA] * 970, "checkout")
        cluster.submit_many([ORDER_DATA] * 1000, "checkout")
        assert cluster.wait_until_idle(120)
        stats = cluster.stats()["progress"]
        assert (stats["failed"], stats["completed"]) == (60, 2940)
        d.page.goto(d.url + "/")
        d.wait_live()
        d.wait("() => window.orderflowDashboard.store.historyLoaded")
        held = d.page.evaluate("() => window.orderflowDashboard.store.orders.list.length")
        assert held == 2000
        assert d.page.evaluate("() => window.orderflowDashboard.store.orders.countByStage()"
                               ".failed") < 60
        d.wait_text("[data-tile='failed'] .tile-value", "60")
        d.wait_text("[data-filter='failed'] .seg-count", "60")
        d.wait_text("[data-filter='completed'] .seg-count", "2,940")
        d.wait_text("[data-filter='all'] .seg-count", "3,000")
        d.wait_text("#order-count", "2,000 of 3,000 orders (the newest)")
        d.page.click("[data-filter='failed']")
        # The page reads the failed orders it lacks: the rows are the orders counted.
        d.wait("() => window.orderflowDashboard.table.length === 60")
        d.wait_text("#order-count", "60 orders")
        group = d.page.locator("#failure-groups .fgroup[data-step='payment']")
        group.wait_for()
        assert group.locator(".fgroup-count").inner_text() == "60"
        d.wait_text("#bulk-retry", "Retry 60 failed orders…")
        assert d.page.locator("#bulk-retry").is_enabled()
        api = d.page.evaluate("() => fetch('/api/stats').then(r => r.json())")
        assert api["progress"]["failed"] == 60
        d.shot("counts-3000")
        assert d.errors == []


# ---------------------------------------------------------------- item 4: chaos controls


def test_a_chaos_change_on_one_page_shows_on_every_other(browser, tmp_path):
    cluster = fast_cluster(workers=1, **STEADY)
    with dashboard(browser, tmp_path, cluster) as d, page_on(browser) as (other, errors):
        d.page.goto(d.url + "/")
        other.goto(d.url + "/")
        d.wait_live()
        live(other)
        assert text(other, "#chaos-title") == "Load and chaos"
        d.page.locator("#c-failure").evaluate(SET_RANGE, "0.4")
        wait_for(lambda: cluster.chaos.view()["failure_rate"] == 0.4, timeout=10,
                 message="the change to reach the server")
        other.wait_for_function("() => document.getElementById('c-failure-out').textContent"
                                " === '40%'")
        assert other.locator("#c-failure").input_value() == "0.4"
        assert errors == [] and d.errors == []


def test_with_an_app_of_ones_own_the_panel_says_the_knobs_are_the_demos(browser, tmp_path):
    cluster = Cluster(workers=1, app=shop_app(tags=()), seed=7, **STEADY)
    with dashboard(browser, tmp_path, cluster) as d:
        d.page.goto(d.url + "/")
        d.wait_live()
        d.page.locator("#chaos-other:not([hidden])").wait_for()
        assert "built-in demo" in text(d.page, "#chaos-other")
        assert "“shop”" in text(d.page, "#chaos-other")
        assert not d.page.locator("#chaos-knobs").is_visible()
        assert text(d.page, "#chaos-title") == "Load"
        # Orders can still be submitted in its workflows.
        assert d.page.locator("#f-demo-workflow option").count() == 2
        d.shot("chaos-other-app")
        assert d.errors == []


# ---------------------------------------------------------------- item 9: smaller items


def test_kill_says_when_no_other_live_worker_can_run_a_step(browser, tmp_path):
    # payment needs `payments`: only the one process worker offers it.
    cluster = Cluster(workers=2, app=shop_app(), seed=7, **STEADY)
    with dashboard(browser, tmp_path, cluster) as d:
        join_process_workers(cluster, ["p-552e83-5"])
        d.page.goto(d.url + "/")
        d.wait_live()
        d.page.click("[data-worker='p-552e83-5'] button[data-action='kill']")
        d.page.locator("#confirm-dialog[open]").wait_for()
        message = text(d.page, "#confirm-message")
        assert "No other live worker can run payment (it needs tags: payments)" in message
        assert "moves its" not in message
        d.page.click("#confirm-cancel")
        # A thread worker's tasks can go elsewhere: its Kill says they move.
        d.page.click("[data-worker='w-1'] button[data-action='kill']")
        d.page.locator("#confirm-dialog[open]").wait_for()
        assert "moves its 0 tasks to other workers" in text(d.page, "#confirm-message")
        d.page.click("#confirm-cancel")
        assert d.errors == []


class OldVersionWorker(ProcessLike):
    """A worker process still running the previous deploy's app."""

    definitions = ("checkout@v1", "checkout_invoiced@v1")


def test_worker_cards_say_which_definitions_each_worker_offers(browser, tmp_path):
    # Issue 23: in a rolling deploy the cards say which workers still run the old version.
    cluster = Cluster(workers=1, app=shop_app(tags=()), seed=7, **STEADY)
    with dashboard(browser, tmp_path, cluster) as d:
        join_process_workers(cluster, ["p-552e83-5"], tags=())  # no app: any definition
        d.page.goto(d.url + "/")
        d.wait_live()
        offered = {w["id"]: w["definitions"] for w in cluster.workers()}
        assert offered["p-552e83-5"] is None
        assert sorted(offered["w-1"]) == sorted(
            f"{w['name']}@{w['version']}" for w in cluster.describe_workflows())
        defs = "[data-worker='{}'] .worker-defs"
        d.wait_text(defs.format("w-1"), ", ".join(offered["w-1"]))
        d.wait_text(defs.format("p-552e83-5"), "any")
        assert text(d.page, "[data-worker='p-552e83-5'] .worker-what").startswith("any · process")
        # One that joins while the page is open says its own, from the live stream.
        cluster.join_worker("p-552e83-6", OldVersionWorker(), meta={"host": "old-box", "pid": 7})
        d.wait_text(defs.format("p-552e83-6"), "checkout@v1, checkout_invoiced@v1")
        title = d.page.get_attribute("[data-worker='p-552e83-6'] .worker-what", "title")
        assert title.startswith("offers checkout@v1, checkout_invoiced@v1 · process · old-box:7")
        d.shot("worker-definitions")
        assert d.errors == []


def test_a_click_on_a_log_kind_shows_only_that_kind(browser, tmp_path):
    cluster = fast_cluster(workers=2, failure_rate=0.5, **HEARTBEATS)
    with dashboard(browser, tmp_path, cluster) as d:
        cluster.submit_many([ORDER_DATA] * 20)
        assert cluster.wait_until_idle(30)
        d.page.goto(d.url + "/")
        d.wait_live()
        kinds = "() => [...document.querySelectorAll('#log-list > li')].map(li => li.dataset.type)"
        d.wait(f"() => new Set(({kinds})()).size > 2")
        d.page.click("#log-groups [data-group='failures']")
        d.wait(f"() => ({kinds})().every(t => ['task_failed', 'order_failed',"
               " 'result_rejected'].includes(t))")
        assert d.page.locator("#log-list > li").count() > 0
        assert d.page.get_attribute("#log-groups [data-group='failures']",
                                    "aria-pressed") == "true"
        d.page.click("#log-groups [data-group='failures']")  # again: every kind
        d.wait(f"() => new Set(({kinds})()).size > 2")
        assert d.page.get_attribute("#log-groups [data-group='all']", "aria-pressed") == "true"
        assert d.errors == []


LABELS_CUT = """() => [...document.querySelectorAll(`.tile-label, .tile-sub, .seg,
    .chip-2 .chip-top, .step-name, .table-head .cell, .worker-id, .incident-head, .fgroup-step,
    .stale-note, .slider-label, label`)]
  .filter(e => e.offsetParent !== null && e.scrollWidth > e.clientWidth + 1)
  .map(e => `${e.className}: ${e.textContent.trim().slice(0, 40)}`)"""
PLACEHOLDERS_CUT = """() => [...document.querySelectorAll('input[placeholder]')]
  .filter(e => e.offsetParent !== null).map(e => {
    const context = document.createElement('canvas').getContext('2d');
    const style = getComputedStyle(e);
    context.font = `${style.fontSize} ${style.fontFamily}`;
    const needs = context.measureText(e.placeholder).width + parseFloat(style.paddingLeft)
      + parseFloat(style.paddingRight);
    return [e.id, Math.ceil(needs), e.clientWidth];
  }).filter(([, needs, has]) => needs > has)"""


@pytest.mark.parametrize("viewport", [LAPTOP, {"width": 1280, "height": 800}, PHONE],
                         ids=["1440x900", "1280x800", "390px"])
def test_no_label_is_cut(browser, tmp_path, viewport):
    # A four-step fan-out, process workers, a step no live worker can run (its tile's sub
    # says so), a drained and a dead worker: the longest labels the page writes.
    cluster = Cluster(workers=2, app=shop_app(tags=("payments",)), seed=7, **STEADY)
    with dashboard(browser, tmp_path, cluster) as d:
        join_process_workers(cluster, ["p-552e83-5", "p-552e83-12"], tags=("eu",))
        cluster.submit_many([ORDER_DATA] * 5, "checkout_invoiced")
        d.page.set_viewport_size(viewport)
        d.page.goto(d.url + "/")
        d.wait_live()
        d.wait_text("[data-tile='queued'] .tile-value", "5")
        d.page.locator("[data-tile='slots'] .tile-sub", has_text="no worker can run").wait_for()
        d.page.locator("#orders-body .row .chip-2").first.wait_for()
        assert d.page.evaluate(LABELS_CUT) == []
        assert d.page.evaluate(PLACEHOLDERS_CUT) == []
        assert d.errors == []

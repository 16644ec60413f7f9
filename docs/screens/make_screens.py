"""Screenshots of the dashboard for operators (README, "Dashboard for operators"), taken in
Debian's chromium with Playwright against a live server on an ephemeral 127.0.0.1 port:

- burst.png (1440x900): 1,000 demo orders on their way, the stage tiles, steps/s and the
  progress per step;
- kill-confirm.png, kill.png (1440x900): Kill asks first; a worker killed in the middle of
  a burst, its death one incident entry with the moves it caused listed inside;
- triage.png (1440x900): a 60% failure spike, failures grouped by step and reason, one
  group picked, the bulk retry bar;
- triage-confirm.png (1440x900): the confirmation that says how many orders a retry takes;
- phone.png (390x844): the orders of a burst on a phone, no sideways scrolling;
- restart.png (1440x900): the server restarted in the middle of a burst of 1,000 orders; the
  page, reconnected, has the restart pinned (the server's record of it, whatever the
  recoveries that followed) and says what it missed while away;
- lost.png (1440x900): the server gone mid-burst: the tiles, chart and worker cards greyed,
  "last known, N s ago", the clocks stopped;
- cards-phone.png (390x844): worker cards of two `orderflow worker` processes on a phone;
- order-view.png (1440x900): one order's view: what was ordered, each step's result, and the
  failed attempts of a step whose handler crashed, one traceback unfolded.

Run from the repository: `python docs/screens/make_screens.py` (about a minute), or name the
scenes to take (`python docs/screens/make_screens.py order`). Every wait is a condition with
a timeout.
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Page, sync_playwright
from werkzeug.serving import make_server

from dashboard import create_app, services
from scheduler import App, Chaos, Cluster, TaskContext
from scheduler.journal.location import open_journal, parse_location

HERE = Path(__file__).resolve().parent
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
DESKTOP = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}
CONFIG = {"PING_INTERVAL": 0.5, "PING_TIMEOUT": 2.0, "HISTORY_INTERVAL": 1.0}
WAIT_MS = 30_000


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    stop = threading.Event()
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        stop.wait(0.05)


class Served:
    """The dashboard over a cluster on a Werkzeug server in a thread (see `served`)."""

    def __init__(self, cluster: Cluster, port: int = 0):
        self.app = create_app(CONFIG, cluster=cluster)
        self.server = make_server("127.0.0.1", port, self.app, threaded=True)
        self.port = self.server.server_port
        self.url = f"http://127.0.0.1:{self.port}"
        self.app.config["ORDERFLOW_URL"] = self.url  # for the worker processes it starts
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05})

    def halt(self) -> None:
        """The server goes (its connections close), the cluster behind it runs on."""
        services(self.app).disconnect_clients()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@contextmanager
def served(cluster: Cluster, port: int = 0) -> Iterator[Served]:
    """The dashboard over `cluster`, started, on `port` (0: any free one)."""
    cluster.start()
    running = Served(cluster, port)
    services(running.app).start()
    running.thread.start()
    try:
        yield running
    finally:
        running.halt()
        services(running.app).stop()
        cluster.stop()


def cluster(failure_rate: float = 0.0, latency_ms: tuple[float, float] = (20, 60),
            db: str | None = None, workers: int = 5) -> Cluster:
    journal = None if db is None else open_journal(parse_location(db))
    return Cluster(workers=workers, slots=4, seed=7, heartbeat_interval=0.1, heartbeat_timeout=1.0,
                   chaos=Chaos(failure_rate=failure_rate, latency_ms=latency_ms, seed=7),
                   journal=journal)


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def live(page: Page, url: str) -> None:
    page.goto(url + "/")
    page.locator("#conn[data-state='live']").wait_for(timeout=WAIT_MS)


def demo(page: Page, count: int, workflow: str = "ecommerce") -> None:
    page.wait_for_function("() => document.querySelectorAll('#f-demo-workflow option').length")
    page.select_option("#f-demo-workflow", workflow)
    page.fill("#f-demo-count", str(count))
    page.click("#f-demo-submit")


def shot(page: Page, name: str, settle: bool = True) -> None:
    """The viewport as docs/screens/<name>.png; with `settle`, once the notices of earlier
    commands are gone (they sit over the event log)."""
    if settle:
        page.wait_for_function("() => !document.querySelector('#toasts').children.length",
                               timeout=WAIT_MS)
    path = HERE / f"{name}.png"
    path.write_bytes(page.screenshot())
    print(f"wrote {path.relative_to(HERE.parent.parent)}")


def completed_at_least(c: Cluster, n: int) -> Callable[[], bool]:
    return lambda: c.stats()["progress"]["completed"] >= n


def burst(browser) -> None:
    c = cluster()
    with served(c) as running:
        url = running.url
        page = browser.new_page(viewport=DESKTOP)
        live(page, url)
        # A small burst first, so the chart has a past; then the big one, caught midway.
        demo(page, 150)
        wait_for(completed_at_least(c, 150), 60, "the first burst")
        demo(page, 1000, "ecommerce_invoiced")
        wait_for(completed_at_least(c, 450), 120, "the burst to be under way")
        page.wait_for_function(
            "() => Number(document.querySelector(\"[data-tile='running'] .tile-value\")"
            ".textContent.replace(/,/g, '')) > 0")
        shot(page, "burst")
        page.close()


def kill(browser) -> None:
    c = cluster()
    with served(c) as running:
        url = running.url
        page = browser.new_page(viewport=DESKTOP)
        live(page, url)
        demo(page, 2000)
        wait_for(completed_at_least(c, 100), 60, "the burst to be under way")
        victim = max(c.workers(), key=lambda w: w["busy"] + w["queued"])["id"]
        page.click(f"[data-worker='{victim}'] button[data-action='kill']")
        page.locator("#confirm-dialog[open]").wait_for()
        shot(page, "kill-confirm", settle=False)
        page.click("#confirm-ok")
        # The death, pinned above the log and in it; a click lists the moves it caused.
        entry = page.locator("#incidents li.incident[data-type='worker_dead']")
        entry.wait_for(timeout=WAIT_MS)
        entry.locator(".incident-head").click()
        page.locator("#incidents li.incident li.log-child").first.wait_for()
        shot(page, "kill")
        page.close()


def triage(browser) -> None:
    c = cluster(failure_rate=0.6, latency_ms=(2, 8))
    with served(c) as running:
        url = running.url
        page = browser.new_page(viewport=DESKTOP)
        live(page, url)
        demo(page, 300)
        wait_for(lambda: (lambda p: p["completed"] + p["failed"] >= 300)(c.stats()["progress"]),
                 120, "every order to finish")
        page.click("[data-filter='failed']")
        group = page.locator("#failure-groups button[data-group]").first
        group.wait_for()
        group.click()
        page.locator("#bulk-bar:not([hidden])").wait_for()
        # Open one failed order's timeline: its full failure text is one click away.
        page.locator("#orders-body .row[data-status='failed']").first.click()
        page.locator("#tl-body li[data-type='order_failed']").wait_for()
        page.click("#tl-close")
        page.locator("#timeline").wait_for(state="hidden")
        shot(page, "triage")
        page.click("#bulk-retry")
        page.locator("#confirm-dialog[open]").wait_for()
        shot(page, "triage-confirm")
        page.close()


def phone(browser) -> None:
    c = cluster()
    with served(c) as running:
        url = running.url
        page = browser.new_page(viewport=PHONE)
        live(page, url)
        demo(page, 400, "ecommerce_invoiced")
        wait_for(completed_at_least(c, 120), 60, "the burst to be under way")
        page.evaluate("() => document.getElementById('orders-title').scrollIntoView()")
        overflow = page.evaluate("() => document.documentElement.scrollWidth"
                                 " - document.documentElement.clientWidth")
        if overflow > 0:
            sys.exit(f"the page scrolls sideways by {overflow} px at 390 px")
        shot(page, "phone")
        page.close()


def restart(browser) -> None:
    with tempfile.TemporaryDirectory() as folder:
        db = str(Path(folder) / "journal.db")
        page = browser.new_page(viewport=DESKTOP)
        first = cluster(latency_ms=(40, 90), db=db)
        with served(first) as running:
            live(page, running.url)
            demo(page, 150)
            wait_for(completed_at_least(first, 150), 60, "the first burst")
            demo(page, 1000)
            wait_for(completed_at_least(first, 250), 120, "the burst to be under way")
            port = running.port
        page.locator("#conn:not([data-state='live'])").wait_for(timeout=WAIT_MS)
        second = cluster(latency_ms=(40, 90), db=db)
        with served(second, port):
            # The page reconnects by itself to the same address.
            page.locator("#incidents li.incident[data-kind='server_restarted']").wait_for(
                timeout=WAIT_MS)
            page.locator("#missed:not([hidden])").wait_for(timeout=WAIT_MS)
            shot(page, "restart")
        page.close()


def lost(browser) -> None:
    c = cluster()
    with served(c) as running:
        page = browser.new_page(viewport=DESKTOP)
        live(page, running.url)
        demo(page, 1000)
        wait_for(completed_at_least(c, 200), 60, "the burst to be under way")
        page.wait_for_function("() => !document.querySelector('#toasts').children.length",
                               timeout=WAIT_MS)
        running.halt()
        page.wait_for_function("() => /^last known, [3-9] s ago$/.test("
                               "document.getElementById('tiles-stale').textContent)",
                               timeout=WAIT_MS)
        shot(page, "lost", settle=False)
        page.close()


def cards(browser) -> None:
    c = cluster(workers=2)
    with served(c) as running:
        post(f"{running.url}/api/workers", {"count": 2, "kind": "process"})
        page = browser.new_page(viewport=PHONE)
        live(page, running.url)
        demo(page, 300)
        page.locator("#worker-cards .worker[data-worker^='p-'].w-alive").nth(1).wait_for(
            timeout=WAIT_MS)
        wait_for(completed_at_least(c, 60), 60, "the burst to be under way")
        panel = page.locator(".workers-panel")
        panel.scroll_into_view_if_needed()
        path = HERE / "cards-phone.png"
        path.write_bytes(panel.screenshot())
        print(f"wrote {path.relative_to(HERE.parent.parent)}")
        page.close()


def _render_pdf(order: dict) -> bytes:
    lines = order["items"]
    return b"%PDF" + bytes(len(lines[3]))  # a bug: the order has three lines


def invoice_app() -> App:
    """A shop whose invoice step crashes in a helper (a bug, not a TaskError)."""
    app = App("shop")

    @app.step()
    def payment(ctx: TaskContext) -> dict:
        return {"charge_id": "ch_3PZx81", "amount": 51.25, "currency": "EUR"}

    @app.step()
    def packing(ctx: TaskContext) -> dict:
        return {"parcel": "PK-20419", "weight_kg": 1.4}

    @app.step(retries=2, backoff=(0.05, 0.05))
    def invoice(ctx: TaskContext) -> dict:
        return {"pdf": len(_render_pdf(ctx.order))}

    app.workflow("checkout", {"payment": [], "packing": ["payment"], "invoice": ["payment"]})
    return app


def order(browser) -> None:
    c = Cluster(workers=2, app=invoice_app(), seed=7, heartbeat_interval=0.1,
                heartbeat_timeout=1.0)
    with served(c) as running:
        order_id = c.submit({"customer": "Grace Hopper", "workflow": "checkout", "items": [
            {"sku": "BOOK-COBOL-1959", "qty": 1, "price": 38.5},
            {"sku": "MUG-NANOSECOND", "qty": 2, "price": 4.25},
            {"sku": "STICKER-BUG", "qty": 5, "price": 0.85}]})
        wait_for(lambda: c.get_order(order_id)["status"] == "failed", 30, "the order to fail")
        page = browser.new_page(viewport=DESKTOP)
        page.goto(f"{running.url}/#order={order_id}")
        page.locator("#conn[data-state='live']").wait_for(timeout=WAIT_MS)
        trace = page.locator("#tl-body .tl-attempts-step[data-step='invoice'] .tl-trace").first
        trace.locator("summary").click()
        # The drawer scrolled to the results, the lines and the DAG above them.
        page.locator("#tl-body .tl-attempts").evaluate("e => e.scrollIntoView({block: 'start'})")
        shot(page, "order-view")
        page.close()


SCENES = {f.__name__: f for f in (burst, kill, triage, phone, restart, lost, cards, order)}


def main() -> None:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    wanted = sys.argv[1:] or list(SCENES)
    unknown = [name for name in wanted if name not in SCENES]
    if unknown:
        sys.exit(f"no scene {', '.join(unknown)}; the scenes: {', '.join(SCENES)}")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            for name in wanted:
                SCENES[name](browser)
        finally:
            browser.close()


if __name__ == "__main__":
    main()

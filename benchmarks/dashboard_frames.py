"""The dashboard's frames while 10,000 orders run: the work of each animation frame (the page
counts it in window.orderflowDashboard.frames), with 10,000 demo orders streaming to the page
and, as the baseline measured in the same run, with 100.

`orderflow serve` (gunicorn, in memory, no failures, no latency) and Debian's chromium driven
by Playwright, a fresh page per run. The table draws only the rows in view, so a frame should
cost about the same for 10,000 orders as for 100. This is the figure the browser test
(tests/test_dashboard_browser.py) prints but does not bound: a busy machine stretches frames.
Prints one JSON line; exits 1 when a frame of the 10,000-order run took 100 ms or more.

    python benchmarks/dashboard_frames.py [--orders 10000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit  # noqa: E402
from server import Server  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
BOUND_MS = 100.0  # the longest frame allowed with 10,000 orders (a visible stutter beyond)
STALL_S = 60.0  # a run fails once its completed count has not grown for this long


def completed(page) -> int:
    return int(page.inner_text("[data-filter='completed'] .seg-count").replace(",", ""))


def run(browser, orders: int, folder: Path) -> dict:
    """One page over a fresh server: submit `orders` from the form, wait until the page shows
    them completed, and read its frame counters."""
    flags = ("--no-persist", "--workers", "3", "--failure-rate", "0", "--latency-ms", "0,0",
             "--heartbeat-timeout", "5", "--log-level", "warning",
             "--log-file", str(folder / f"serve-{orders}.log"))
    with Server(*flags) as server:
        context = browser.new_context(viewport={"width": 1280, "height": 800}, bypass_csp=True)
        try:
            page = context.new_page()
            page.goto(server.url + "/")
            page.locator("#conn[data-state='live']").wait_for(timeout=30_000)
            page.fill("#f-demo-count", str(orders))
            started = time.perf_counter()
            page.click("#f-demo-submit")
            best, grew_at = 0, time.monotonic()
            while best < orders:
                threading.Event().wait(0.5)
                now = completed(page)
                if now > best:
                    best, grew_at = now, time.monotonic()
                elif time.monotonic() - grew_at > STALL_S:
                    raise RuntimeError(f"{orders} orders: stuck at {best} for {STALL_S:.0f} s")
            seconds = time.perf_counter() - started
            frames = page.evaluate("() => window.orderflowDashboard.frames")
            table = page.evaluate("() => window.orderflowDashboard.table.stats")
        finally:
            context.close()
    return {"orders": orders, "seconds": round(seconds, 1), "frames": frames["count"],
            "frame_mean_ms": round(frames["totalMs"] / max(1, frames["count"]), 2),
            "frame_max_ms": round(frames["maxMs"], 1),
            "table_render_max_ms": round(table["maxRenderMs"], 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=10_000)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="orderflow-frames-") as folder, \
            sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS,
                                             headless=True)
        try:
            baseline = run(browser, 100, Path(folder))
            loaded = run(browser, args.orders, Path(folder))
        finally:
            browser.close()
    within = loaded["frame_max_ms"] < BOUND_MS
    emit({"benchmark": "dashboard_frames", "baseline": baseline, "loaded": loaded,
          "frame_max_ratio": round(loaded["frame_max_ms"] / max(0.1, baseline["frame_max_ms"]),
                                   2),
          "bound_ms": BOUND_MS, "within_bound": within})
    return 0 if within else 1


if __name__ == "__main__":
    sys.exit(main())

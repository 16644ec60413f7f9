"""The worked example against a real local gateway: 300 orders, a worker process SIGKILLed in
the middle of a payment and one server restart; afterwards every completed order was charged
exactly once, and no order is stuck."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests
from conftest import wait_for

from examples.shop.app import summarise
from examples.shop.run import Shop

pytestmark = pytest.mark.slow  # a gateway, a server (restarted) and worker processes

ORDER = {"customer": "ada", "items": [{"sku": "TEA-1", "qty": 2, "price": 4.5}],
         "workflow": "checkout"}
TERMINAL = {"completed", "failed", "cancelled"}
ROOT = Path(__file__).resolve().parents[1]


def processes_with(marker: str) -> list[int]:
    """The pids of the processes whose environment holds `marker` (children inherit it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and entry.name != str(os.getpid()):
            try:
                if marker.encode() in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue  # gone meanwhile, or not ours to read
    return found


def all_orders(http: requests.Session, url: str) -> list[dict]:
    orders, cursor = [], None
    while True:
        query = {"limit": 500, **({"cursor": cursor} if cursor else {})}
        page = http.get(f"{url}/api/orders", params=query, timeout=10).json()
        orders += page["orders"]
        cursor = page.get("next_cursor")
        if not cursor:
            return orders


def running_payment(http: requests.Session, url: str, pid: int) -> bool:
    workers = http.get(f"{url}/api/workers", timeout=10).json()["workers"]
    return any(w.get("pid") == pid and w["status"] == "alive"
               and any(t.endswith(":payment") for t in w.get("running", []))
               for w in workers)


def test_300_orders_are_charged_exactly_once_through_a_kill_mid_payment_and_a_restart(
    tmp_path,
):
    shop = Shop(str(tmp_path / "shop.db"), fail=0.1, slow=0.1, seed=3)
    http = requests.Session()
    try:
        ids = []
        for i in range(300):
            response = http.post(f"{shop.server_url}/api/orders", json=ORDER,
                                 headers={"Idempotency-Key": f"checkout-{i}"}, timeout=10)
            assert response.status_code == 201, response.text
            ids.append(response.json()["id"])
        victim = shop.workers[0]
        wait_for(lambda: running_payment(http, shop.server_url, victim.pid), 60,
                 message="the first worker process in the middle of a payment")
        shop.kill(victim)
        shop.add_worker()  # its supervisor would start a new one
        wait_for(lambda: sum(o["status"] == "completed"
                             for o in all_orders(http, shop.server_url)) >= 50, 60,
                 message="some orders completed before the restart")
        shop.kill(shop.server)
        shop.start_server()  # same database, same port: the workers find it again
        wait_for(lambda: all(o["status"] in TERMINAL
                             for o in all_orders(http, shop.server_url)), 240,
                 message="every order finished after the restart")
        orders = {o["id"]: o for o in all_orders(http, shop.server_url)}
        ledger = http.get(f"{shop.gateway_url}/ledger", timeout=10).json()
    finally:
        http.close()
        shop.stop()
    assert set(ids) <= set(orders)
    charges_by_order: dict[str, list[dict]] = {}
    for charge in ledger["charges"].values():
        charges_by_order.setdefault(charge["order_id"], []).append(charge)
    completed = [oid for oid in ids if orders[oid]["status"] == "completed"]
    assert len(completed) >= 290  # 6 retries of a 10% failure: a failed order is very rare
    for oid in completed:
        assert len(charges_by_order.get(oid, [])) == 1, oid  # charged exactly once
    # The charge was sent more than once for some order (a retry after the kill or a
    # timeout) and the gateway answered with the first charge: the key did its job.
    assert sum(c["replays"] for c in ledger["charges"].values()) >= 1


def test_make_example_with_its_port_taken_says_so_and_leaves_no_process(tmp_path):
    marker = f"ORDERFLOW_TEST_MARK={uuid.uuid4().hex}"
    env = {**os.environ, marker.split("=")[0]: marker.split("=")[1]}
    try:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            # (Before, it never ended: the gateway it left running held its output open.)
            proc = subprocess.run(
                [sys.executable, "-m", "examples.shop.run", "--port", str(port),
                 "--gateway-port", "0", "--db", str(tmp_path / "shop.db")],
                cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        # The gateway had started before the server failed: it was stopped too.
        assert proc.returncode == 1, proc.stderr
        assert "Traceback" not in proc.stderr, proc.stderr
        assert f"127.0.0.1:{port} is already in use" in proc.stderr
        assert "--port" in proc.stderr and "nothing is left running" in proc.stderr
        assert processes_with(marker) == []
    finally:
        for pid in processes_with(marker):
            os.kill(pid, 9)


# An order's whole life, through the same faults: every fourth order is never confirmed
# (its window passes: cancelled, its stock released), every fourth has an item the
# warehouse cannot find (packing fails for good after the charge: refunded and released),
# the rest are confirmed at once and delivered (half told before they ship, half after).
LIFE_SETTINGS = {"SHOP_CONFIRM_WINDOW": "4s", "SHOP_REVIEW_DELAY": "2s"}
SETTLED = TERMINAL | {"compensated", "compensation_failed"}


def life_order(i: int) -> dict:
    items = [{"sku": "TEA-1", "qty": 2, "price": 4.5}]
    if i % 4 == 2:
        items.append({"sku": "SOLD-OUT-1", "qty": 1, "price": 12.0})
    return {"customer": f"c{i}", "items": items, "workflow": "order_life"}


def signal(http: requests.Session, url: str, oid: str, name: str) -> dict:
    response = http.post(f"{url}/api/orders/{oid}/signals/{name}", json={"data": {"by": "test"}},
                         headers={"Idempotency-Key": f"{oid}:{name}"}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def deliver_the_shipped(http: requests.Session, url: str, pending: set[str]) -> bool:
    """Send `delivered` to every order of `pending` that now waits for it (the carrier's
    webhook after shipping); True once none is left."""
    for order in all_orders(http, url):
        if order["id"] in pending and any(w["signal"] == "delivered"
                                          for w in order.get("waits", [])):
            assert signal(http, url, order["id"], "delivered")["outcome"] == "delivered"
            pending.discard(order["id"])
    return not pending


def by_order(records: dict) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = {}
    for record in records.values():
        grouped.setdefault(record["order_id"], []).append(record)
    return grouped


@pytest.mark.timeout(420)  # above its waits' bounds, so a stuck run says which one
def test_an_orders_whole_life_holds_its_promises_through_a_kill_mid_payment_and_a_restart(
    tmp_path,
):
    shop = Shop(str(tmp_path / "shop.db"), fail=0.1, slow=0.05, seed=5,
                settings=LIFE_SETTINGS)
    http = requests.Session()
    try:
        ids, kinds = [], {}
        for i in range(120):
            response = http.post(f"{shop.server_url}/api/orders", json=life_order(i),
                                 headers={"Idempotency-Key": f"life-{i}"}, timeout=10)
            assert response.status_code == 201, response.text
            oid = response.json()["id"]
            ids.append(oid)
            kinds[oid] = ("delivered_early", "delivered_late", "out_of_stock",
                          "never_confirmed")[i % 4]
            if kinds[oid] != "never_confirmed":
                # Sent before the order reaches its wait: kept, then taken when it does.
                assert signal(http, shop.server_url, oid,
                              "payment_confirmed")["outcome"] in ("kept", "delivered")
            if kinds[oid] == "delivered_early":
                # Kept, as a rule; on a busy machine the order may have shipped meanwhile.
                assert signal(http, shop.server_url, oid,
                              "delivered")["outcome"] in ("kept", "delivered")
        late = {oid for oid, kind in kinds.items() if kind == "delivered_late"}
        victim = shop.workers[0]
        wait_for(lambda: running_payment(http, shop.server_url, victim.pid), 60,
                 message="the first worker process in the middle of a payment")
        shop.kill(victim)
        shop.add_worker()  # its supervisor would start a new one
        wait_for(lambda: sum(o["status"] in SETTLED
                             for o in all_orders(http, shop.server_url)) >= 20, 90,
                 message="some orders settled before the restart")
        shop.kill(shop.server)
        shop.start_server()  # same database, same port: the workers find it again
        wait_for(lambda: deliver_the_shipped(http, shop.server_url, late), 120,
                 message="every late order shipped and told it was delivered")
        wait_for(lambda: all(o["status"] in SETTLED
                             for o in all_orders(http, shop.server_url)), 120,
                 message="every order settled after the restart")
        orders = {o["id"]: o for o in all_orders(http, shop.server_url)}
        ledger = http.get(f"{shop.gateway_url}/ledger", timeout=10).json()
    finally:
        http.close()
        shop.stop()
    assert set(ids) <= set(orders)
    charges, refunds = by_order(ledger["charges"]), by_order(ledger["refunds"])
    reservations, releases = by_order(ledger["reservations"]), by_order(ledger["releases"])
    reviews = by_order(ledger["reviews"])
    for oid, kind in kinds.items():
        status = orders[oid]["status"]
        assert len(reservations.get(oid, [])) == 1, (oid, kind)
        if kind == "never_confirmed":
            # The window passed: cancelled, its stock released once, nothing charged.
            assert status == "compensated", (oid, status)
            assert len(releases.get(oid, [])) == 1, oid
            assert oid not in charges and oid not in refunds and oid not in reviews, oid
            continue
        assert len(charges.get(oid, [])) == 1, (oid, kind)  # every confirmed order, once
        if kind == "out_of_stock":
            # Failed after its charge: that charge refunded exactly once, the stock released.
            assert status == "compensated", (oid, status)
            refunded = [r["request"]["charge_id"] for r in refunds.get(oid, [])]
            assert refunded == [charges[oid][0]["id"]], oid
            assert len(releases.get(oid, [])) == 1, oid
            assert oid not in reviews, oid
        else:
            # Delivered: exactly one review request, nothing undone.
            assert status == "completed", (oid, status)
            assert len(reviews.get(oid, [])) == 1, oid
            assert oid not in refunds and oid not in releases, oid
    # Some call was sent more than once (a retry after the kill, the restart or a 503) and
    # the gateway answered with its first record: the keys did their job.
    assert sum(ledger["replays"].values()) >= 1
    # The nightly reconciliation's sums: what stayed charged is what was delivered.
    books = summarise(ledger)
    delivered = [oid for oid, kind in kinds.items() if kind.startswith("delivered")]
    assert books["refunds"] == sum(kind == "out_of_stock" for kind in kinds.values())
    assert books["net"] == round(9.0 * len(delivered), 2)
    assert books["unmatched_refunds"] == []

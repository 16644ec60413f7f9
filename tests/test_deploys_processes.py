"""Issue 23's scenario on the real commands: `orderflow serve --app shopv1:app` SIGKILLed with
orders in flight, started again with `--app shopv2:app` (whose workflow is another), and the
stranded orders finished by `orderflow worker --app shopv1:app` once it joins. And the worker
processes a server starts itself (POST /api/workers, kind process) run the server's app:
they offer its definitions and never take a step of another version."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import requests
from conftest import wait_for

from scheduler.chaos.serve_process import ServeProcess

pytestmark = pytest.mark.slow  # server and worker processes, SIGKILLed and restarted

ORDER = {"customer": "deploy", "items": [{"sku": "X", "qty": 1, "price": 1.0}]}

SHOPV1 = '''
import time
from scheduler import App

app = App("shop", version="v1")

for name in ("payment", "packing", "shipping"):
    def handler(ctx, name=name):
        time.sleep(0.2)
        return {"ran": name + "@v1"}
    app.add_step(name, handler)

app.workflow("checkout", ["payment", "packing", "shipping"])
'''

SHOPV2 = '''
from scheduler import App

app = App("shop")  # its version derived from its shape and policies

for name in ("fraud", "payment", "packing", "shipping"):
    app.add_step(name, lambda ctx, name=name: {"ran": name + "@v2"})

app.workflow("checkout2", ["fraud", "payment", "packing", "shipping"])
'''


def serve(db: Path, app: str, workers: int = 2) -> ServeProcess:
    return ServeProcess("--app", app, "--db", str(db), "--log-file", str(db.parent / "of.log"),
                        "--workers", str(workers), "--heartbeat-interval", "0.05",
                        "--heartbeat-timeout", "0.5", "--log-level", "warning")


def stats(server: ServeProcess) -> dict:
    return requests.get(f"{server.url}/api/stats", timeout=10).json()


def write_apps(tmp_path: Path, monkeypatch) -> None:
    """shopv1.py and shopv2.py, importable by the servers and the workers they start."""
    (tmp_path / "shopv1.py").write_text(textwrap.dedent(SHOPV1))
    (tmp_path / "shopv2.py").write_text(textwrap.dedent(SHOPV2))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])))


def test_stranded_orders_of_the_old_app_finish_once_a_worker_of_it_joins(tmp_path, monkeypatch):
    write_apps(tmp_path, monkeypatch)
    db = tmp_path / "v.db"
    processes: list[ServeProcess] = []
    worker = None
    try:
        first = serve(db, "shopv1:app")
        processes.append(first)
        ids = []
        for _ in range(20):
            answer = requests.post(f"{first.url}/api/orders",
                                   json={**ORDER, "workflow": "checkout"}, timeout=10)
            assert answer.status_code == 201
            ids.append(answer.json()["id"])
        wait_for(lambda: stats(first)["orders"]["completed"] >= 1, 60, message="work done")
        first.kill()
        second = serve(db, "shopv2:app")
        processes.append(second)
        after = stats(second)
        left = after["orders_total"] - after["orders"]["completed"]
        assert after["orders_total"] == 20 and left > 0
        assert after["stranded"] == {"checkout@v1": left}
        waiting = [requests.get(f"{second.url}/api/orders/{i}", timeout=10).json()
                   for i in ids]
        unfinished = [o for o in waiting if o["status"] != "completed"]
        assert all(o["tasks"] and o["version"] == "v1" for o in waiting)
        reasons = {t["waiting_for"] for o in unfinished for t in o["tasks"].values()
                   if t["status"] == "ready"}
        assert reasons == {"needs workflow checkout version v1: no live worker offers it"}
        metrics = requests.get(f"{second.url}/metrics", timeout=10).text
        assert f'orderflow_stranded_orders{{definition="checkout@v1"}} {float(left)}' in metrics
        log = tmp_path / "worker.log"
        with log.open("w") as out:
            worker = subprocess.Popen(
                [sys.executable, "-m", "scheduler", "worker", "--app", "shopv1:app",
                 "--server", second.url, "--slots", "4"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path)
        wait_for(lambda: stats(second)["orders"]["completed"] == 20, 120,
                 message="every order completed")
        done = requests.get(f"{second.url}/api/orders/{unfinished[0]['id']}", timeout=10).json()
        assert [t["result"]["ran"] for t in done["tasks"].values()] == [
            "payment@v1", "packing@v1", "shipping@v1"]
        assert stats(second)["stranded"] == {}
    finally:
        if worker is not None:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(20)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait(5)
        for process in processes:
            if process.proc.poll() is None:
                process.stop()


def get(server: ServeProcess, path: str) -> dict:
    return requests.get(f"{server.url}{path}", timeout=10).json()


def test_a_worker_process_the_server_starts_runs_its_app_and_no_other_version(
        tmp_path, monkeypatch):
    write_apps(tmp_path, monkeypatch)
    db = tmp_path / "v.db"
    # Orders of checkout v1 in the journal, never started (no worker ran anything).
    first = serve(db, "shopv1:app", workers=0)
    try:
        old = [requests.post(f"{first.url}/api/orders", json={**ORDER, "workflow": "checkout"},
                             timeout=10).json()["id"] for _ in range(3)]
    finally:
        first.kill()
    second = serve(db, "shopv2:app", workers=0)
    pids: list[int] = []
    try:
        started = requests.post(f"{second.url}/api/workers", json={"kind": "process"},
                                timeout=10)
        assert started.status_code == 202, started.text
        pids = [p["pid"] for p in started.json()["processes"]]

        def joined() -> dict | None:
            return next((w for w in get(second, "/api/workers")["workers"]
                         if w.get("pid") in pids and w["status"] == "alive"), None)

        worker = wait_for(joined, 30, message="the started process to join")
        [checkout2] = get(second, "/api/workflows")["workflows"]
        # It offers the server's definitions (a worker without the app would offer any).
        assert worker["definitions"] == [f"checkout2@{checkout2['version']}"]
        assert sorted(worker["steps"]) == ["fraud", "packing", "payment", "shipping"]
        new = requests.post(f"{second.url}/api/orders", json={**ORDER, "workflow": "checkout2"},
                            timeout=10).json()["id"]
        wait_for(lambda: get(second, f"/api/orders/{new}")["status"] == "completed", 30,
                 message="the checkout2 order to complete on the started process")
        done = get(second, f"/api/orders/{new}")
        # The server's handlers ran (the demo's would answer otherwise), on that process.
        assert [t["result"]["ran"] for t in done["tasks"].values()] == [
            "fraud@v2", "payment@v2", "packing@v2", "shipping@v2"]
        assert {t["worker"] for t in done["tasks"].values()} == {worker["id"]}
        # The older v1 orders, first in line, were never handed to it: their steps wait
        # for a worker that offers checkout v1, without one attempt.
        for order_id in old:
            order = get(second, f"/api/orders/{order_id}")
            assert order["version"] == "v1" and order["status"] != "completed"
            assert all(t["attempts"] == 0 for t in order["tasks"].values()), order["tasks"]
            assert not [e for e in order["events"] if e["type"] == "task_assigned"]
        assert get(second, "/api/stats")["stranded"] == {"checkout@v1": 3}
    finally:
        second.stop()
    # The server reaped the process it started on the way out.
    for pid in pids:
        wait_for(lambda pid=pid: not Path(f"/proc/{pid}").exists(), 10,
                 message=f"worker process {pid} to be gone")

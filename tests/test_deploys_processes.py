"""Issue 23's scenario on the real commands: `orderflow serve --app shopv1:app` SIGKILLed with
orders in flight, started again with `--app shopv2:app` (whose workflow is another), and the
stranded orders finished by `orderflow worker --app shopv1:app` once it joins."""

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


def serve(db: Path, app: str) -> ServeProcess:
    return ServeProcess("--app", app, "--db", str(db), "--log-file", str(db.parent / "of.log"),
                        "--workers", "2", "--heartbeat-interval", "0.05",
                        "--heartbeat-timeout", "0.5", "--log-level", "warning")


def stats(server: ServeProcess) -> dict:
    return requests.get(f"{server.url}/api/stats", timeout=10).json()


def test_stranded_orders_of_the_old_app_finish_once_a_worker_of_it_joins(tmp_path, monkeypatch):
    (tmp_path / "shopv1.py").write_text(textwrap.dedent(SHOPV1))
    (tmp_path / "shopv2.py").write_text(textwrap.dedent(SHOPV2))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])))
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

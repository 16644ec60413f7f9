"""`orderflow order`: the operator's shell runs a finished order again from a step, or
replays it as a new order, through the API with the token; refusals are the server's."""

from __future__ import annotations

import pytest
from conftest import wait_for
from test_deploys import ORDER
from test_rerun_api import shop
from web import LIVE_CONFIG, STEADY, LiveServer, app_over

from scheduler import Cluster
from scheduler.cli import main

TOKEN = "ops-secret"


@pytest.fixture()
def server():
    charges: list = []
    cluster = Cluster(workers=1, app=shop(charges), **STEADY)
    with app_over(cluster, {**LIVE_CONFIG, "ORDERFLOW_TOKEN": TOKEN}) as app, \
            LiveServer(app) as live:
        oid = cluster.submit(ORDER, "checkout")
        wait_for(lambda: cluster.get_order(oid)["status"] == "completed")
        yield live.url, cluster, oid, charges


def order(url: str, *argv: str) -> list[str]:
    return ["order", *argv, "--server", url, "--token", TOKEN]


def test_an_order_runs_again_from_the_shell_under_new_keys_when_asked(server, capsys):
    url, cluster, oid, charges = server
    assert main(order(url, "rerun", oid, "--step", "packing")) == 0
    assert capsys.readouterr().out == (
        f"order {oid} runs again: packing (the same idempotency keys)\n")
    wait_for(lambda: cluster.get_order(oid)["status"] == "completed")
    assert main(order(url, "rerun", oid, "--step", "payment", "--new-keys")) == 0
    assert capsys.readouterr().out == (
        f"order {oid} runs again: payment, packing (new idempotency keys)\n")
    wait_for(lambda: len(charges) == 2)
    assert charges == [f"{oid}:payment", f"{oid}:payment:rerun-1"]
    actions = [e for e in cluster.events() if e["type"] == "operator_action"]
    assert [a["action"] for a in actions] == ["rerun", "rerun"]
    assert actions[0]["who"].startswith("token holder at ")


def test_an_order_is_replayed_from_the_shell_and_a_refusal_is_one_line(server, capsys):
    url, cluster, oid, _ = server
    assert main(order(url, "replay", oid, "--pinned")) == 0
    out = capsys.readouterr().out
    new_id = out.split("as new order ")[1].split(" ")[0]
    assert out == f"order {oid} replayed as new order {new_id} (checkout version v1)\n"
    assert cluster.get_order(new_id)["data"] == cluster.get_order(oid)["data"]
    assert main(order(url, "rerun", oid, "--step", "nosuchstep")) == 1
    assert capsys.readouterr().err == (
        "orderflow order: error: 404: unknown step 'nosuchstep'\n")

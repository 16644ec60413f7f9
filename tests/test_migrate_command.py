"""`orderflow migrate`: the operator's shell shows what would happen to each order, asks,
then moves them through the API, audited under the token; refusals are the server's words."""

from __future__ import annotations

import pytest
from test_deploys import FAST, SHOP_V2
from test_migrate_api import paid_orders
from test_store import journal_at
from web import LIVE_CONFIG, LiveServer, app_over

from dashboard.server import migrate_command
from scheduler import Cluster
from scheduler.cli import build_parser, main

TOKEN = "ops-secret"


@pytest.fixture()
def server(tmp_path):
    db = str(tmp_path / "of.db")
    ids = paid_orders(db, 2)
    cluster = Cluster(workers=0, app=SHOP_V2, journal=journal_at(db), **FAST)
    with app_over(cluster, {**LIVE_CONFIG, "ORDERFLOW_TOKEN": TOKEN}) as app, \
            LiveServer(app) as live:
        yield live.url, cluster, ids


def argv(url: str, *more: str) -> list[str]:
    return ["migrate", "checkout@v1", "checkout2", *more, "--server", url, "--token", TOKEN]


def test_a_dry_run_lists_each_order_and_moves_none(server, capsys):
    url, cluster, ids = server
    assert main(argv(url, "--dry-run")) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"{ids[0]}: kept payment; skipped fraud; to run packing, shipping",
        f"{ids[1]}: kept payment; skipped fraud; to run packing, shipping",
        "2 order(s) would move from checkout@v1 to checkout2"]
    assert cluster.get_order(ids[0])["version"] == "v1"


def test_the_operator_is_asked_and_a_no_moves_nothing(server, capsys):
    url, cluster, ids = server
    args = build_parser("migrate").parse_args(argv(url, "--order", ids[1]))
    asked = []
    assert migrate_command.run(args, ask=lambda q: asked.append(q) or "n") == 1
    assert asked == ["move 1 order(s) from checkout@v1 to checkout2? [y/N] "]
    assert cluster.get_order(ids[1])["version"] == "v1"
    assert migrate_command.run(args, ask=lambda q: "y") == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        "moved 1 order(s) from checkout@v1 to checkout2")
    assert cluster.get_order(ids[1])["version"] == "v2"
    assert cluster.get_order(ids[0])["version"] == "v1"
    (action,) = [e for e in cluster.events() if e["type"] == "operator_action"]
    assert action["who"].startswith("token holder at ")


def test_yes_moves_without_asking_and_a_refusal_is_the_servers_message(server, capsys):
    url, cluster, ids = server
    assert main(argv(url, "--yes")) == 0
    assert all(cluster.get_order(i)["workflow"] == "checkout2" for i in ids)
    capsys.readouterr()
    assert main(["migrate", "checkout2", "checkout2@v2", "--server", url, "--token",
                 TOKEN]) == 1
    assert capsys.readouterr().err == (
        "orderflow migrate: error: 409: from and to are both checkout2 version v2\n")

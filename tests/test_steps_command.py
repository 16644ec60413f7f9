"""`orderflow step`: the operator's shell pauses, resumes and limits a running server's steps
through its API, with the token, and every refusal is the server's own message."""

from __future__ import annotations

import pytest
from web import LIVE_CONFIG, STEADY, LiveServer, app_over, fast_cluster

from scheduler.cli import main

TOKEN = "ops-secret"


@pytest.fixture()
def server():
    cluster = fast_cluster(workers=0, **STEADY)
    config = {**LIVE_CONFIG, "ORDERFLOW_TOKEN": TOKEN}
    with app_over(cluster, config) as app, LiveServer(app) as live:
        yield live.url, cluster


def step(server_url: str, *argv: str, token: str | None = TOKEN) -> list[str]:
    tail = ["--server", server_url] + (["--token", token] if token else [])
    return ["step", *argv, *tail]


def test_a_step_paused_and_resumed_from_the_shell_is_audited_under_the_token(server, capsys):
    url, cluster = server
    assert main(step(url, "pause", "payment", "--why", "gateway down")) == 0
    out = capsys.readouterr().out
    assert out.startswith("payment: payment is paused by ") and out.rstrip().endswith(
        "gateway down (in flight 0, ready 0, held 0)")
    [payment] = [s for s in cluster.steps() if s["name"] == "payment"]
    assert payment["paused"]["why"] == "gateway down"
    assert main(step(url, "list")) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in listed] == sorted(s["name"] for s in cluster.steps())
    assert main(step(url, "resume", "payment")) == 0
    assert capsys.readouterr().out.startswith("payment: running")
    actions = [e["action"] for e in cluster.events() if e["type"] == "operator_action"]
    assert actions == ["pause", "resume"]


def test_limits_are_changed_live_and_shown(server, capsys):
    url, cluster = server
    assert main(step(url, "limits", "payment", "--max-in-flight", "4", "--rate", "2.5")) == 0
    assert capsys.readouterr().out.rstrip().endswith("; max 4 in flight, 2.5 starts/s)")
    [payment] = [s for s in cluster.steps() if s["name"] == "payment"]
    assert (payment["max_in_flight"], payment["rate"]) == (4, 2.5)


@pytest.mark.parametrize(("argv", "token", "said"), [
    (("resume", "payment"), TOKEN, "409: "),  # not paused
    (("pause", "nosuchstep"), TOKEN, "404: "),
    (("limits", "payment", "--max-in-flight", "-1"), TOKEN, "422: "),
    (("list",), None, "401: "),
    (("limits", "payment"), TOKEN, "give --max-in-flight and/or --rate"),
])
def test_a_refusal_is_one_line_with_the_servers_message_and_exit_1(server, capsys, argv,
                                                                    token, said):
    url, cluster = server
    assert main(step(url, *argv, token=token)) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"orderflow step: error: {said}") and err.count("\n") == 1
    assert "Traceback" not in err
    assert [s["paused"] for s in cluster.steps()] == [None] * len(cluster.steps())


def test_a_server_that_is_not_there_is_named_with_the_flag_to_change(capsys):
    assert main(["step", "list", "--server", "http://127.0.0.1:9"]) == 1
    err = capsys.readouterr().err
    assert "cannot reach http://127.0.0.1:9" in err and "(--server)" in err

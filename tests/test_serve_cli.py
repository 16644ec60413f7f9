"""`orderflow serve`: argument checks in-process, and the real thing (gunicorn) as a subprocess."""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import subprocess
import sys

import pytest
import requests
import socketio
from conftest import wait_for
from web import ORDER

from dashboard.server.command import serve_settings
from dashboard.settings import DEFAULT_DB, ServeSettings
from scheduler import ClusterConfig
from scheduler.chaos.serve_process import orderflow_command
from scheduler.cli import build_parser, main

TOKEN = "cli-token"


def read_line(stream, timeout: float) -> str:
    ready, _, _ = select.select([stream], [], [], timeout)
    assert ready, f"no output within {timeout}s"
    return stream.readline()


def test_serve_flags_become_settings(monkeypatch):
    monkeypatch.delenv("ORDERFLOW_TOKEN", raising=False)
    args = build_parser().parse_args([
        "serve", "--host", "127.0.0.1", "--port", "0", "--workers", "2", "--no-persist",
        "--heartbeat-interval", "0.2", "--heartbeat-timeout", "1", "--max-retries", "1",
        "--failure-rate", "0.5", "--latency-ms", "5,10", "--token", "t"])
    assert serve_settings(args) == ServeSettings(
        host="127.0.0.1", port=0, workers=2, persist=False, heartbeat_interval=0.2,
        heartbeat_timeout=1.0, max_retries=1, failure_rate=0.5, latency_ms=(5.0, 10.0),
        token="t")


def test_serve_defaults_persist_to_the_logs_folder_and_read_the_token_from_env(monkeypatch):
    monkeypatch.setenv("ORDERFLOW_TOKEN", "from-env")
    monkeypatch.delenv("ORDERFLOW_DB", raising=False)
    settings = serve_settings(build_parser().parse_args(["serve"]))
    assert (settings.db, settings.persist, settings.token) == (DEFAULT_DB, True, "from-env")
    assert (settings.host, settings.port) == ("127.0.0.1", 5000)


def test_the_database_comes_from_orderflow_db_unless_db_is_given(monkeypatch, tmp_path):
    url = "postgresql://shop@127.0.0.1:5432/shop"
    monkeypatch.setenv("ORDERFLOW_DB", url)
    settings = serve_settings(build_parser().parse_args(["serve"]))
    assert settings.db == url and settings.log_file == ServeSettings().log_file
    given = serve_settings(build_parser().parse_args(["serve", "--db", str(tmp_path / "x.db")]))
    assert given.db == str(tmp_path / "x.db")
    assert build_parser().parse_args(["prune", "--older-than", "1d"]).db == url


def test_the_log_goes_next_to_a_given_database_unless_a_log_file_is_given(tmp_path):
    shop = tmp_path / "shop.db"
    settings = serve_settings(build_parser().parse_args(["serve", "--db", str(shop)]))
    assert settings.log_file == str(tmp_path / "shop.log")
    named = serve_settings(build_parser().parse_args(
        ["serve", "--db", str(shop), "--log-file", str(tmp_path / "x.log")]))
    assert named.log_file == str(tmp_path / "x.log")
    memory = serve_settings(build_parser().parse_args(["serve", "--no-persist"]))
    assert memory.log_file == ServeSettings().log_file


def test_serve_defaults_are_the_cluster_defaults():
    settings, cluster = ServeSettings(), ClusterConfig()
    assert (settings.workers, settings.heartbeat_interval, settings.heartbeat_timeout,
            settings.max_retries) == (cluster.workers, cluster.heartbeat_interval,
                                      cluster.heartbeat_timeout, cluster.retry.max_retries)


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--host", "0.0.0.0"], "--token"),
        (["--heartbeat-interval", "1", "--heartbeat-timeout", "0.5"], "heartbeat_timeout"),
        (["--failure-rate", "2"], "failure_rate"),
        (["--latency-ms", "1,70000"], "latency_ms"),
        (["--max-retries", "-1"], "max_retries"),
        (["--port", "70000"], "port"),
        (["--graceful-timeout", "-1"], "graceful-timeout"),
    ],
)
def test_serve_refuses_bad_settings_before_starting(monkeypatch, capsys, argv, fragment):
    monkeypatch.delenv("ORDERFLOW_TOKEN", raising=False)
    assert main(["serve", "--no-persist", *argv]) == 2
    assert fragment in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--latency-ms", "5"], ["--db", "x.db", "--no-persist"],
                                  ["--port", "many"]])
def test_serve_rejects_malformed_flags(capsys, argv):
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", *argv])
    assert exit_info.value.code == 2


@pytest.mark.slow
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_serve_runs_on_gunicorn_prints_its_url_and_stops_cleanly_on_signal(stop_signal, tmp_path):
    env = {**os.environ, "ORDERFLOW_TOKEN": ""}
    # Its log file in the test's folder: never the user's logs/orderflow.log.
    # A graceful timeout no shutdown below could wait out: the open WebSocket must be closed
    # at once for the server to exit within the (generous) wait.
    command = [*orderflow_command(), "serve", "--port", "0", "--no-persist", "--token", TOKEN,
               "--log-file", str(tmp_path / "orderflow.log"), "--graceful-timeout", "300",
               "--workers", "2", "--heartbeat-interval", "0.05", "--heartbeat-timeout", "0.3",
               "--latency-ms", "0,1", "--log-level", "info"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    client = socketio.Client(reconnection=False)
    try:
        line = read_line(proc.stdout, 20)
        match = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        assert match and int(match.group(1)) > 0, line
        url = match.group(0)
        with requests.Session() as http:
            health = http.get(f"{url}/healthz", timeout=5).json()
            # The only server of its journal leads it (no lease, no epoch).
            assert health["status"] == "ok" and health["role"] == "leader", health
            assert http.post(f"{url}/api/orders", json=ORDER, timeout=5).status_code == 401
            created = http.post(f"{url}/api/orders", json=ORDER, timeout=5,
                                headers={"Authorization": f"Bearer {TOKEN}"})
            assert created.status_code == 201
        # A WebSocket through gunicorn, left open: shutdown must not wait for it.
        snapshots = []
        client.on("snapshot", snapshots.append)
        client.connect(url, transports=["websocket"], wait_timeout=5,
                       headers={"Authorization": f"Bearer {TOKEN}"})
        wait_for(lambda: snapshots, 5, message="snapshot over gunicorn")
        assert snapshots[0]["stats"]["orders_total"] == 1
        proc.send_signal(stop_signal)
        # Long before the 300 s graceful timeout, however busy the machine: the open
        # WebSocket was dropped at once, not waited for.
        assert proc.wait(timeout=60) == 0
        wait_for(lambda: not client.connected, 5, message="client saw the server go")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        stderr = proc.stderr.read()
        proc.stderr.close()
    assert "Traceback" not in stderr, stderr
    assert "cluster stopped" in stderr  # the worker process stopped the cluster on its way out


def test_a_bad_app_stops_serve_at_start_with_one_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "cyclic_shop.py").write_text(
        "from scheduler import App\n"
        "app = App('cyclic')\n"
        "app.add_step('a', lambda ctx: None)\n"
        "app.add_step('b', lambda ctx: None)\n"
        "app.workflow('w', {'a': ['b'], 'b': ['a']})\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        status = main(["serve", "--app", "cyclic_shop:app", "--no-persist", "--port", "0"])
    finally:
        sys.modules.pop("cyclic_shop", None)
    err = capsys.readouterr().err.strip()
    assert status == 2 and "cycle" in err and "Traceback" not in err
    assert len(err.splitlines()) == 1


def test_a_taken_port_is_one_line_naming_the_port_flag_and_leaves_the_journal_unopened(
        tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("ORDERFLOW_TOKEN", raising=False)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        status = main(["serve", "--port", str(port), "--db", str(tmp_path / "shop.db"),
                       "--log-file", str(tmp_path / "shop.log")])
    err = capsys.readouterr().err.strip()
    assert status == 2
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert f"127.0.0.1:{port} is already in use" in err and "--port" in err
    assert not (tmp_path / "shop.db").exists()  # nothing opened, nothing locked

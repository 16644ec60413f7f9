"""The 30-second chaos run with a fixed seed: faults under load, then the journal is checked.

The 10-minute version is `orderflow chaos --duration 600` (README: "Chaos")."""

from __future__ import annotations

import io

import pytest

from scheduler.chaos.driver import ChaosSettings, run_chaos

pytestmark = pytest.mark.slow  # 30 s of faults, with server and worker processes


def test_thirty_seconds_of_chaos_lose_nothing_and_do_nothing_twice(tmp_path):
    out = io.StringIO()
    report = run_chaos(ChaosSettings(duration=30, seed=7, db=str(tmp_path / "chaos.db")), out)
    assert report["ok"], report.get("examples")
    assert report["settled"]
    assert report["submitted"] >= 300
    assert report["lost"] == report["stuck"] == report["succeeded_twice"] == 0
    assert report["completed"] + report["failed"] + report["cancelled"] == report["submitted"]
    faults = report["faults"]
    assert faults.get("server_sigkill_and_restart") == 1
    assert faults.get("kill_thread_worker", 0) + faults.get("kill_process_worker", 0) >= 3
    assert report["worker_deaths"] >= 3
    assert report["process_workers"], "the server should support process workers"
    assert "fault:" in out.getvalue()

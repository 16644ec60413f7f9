"""The rooms hold to their rules at run time too: what a process loads, what the engine uses."""

from __future__ import annotations

import subprocess
import sys

import grimp
import pytest

WEB_STACK = {"flask", "flask_socketio", "werkzeug", "gunicorn", "prometheus_client"}


def test_the_pure_engine_imports_only_the_standard_library():
    graph = grimp.build_graph("scheduler", include_external_packages=True)
    engine = {m for m in graph.modules if m.split(".")[:2] == ["scheduler", "engine"]}
    outside = set()
    for module in engine:
        for imported in graph.find_modules_directly_imported_by(module):
            if imported.startswith("scheduler."):
                assert imported in engine, f"{module} imports {imported}, outside the engine"
            else:
                outside.add(imported.split(".")[0])
    assert outside, "the engine imports nothing at all? the graph is not what we think"
    assert outside <= set(sys.stdlib_module_names), outside - set(sys.stdlib_module_names)


@pytest.mark.slow
def test_starting_orderflow_worker_loads_no_flask_gunicorn_or_prometheus():
    # The real command path (entry point lookup, argument parsing, the client built), with
    # only the connection loop replaced by a report of what the process has loaded.
    code = (
        "import sys\n"
        "import scheduler.remote.client as client\n"
        "client.WorkerProcess.run = lambda self: print(' '.join(sorted(sys.modules))) or 0\n"
        "from scheduler.cli import main\n"
        "sys.exit(main(['worker', '--server', 'http://127.0.0.1:9']))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    loaded = {name.split(".")[0] for name in done.stdout.split()}
    assert "socketio" in loaded and "scheduler" in loaded  # it did load the client
    assert not loaded & (WEB_STACK | {"dashboard"}), loaded & (WEB_STACK | {"dashboard"})


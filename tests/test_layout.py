"""The rooms hold to their rules at run time too: what a process loads, what the engine uses."""

from __future__ import annotations

import ast
import importlib.util
import logging
import subprocess
import sys
import tomllib
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parent.parent
WEB_STACK = {"flask", "flask_socketio", "werkzeug", "gunicorn", "prometheus_client"}
# What the pure engine must never load, directly or through the package it lives in: threads,
# event loops, clocks, processes, sockets, files, logging (which starts threads' locks).
IMPURE = {"threading", "asyncio", "concurrent", "queue", "time", "socket", "select",
          "selectors", "subprocess", "multiprocessing", "signal", "os", "io", "sqlite3",
          "logging"}


def engine_contract() -> dict:
    """The engine's allowlist contract, as pyproject.toml declares it."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    [contract] = [c for c in config["contracts"] if c.get("source_modules") == ["scheduler.engine"]]
    assert contract["type"] == "allowed_imports", contract
    return contract


def allowlist_contract_type() -> type:
    """tools/import_contracts.py's contract class (tools/ is not an installed package)."""
    spec = importlib.util.spec_from_file_location(
        "import_contracts", ROOT / "tools" / "import_contracts.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.AllowedImportsContract


def checked(graph: grimp.ImportGraph, contract: dict):
    options = {"source_modules": contract["source_modules"],
               "allowed_modules": contract["allowed_modules"]}
    return allowlist_contract_type()("engine", {}, options).check(graph, verbose=False)


def test_the_engines_allowlist_holds_only_pure_standard_library_modules():
    allowed = set(engine_contract()["allowed_modules"])
    assert allowed <= set(sys.stdlib_module_names), allowed - set(sys.stdlib_module_names)
    assert not allowed & IMPURE, allowed & IMPURE


def test_the_engine_keeps_its_allowlist_and_an_import_outside_it_breaks_the_contract():
    contract = engine_contract()
    graph = grimp.build_graph("scheduler", include_external_packages=True)
    assert checked(graph, contract).kept
    for outside in ("threading", "scheduler.runtime.cluster", "requests"):
        graph.add_import(importer="scheduler.engine.dispatch", imported=outside,
                         line_number=1, line_contents=f"import {outside}")
        check = checked(graph, contract)
        graph.remove_import(importer="scheduler.engine.dispatch", imported=outside)
        assert not check.kept, outside
        assert [(link["importer"], link["imported"]) for link in check.metadata["illegal"]] == [
            ("scheduler.engine.dispatch", outside)]


@pytest.mark.slow
def test_importing_the_engine_loads_no_thread_asyncio_runtime_or_demo_module():
    # A fresh interpreter (this one has loaded everything already); what the import added to
    # what the interpreter loads at its start (os, io and time are loaded before any code).
    code = ("import sys; before = set(sys.modules); import scheduler.engine.core; "
            "print(sorted(set(sys.modules) - before))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    loaded = set(ast.literal_eval(done.stdout.strip()))
    assert "scheduler.engine.core" in loaded  # it did import the engine
    ours = {name for name in loaded if name.split(".")[0] == "scheduler"}
    assert ours - {"scheduler"} == {name for name in ours if name.startswith("scheduler.engine")}
    assert not {name.split(".")[0] for name in loaded} & IMPURE, sorted(
        name for name in loaded if name.split(".")[0] in IMPURE)


def test_the_orderflow_logger_is_quiet_once_a_package_that_logs_is_loaded():
    import scheduler.runtime  # noqa: F401  (pytest has loaded it already; said for the reader)

    handlers = logging.getLogger("orderflow").handlers
    assert [type(h) for h in handlers].count(logging.NullHandler) == 1, handlers


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



# Code that reads the core's own state from outside the engine. Everything outside
# scheduler/engine/ goes through the core's public methods and engine/views.py; the tests of
# `validate` alone corrupt its state on purpose (tests/ is not scanned).
OUTSIDE_THE_ENGINE = ("scheduler", "dashboard", "benchmarks", "tools", "examples")


def private_core_reads(source: str) -> list[tuple[int, str]]:
    """(line, attribute) of every underscored attribute taken of something named like a
    core (`core._orders`, `self._core._workers`): an object whose own name has "core" in it."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Attribute) or not node.attr.startswith("_"):
            continue
        if node.attr.startswith("__") and node.attr.endswith("__"):
            continue
        owner = node.value
        name = (owner.id if isinstance(owner, ast.Name)
                else owner.attr if isinstance(owner, ast.Attribute) else "")
        if "core" in name.lower():
            found.append((node.lineno, node.attr))
    return sorted(found)


def test_the_private_core_read_check_sees_a_read_through_any_name_and_lets_public_doors_pass():
    source = ("core._orders\nself._core._workers.get(w)\ncluster._core._seq\n"
              "self._core.submit(o)\nself._core_lock\nviews.orders(self._core)\n"
              "core.__class__\n")
    assert private_core_reads(source) == [(1, "_orders"), (2, "_workers"), (3, "_seq")]


def test_nothing_outside_the_engine_reads_the_cores_private_state():
    engine = ROOT / "scheduler" / "engine"
    files = [path for room in OUTSIDE_THE_ENGINE for path in (ROOT / room).rglob("*.py")
             if engine not in path.parents]
    assert len(files) > 50  # the scan did find the code
    reads = {str(path.relative_to(ROOT)): found for path in files
             if (found := private_core_reads(path.read_text()))}
    assert reads == {}

"""The `orderflow` command itself (scheduler/cli.py): its version, and loading only what a
command needs."""

from __future__ import annotations

import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest

from scheduler import cli

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


class Unloadable:
    """An entry point whose module must not be loaded."""

    def load(self):
        raise AssertionError("--version loaded a command module")


def test_version_prints_the_installed_version_and_loads_no_command(monkeypatch, capsys):
    monkeypatch.setattr(cli, "_commands", lambda: {"serve": Unloadable()})
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0
    declared = tomllib.loads(PYPROJECT.read_text())["project"]["version"]
    assert version("orderflow") == declared  # the metadata it reads is this checkout's
    assert capsys.readouterr().out == f"orderflow {declared}\n"


def test_a_version_outside_an_installation_says_so(monkeypatch):
    def absent(name):
        raise cli.PackageNotFoundError(name)

    monkeypatch.setattr(cli, "version", absent)
    assert cli.installed_version() == "unknown (not installed)"

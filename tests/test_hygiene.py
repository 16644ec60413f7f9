"""The guard that keeps tests out of the user's own files (conftest.leaves_the_users_logs_alone):
what it compares, shown on a folder of the test's own."""

from __future__ import annotations

import os

from conftest import REPO_LOGS, files_under


def test_the_guard_sees_a_file_made_changed_or_removed(tmp_path):
    assert files_under(tmp_path / "missing") == {}
    before = files_under(tmp_path)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "orderflow.log").write_text("one line\n")
    made = files_under(tmp_path)
    assert set(made) - set(before) == {os.path.join("sub", "orderflow.log")}
    with open(tmp_path / "sub" / "orderflow.log", "a") as log:
        log.write("another line\n")
    assert files_under(tmp_path) != made
    (tmp_path / "sub" / "orderflow.log").unlink()
    assert files_under(tmp_path) == before


def test_the_guarded_folder_is_the_repositorys_logs():
    assert REPO_LOGS.name == "logs" and (REPO_LOGS.parent / "pyproject.toml").is_file()

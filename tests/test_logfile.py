"""The readable log file's handler (scheduler/runtime/logfile.py): it rotates where the
standard handler would, counting what it writes instead of asking the file system at every
line, and keeps every line whole."""

from __future__ import annotations

import logging

import pytest

from scheduler.runtime.logfile import SizedRotatingFileHandler


@pytest.fixture
def logger():
    made: list[tuple[logging.Logger, logging.Handler]] = []

    def make(path, **options) -> logging.Logger:
        handler = SizedRotatingFileHandler(path, encoding="utf-8", **options)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log = logging.getLogger(f"orderflow-test-{len(made)}-{path}")
        log.propagate = False
        log.setLevel(logging.INFO)
        log.addHandler(handler)
        made.append((log, handler))
        return log

    yield make
    for log, handler in made:
        log.removeHandler(handler)
        handler.close()


def test_it_rotates_before_a_line_that_would_reach_the_size_and_keeps_lines_whole(
        tmp_path, logger):
    path = tmp_path / "orderflow.log"
    log = logger(path, maxBytes=40, backupCount=2)
    lines = [f"order o-{n} completed" for n in range(6)]  # 19 characters and a newline
    for line in lines:
        log.info(line)
    # Two lines make 40 characters, the size: the second would reach it, so it starts a file.
    assert path.read_text() == lines[5] + "\n"
    assert (tmp_path / "orderflow.log.1").read_text() == lines[4] + "\n"
    assert (tmp_path / "orderflow.log.2").read_text() == lines[3] + "\n"
    assert not (tmp_path / "orderflow.log.3").exists()  # backupCount: the oldest go


def test_it_counts_from_the_end_of_a_file_it_appends_to(tmp_path, logger):
    path = tmp_path / "orderflow.log"
    path.write_text("x" * 30 + "\n")  # 31 characters left by an earlier server
    log = logger(path, maxBytes=40, backupCount=1)
    log.info("short")  # 31 + 6 = 37: still fits
    assert path.read_text() == "x" * 30 + "\nshort\n"
    log.info("longer")  # 37 + 7 = 44: over, so the file rotates first
    assert path.read_text() == "longer\n"
    assert (tmp_path / "orderflow.log.1").read_text() == "x" * 30 + "\nshort\n"


def test_a_line_longer_than_the_size_goes_into_an_empty_file_and_rotates_after(
        tmp_path, logger):
    path = tmp_path / "orderflow.log"
    log = logger(path, maxBytes=10, backupCount=1)
    log.info("a line of more than ten characters")
    assert path.read_text() == "a line of more than ten characters\n"
    assert not (tmp_path / "orderflow.log.1").exists()  # an empty file is never rotated
    log.info("next")
    assert path.read_text() == "next\n"
    assert (tmp_path / "orderflow.log.1").read_text() == "a line of more than ten characters\n"


@pytest.mark.parametrize("options", [{"maxBytes": 0, "backupCount": 3},
                                     {"maxBytes": 10, "backupCount": 0}])
def test_a_size_or_a_backup_count_of_zero_never_rotates(tmp_path, logger, options):
    path = tmp_path / "orderflow.log"
    log = logger(path, **options)
    for n in range(5):
        log.info(f"line {n} of the log")
    assert path.read_text().splitlines() == [f"line {n} of the log" for n in range(5)]
    assert list(tmp_path.iterdir()) == [path]


def test_a_delayed_file_is_opened_at_the_first_line_and_again_after_a_rotation(
        tmp_path, logger):
    path = tmp_path / "orderflow.log"
    log = logger(path, maxBytes=12, backupCount=1, delay=True)
    assert not path.exists()
    log.info("first line")  # 11 characters
    log.info("second")  # 11 + 7 = 18: rotates, and the new file is opened to write it
    assert path.read_text() == "second\n"
    assert (tmp_path / "orderflow.log.1").read_text() == "first line\n"


def test_sizes_are_counted_in_bytes_so_a_file_never_passes_its_size(tmp_path, logger):
    path = tmp_path / "orderflow.log"
    log = logger(path, maxBytes=100, backupCount=3)
    for n in range(12):
        log.info(f"注文 o-{n} 完了")  # 10 characters with the newline, 18 bytes (19 for o-10)
    # Five lines (90 bytes) to a file: counted in characters, nine would go (162 bytes).
    sizes = [p.stat().st_size for p in sorted(tmp_path.iterdir())]
    assert sizes == [38, 90, 90]
    assert path.read_text(encoding="utf-8").splitlines() == [f"注文 o-{n} 完了" for n in (10, 11)]


def test_a_file_truncated_by_another_tool_is_not_rotated_early(tmp_path, logger):
    path = tmp_path / "orderflow.log"
    log = logger(path, maxBytes=60, backupCount=2)
    log.info("x" * 39)  # 40 bytes
    path.write_text("")  # logrotate's copytruncate: the same file, emptied
    log.info("y" * 29)  # 40 + 30 would reach 60 by the count; the file holds none of it
    assert path.read_text() == "y" * 29 + "\n"
    assert not (tmp_path / "orderflow.log.1").exists()


def test_a_pipe_is_written_to_and_never_rotated(tmp_path, logger):
    import os
    import threading

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[str] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text()), daemon=True)
    reader.start()
    log = logger(fifo, maxBytes=10, backupCount=2)  # opens once the reader has
    try:
        for n in range(5):
            log.info(f"line {n} through the pipe")
    finally:
        log.handlers[0].close()  # the reader's end of the text
        reader.join(10)
    assert received == ["".join(f"line {n} through the pipe\n" for n in range(5))]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]

"""A failed attempt's traceback, as its worker makes it and the server's door lets it pass:
where the handler raised it (not the runner that called it), bounded keeping its end,
escaped like every text the server records, and one line's worth of it for the log."""

from __future__ import annotations

import asyncio
import copy
import pickle

from scheduler.steps.context import TaskContext, TaskError
from scheduler.steps.failure import (
    Failure,
    bound_traceback,
    failure_of,
    raised_at,
    traceback_of,
)
from scheduler.steps.run import check_outcome, run_handler, run_handler_async


def ctx(step: str = "invoice") -> TaskContext:
    return TaskContext(order_id="o-1", order={}, step=step, attempt=1, worker_id="w-1",
                       results={}, idempotency_key=f"o-1:{step}")


def render_pdf(order: dict) -> bytes:
    raise RuntimeError("invoice PDF renderer crashed")


def invoice(ctx: TaskContext) -> dict:
    return {"pdf": render_pdf(ctx.order)}


def test_a_handler_that_raises_fails_with_the_traceback_from_the_handler_down():
    ok, failure = run_handler({"invoice": invoice}, ctx())
    assert ok is False
    assert failure == "RuntimeError: invoice PDF renderer crashed"  # still its message
    trace = traceback_of(failure)
    lines = trace.splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    # The handler's frame comes first: the runner that called it is left out.
    assert "in invoice" in lines[1] and "run_handler" not in trace
    assert 'raise RuntimeError("invoice PDF renderer crashed")' in trace
    assert "in render_pdf" in trace
    assert lines[-1] == "RuntimeError: invoice PDF renderer crashed"


def test_an_async_handler_that_raises_carries_its_traceback_too():
    async def invoice_async(ctx: TaskContext) -> dict:
        await asyncio.sleep(0)
        return {"pdf": render_pdf(ctx.order)}

    ok, failure = asyncio.run(run_handler_async({"invoice": invoice_async}, ctx()))
    assert ok is False and failure == "RuntimeError: invoice PDF renderer crashed"
    trace = traceback_of(failure)
    assert "in invoice_async" in trace and "in render_pdf" in trace
    assert "run_handler_async" not in trace


def test_a_task_error_is_the_handlers_own_words_without_a_traceback():
    def payment(ctx):
        raise TaskError("gateway answered 503")

    ok, failure = run_handler({"payment": payment}, ctx("payment"))
    assert (ok, failure) == (False, "gateway answered 503")
    assert traceback_of(failure) is None


def test_a_task_error_raised_from_an_exception_carries_the_chain():
    def payment(ctx):
        try:
            {}["charge_id"]
        except KeyError as exc:
            raise TaskError("the gateway's answer has no charge id") from exc

    ok, failure = run_handler({"payment": payment}, ctx("payment"))
    assert failure == "the gateway's answer has no charge id"
    trace = traceback_of(failure)
    assert "KeyError: 'charge_id'" in trace
    assert "direct cause of the following exception" in trace
    assert trace.endswith("TaskError: the gateway's answer has no charge id")


def test_a_missing_handler_is_a_plain_message():
    ok, failure = run_handler({}, ctx("payment"))
    assert failure == "no handler registered for step 'payment'"
    assert traceback_of(failure) is None


def test_a_traceback_too_long_keeps_its_end_and_says_how_much_was_cut():
    frames = "".join(f'  File "deep.py", line {n}, in f\n    f()\n' for n in range(1, 1000))
    text = "Traceback (most recent call last):\n" + frames + "RecursionError: x"
    bounded = bound_traceback(text, 500)
    cut = len(text) - 500
    assert bounded.startswith(f"... ({cut} characters cut)\n")
    assert bounded.endswith('line 999, in f\n    f()\nRecursionError: x')
    assert len(bounded) == 500 + len(f"... ({cut} characters cut)\n")
    assert bound_traceback("short", 500) == "short"


def test_failure_of_bounds_what_a_worker_sends():
    try:
        raise ValueError("a body quoted whole: " + "y" * 3_000 + " end")
    except ValueError as exc:
        failure = failure_of(exc, limit=1_000)
    trace = traceback_of(failure)
    assert trace.startswith("... (") and trace.endswith("y end")
    assert len(trace) < 1_100


def test_where_it_was_raised_is_the_innermost_frame_of_the_last_exception():
    ok, failure = run_handler({"invoice": invoice}, ctx())
    where = raised_at(traceback_of(failure))
    line = render_pdf.__code__.co_firstlineno + 1
    assert where == f"test_failure.py:{line} in render_pdf"
    assert raised_at('  File "C:\\shop\\app.py", line 3, in pay\n') == "app.py:3 in pay"
    assert raised_at(None) is None and raised_at("no frames here") is None


def test_the_servers_door_escapes_and_bounds_the_traceback_as_it_does_the_message():
    trace = "Traceback (most recent call last):\n" + "x" * 5_000 + "\nRuntimeError: body "
    trace += "\x00 \ud800"
    ok, failure = check_outcome(False, Failure("RuntimeError: body \x00", trace), 65536, 2000,
                                max_traceback_chars=1_000)
    assert ok is False and failure == "RuntimeError: body \\x00"
    recorded = traceback_of(failure)
    assert recorded.endswith("RuntimeError: body \\x00 \\ud800")
    assert recorded.startswith("... (") and len(recorded) < 1_100
    # A plain message (an older remote worker, a timeout) passes without one.
    ok, failure = check_outcome(False, "timed out after 3 s", 65536, 2000)
    assert failure == "timed out after 3 s" and traceback_of(failure) is None


def test_a_failure_is_still_its_message_when_copied_and_pickled():
    failure = Failure("RuntimeError: x", "Traceback ...")
    for copied in (copy.deepcopy(failure), pickle.loads(pickle.dumps(failure))):
        assert copied == "RuntimeError: x" and copied.traceback == "Traceback ..."


def _raised(make) -> BaseException:
    try:
        make()
    except BaseException as exc:  # noqa: BLE001 - the exception is the test's subject
        return exc
    raise AssertionError("nothing was raised")


def _decode():
    import json

    json.loads("{not json")


def _implicit():
    try:
        {}["charge_id"]
    except KeyError:
        render_pdf({})


def _noted():
    exc = ValueError("bad total")
    exc.add_note("order o-1, line 2")
    raise exc


def test_a_traceback_reads_as_pythons_own_without_its_caret_lines():
    """Formatted by hand (Python's own parses every line to place its ^^^ marks: 300-400 µs
    a failure), it must read as Python's does, marks aside: chains, modules, notes."""
    import re
    import traceback

    carets = re.compile(r"^\s*[~^]+\s*$")
    for make in (lambda: invoice(ctx()), _decode, _implicit, _noted):
        exc = _raised(make)
        python = [line for line in "".join(traceback.format_exception(exc)).splitlines()
                  if not carets.match(line)]
        assert traceback_of(failure_of(exc)).splitlines() == python


def test_a_result_that_is_not_json_fails_alike_whether_its_worker_checked_it_or_not():
    # A thread worker runs its handler unchecked; the server's door then fails the result
    # with the very outcome a worker that checked it first reports.
    checked = run_handler({"invoice": lambda c: {1, 2}}, ctx())
    unchecked = run_handler({"invoice": lambda c: {1, 2}}, ctx(), check=False)
    assert checked[0] is False and unchecked == (True, {1, 2})
    for outcome in (checked, unchecked):
        ok, error = check_outcome(*outcome, 65536, 2000)
        assert ok is False and isinstance(error, Failure)
        assert error == "the result is not JSON: Object of type set is not JSON serializable"
    ok, error = check_outcome(True, float("nan"), 65536, 20)
    assert (ok, error) == (False, "the result is not va... (26 more characters cut)")

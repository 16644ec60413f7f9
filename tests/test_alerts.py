"""The alert book: each alert raised once when its condition starts to hold and cleared once
when it stops, with a fake clock (wall seconds passed in)."""

from __future__ import annotations

import re

import pytest

from scheduler.engine.config import ConfigError
from scheduler.runtime.alerts import (
    FAILURE_SPIKE,
    JOURNAL_FAILING,
    OVERDUE_ORDERS,
    UNROUTABLE,
    WORKER_FLAPPING,
    AlertBook,
    AlertSettings,
    Signals,
)

T0 = 1_800_000_000.0
QUIET = Signals()


def attempts(step: str, at: float, ok: int = 0, failed: int = 0,
             error: str = "gateway timeout after 30 s") -> list[dict]:
    return ([{"type": "task_succeeded", "step": step, "ts": at}] * ok
            + [{"type": "task_failed", "step": step, "ts": at, "error": error}] * failed)


def names(changes) -> list[tuple[str, str, bool]]:
    return [(c.alert.name, c.alert.subject, c.raised) for c in changes]


def test_a_failure_spike_needs_both_the_share_and_the_number_of_attempts():
    book = AlertBook(AlertSettings(failure_share=0.5, failure_min_attempts=20))
    book.observe(attempts("payment", T0, failed=19))
    assert book.evaluate(QUIET, T0 + 1) == []  # 100 % of 19: too few to tell
    book.observe(attempts("payment", T0 + 1, ok=21, failed=0))
    assert book.evaluate(QUIET, T0 + 2) == []  # 19 of 40: under half
    book.observe(attempts("payment", T0 + 2, failed=2))
    changes = book.evaluate(QUIET, T0 + 3)  # 21 of 42: half
    assert names(changes) == [(FAILURE_SPIKE, "payment", True)]
    message = changes[0].alert.message
    assert message.startswith("payment: 21 of 42 attempts failed in the last 1 min")
    # Grouped by the reason with what varies masked (the triage's grouping), quoted whole.
    assert message.endswith("21 like: gateway timeout after 30 s")
    assert book.evaluate(QUIET, T0 + 4) == []  # raised once, not again
    assert [a["alert"] for a in book.active()] == [FAILURE_SPIKE]


def test_a_spike_is_per_step_and_other_steps_successes_do_not_dilute_it():
    book = AlertBook(AlertSettings(failure_min_attempts=10))
    book.observe(attempts("payment", T0, failed=10) + attempts("packing", T0, ok=500))
    assert names(book.evaluate(QUIET, T0 + 1)) == [(FAILURE_SPIKE, "payment", True)]


def test_a_spike_clears_under_half_its_share_not_at_it():
    book = AlertBook(AlertSettings(failure_share=0.5, failure_min_attempts=10,
                                   failure_window=60))
    book.observe(attempts("payment", T0, failed=10))
    assert names(book.evaluate(QUIET, T0 + 1)) == [(FAILURE_SPIKE, "payment", True)]
    book.observe(attempts("payment", T0 + 2, ok=20))  # 10 of 30: a third, over a quarter
    assert book.evaluate(QUIET, T0 + 3) == []
    book.observe(attempts("payment", T0 + 4, ok=11))  # 10 of 41: under a quarter
    assert names(book.evaluate(QUIET, T0 + 5)) == [(FAILURE_SPIKE, "payment", False)]
    assert book.active() == []


def test_failures_older_than_the_window_no_longer_count():
    book = AlertBook(AlertSettings(failure_min_attempts=10, failure_window=60))
    book.observe(attempts("payment", T0, failed=10))
    assert names(book.evaluate(QUIET, T0 + 1)) == [(FAILURE_SPIKE, "payment", True)]
    assert book.evaluate(QUIET, T0 + 59) == []
    # Every attempt left the window: nothing to judge by, the alert clears.
    assert names(book.evaluate(QUIET, T0 + 61)) == [(FAILURE_SPIKE, "payment", False)]
    book.observe(attempts("payment", T0 + 62, failed=9))
    assert book.evaluate(QUIET, T0 + 63) == []  # the old ten are not counted with these


def test_a_step_no_worker_can_run_is_raised_only_after_its_delay_and_cleared_at_once():
    book = AlertBook(AlertSettings(unroutable_after=30))
    stuck = Signals(unroutable={"payment": 4, "packing": 0})
    assert book.evaluate(stuck, T0) == []
    assert book.evaluate(stuck, T0 + 29) == []
    changes = book.evaluate(stuck, T0 + 30)
    assert names(changes) == [(UNROUTABLE, "payment", True)]
    assert changes[0].alert.message == "payment: 4 tasks ready and no live worker can run them"
    assert names(book.evaluate(QUIET, T0 + 31)) == [(UNROUTABLE, "payment", False)]


def test_a_step_that_finds_a_worker_in_time_starts_its_delay_again_next_time():
    book = AlertBook(AlertSettings(unroutable_after=30))
    stuck = Signals(unroutable={"payment": 1})
    book.evaluate(stuck, T0)
    book.evaluate(QUIET, T0 + 20)  # a worker came
    assert book.evaluate(stuck, T0 + 40) == []  # stuck again: 0 s, not 40
    assert book.evaluate(stuck, T0 + 69) == []
    assert names(book.evaluate(stuck, T0 + 70)) == [(UNROUTABLE, "payment", True)]


def test_overdue_orders_are_raised_with_their_count_and_age_and_the_message_follows():
    book = AlertBook(AlertSettings(overdue_after=900))
    changes = book.evaluate(Signals(overdue=3, oldest_age=1200), T0)
    assert names(changes) == [(OVERDUE_ORDERS, "", True)]
    assert changes[0].alert.message == "3 orders unfinished after 15 min (the oldest for 20 min)"
    assert book.evaluate(Signals(overdue=5, oldest_age=1260), T0 + 1) == []
    assert book.active()[0]["message"].startswith("5 orders unfinished")
    assert book.active()[0]["since"] == T0  # raised then, whatever the numbers now
    assert names(book.evaluate(QUIET, T0 + 2)) == [(OVERDUE_ORDERS, "", False)]


def test_a_worker_process_dying_again_and_again_is_flapping_by_its_name_not_its_ids():
    book = AlertBook(AlertSettings(flap_deaths=3, flap_window=600))
    # A remote worker joins under a new id each time; its process name stays.
    for n, at in enumerate((T0, T0 + 100, T0 + 200)):
        book.observe([{"type": "worker_added", "worker_id": f"p-1-{n}", "name": "pay-1",
                       "ts": at},
                      {"type": "worker_dead", "worker_id": f"p-1-{n}", "ts": at + 5}])
        book.observe([{"type": "worker_added", "worker_id": f"w-{n}", "ts": at},
                      {"type": "worker_dead", "worker_id": f"w-{n}", "ts": at + 5}])
    changes = book.evaluate(QUIET, T0 + 300)
    assert names(changes) == [(WORKER_FLAPPING, "pay-1", True)]
    assert changes[0].alert.message == "worker pay-1 died 3 times in the last 10 min"
    # The first death leaves the window: two in ten minutes is not flapping.
    assert names(book.evaluate(QUIET, T0 + 606)) == [(WORKER_FLAPPING, "pay-1", False)]


def test_a_journal_failing_is_raised_after_its_delay_and_holds_until_it_commits():
    book = AlertBook(AlertSettings(journal_after=10))
    assert book.evaluate(Signals(journal_stalled=9.5), T0) == []
    changes = book.evaluate(Signals(journal_stalled=10.0), T0 + 1)
    assert names(changes) == [(JOURNAL_FAILING, "", True)]
    assert "has not committed for 10 s;" in changes[0].alert.message
    assert book.evaluate(Signals(journal_stalled=0.2), T0 + 2) == []  # a new failure run
    assert names(book.evaluate(QUIET, T0 + 3)) == [(JOURNAL_FAILING, "", False)]


def test_the_alerts_are_listed_oldest_first():
    book = AlertBook(AlertSettings(unroutable_after=0))
    book.evaluate(Signals(overdue=1, oldest_age=1000), T0)
    book.evaluate(Signals(overdue=1, oldest_age=1001, unroutable={"ship": 1}), T0 + 1)
    assert [(a["alert"], a["subject"]) for a in book.active()] == [
        (OVERDUE_ORDERS, ""), (UNROUTABLE, "ship")]


@pytest.mark.parametrize("settings", [
    {"failure_share": 0}, {"failure_share": 1.5}, {"failure_min_attempts": 0},
    {"flap_deaths": True}, {"failure_window": 0}, {"every": -1}, {"overdue_after": -1},
])
def test_bad_alert_settings_are_refused(settings):
    with pytest.raises(ConfigError):
        AlertSettings(**settings)


# ---------------------------------------------------------------- in a cluster

def failing(ctx):
    raise RuntimeError(f"gateway answered 502 for {ctx.order_id}")


def noop(ctx):
    return None


def test_a_failing_step_raises_one_alert_an_incident_and_a_log_line_and_clears_it(caplog):
    from conftest import wait_for
    from web import ORDER

    from scheduler import Cluster, RetryPolicy

    handlers = {"payment": failing, "packing": noop, "shipping": noop}
    settings = AlertSettings(failure_min_attempts=5, failure_window=60, every=0.02)
    cluster = Cluster(workers=2, handlers=handlers, alerts=settings,
                      retry=RetryPolicy(max_retries=0), heartbeat_interval=0.05,
                      heartbeat_timeout=5.0).start()
    try:
        cluster.submit_many([ORDER] * 6)
        [alert] = wait_for(cluster.alerts, 10, message="the failure spike alert")
        assert (alert["alert"], alert["subject"]) == (FAILURE_SPIKE, "payment")
        # Raised at the fifth failure or after it (the monitor's pace), all of one reason.
        assert re.fullmatch(r"payment: ([56]) of \1 attempts failed in the last 1 min; \1 like: "
                            r"RuntimeError: gateway answered 502 for o-\w+", alert["message"])
        raised = [e for e in cluster.events() if e["type"] == "alert_raised"]
        assert [(e["alert"], e["subject"]) for e in raised] == [(FAILURE_SPIKE, "payment")]
        assert alert["id"] == raised[0]["seq"]
        assert cluster.stats()["alerts"] == cluster.alerts()
        [incident] = [i for i in cluster.incidents() if i["kind"] == "alert"]
        assert incident["id"] == raised[0]["seq"] and incident["pinned"]
        assert any(r.levelname == "WARNING" and r.getMessage() == raised[0]["message"]
                   for r in caplog.records)
        # Successes dilute the failures under a quarter: the alert clears, once, and its
        # incident says so.
        cluster.handlers["payment"] = noop
        cluster.submit_many([ORDER] * 19)
        wait_for(lambda: not cluster.alerts(), 10, message="the alert cleared")
        cleared = [e for e in cluster.events() if e["type"] == "alert_cleared"]
        assert len(cleared) == 1 and cleared[0]["cause"] == raised[0]["seq"]
        [incident] = [i for i in cluster.incidents() if i["kind"] == "alert"]
        assert incident["title"].endswith("(cleared)")
    finally:
        cluster.stop()


def test_a_step_no_worker_can_run_is_an_alert_until_a_worker_that_can_joins():
    from conftest import wait_for
    from web import ORDER

    from scheduler import Cluster

    cluster = Cluster(workers=0, handlers={"payment": noop, "packing": noop, "shipping": noop},
                      alerts=AlertSettings(unroutable_after=0, every=0.02),
                      heartbeat_interval=0.05, heartbeat_timeout=5.0).start()
    try:
        cluster.submit(ORDER)
        [alert] = wait_for(cluster.alerts, 10, message="the unroutable alert")
        assert (alert["alert"], alert["subject"]) == (UNROUTABLE, "payment")
        cluster.add_worker()
        wait_for(lambda: not cluster.alerts(), 10, message="the alert cleared")
        assert cluster.wait_until_idle(10)
    finally:
        cluster.stop()


def test_orders_unfinished_past_the_threshold_are_overdue():
    from conftest import wait_for
    from web import ORDER

    from scheduler import Cluster

    clock = FakeClock()
    cluster = Cluster(workers=0, handlers={"payment": noop, "packing": noop, "shipping": noop},
                      alerts=AlertSettings(overdue_after=600, unroutable_after=10_000,
                                           every=0.01),
                      clock=clock, heartbeat_interval=0.05, heartbeat_timeout=5.0).start()
    try:
        cluster.submit_many([ORDER] * 3)
        clock.now += 300
        cluster.submit(ORDER)
        clock.now += 301  # the first three are 601 s old, the last 301 s
        [alert] = wait_for(cluster.alerts, 10, message="the overdue alert")
        assert alert["alert"] == OVERDUE_ORDERS
        assert alert["message"] == "3 orders unfinished after 10 min (the oldest for 601 s)"
    finally:
        cluster.stop()


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_spike_quotes_an_error_of_its_most_common_reason():
    book = AlertBook(AlertSettings(failure_min_attempts=5))
    book.observe(attempts("payment", T0, failed=2, error="card declined")
                 + attempts("payment", T0, failed=3, error="gateway 502 for o-1")
                 + attempts("payment", T0, failed=1, error="gateway 502 for o-77"))
    [change] = book.evaluate(QUIET, T0 + 1)
    assert change.alert.message.endswith("; 4 like: gateway 502 for o-77")

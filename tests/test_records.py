"""Records: the plain values every reader outside the engine sees (the API's views, the
journal's rows, recovery), and the core's conversion of its live objects into them."""

from __future__ import annotations

import pytest
from sim import ORDER, Sim

from scheduler.engine import views
from scheduler.engine.records import (
    FINISHED_STATUSES,
    OrderQuery,
    OrderRecord,
    TaskRecord,
    new_task_record,
    skus_of,
)

OFFSET = 1_700_000_000.0


def task_record(**fields) -> TaskRecord:
    values = dict(
        order_id="o1", step="payment", state="running", attempt=2, attempt_open=True,
        reassignments=1, runs=3, worker="w1", result={"charged": 19.0}, error="boom",
        retry_at=None, moves=2,
    )
    values.update(fields)
    return TaskRecord(**values)


def order_record(**fields) -> OrderRecord:
    values = dict(
        id="o1", number=7, workflow="ecommerce", data={"customer": "ada", "items": []},
        idempotency_key="K", submitted_at=100.123456, finished_at=None, status="in_progress",
        priority=3, tasks=(task_record(), task_record(step="packing", state="pending",
                                                     attempt=0, attempt_open=False,
                                                     reassignments=0, runs=0, worker=None,
                                                     result=None, error=None)),
    )
    values.update(fields)
    return OrderRecord(**values)


# --------------------------------------------------------------------------- tasks


def test_a_task_view_shows_every_field_the_api_documents_and_its_result():
    record = task_record(retry_at=123.5)
    assert record.view() == {
        "status": "running",
        "attempts": 2,
        "runs": 3,
        "reassignments": 1,
        "moves": 2,
        "worker": "w1",
        "error": "boom",
        "retry_at": 123.5,
        "waiting_for": None,
        "compensates": None,
        "result": {"charged": 19.0},
    }


def test_a_task_view_leaves_the_result_out_when_asked_and_says_what_a_ready_step_waits_for():
    view = task_record(state="ready").view(with_result=False, waiting_for="no live worker")
    assert "result" not in view
    assert view["waiting_for"] == "no live worker"
    assert view["status"] == "ready"


def test_a_task_is_named_by_its_order_and_step():
    assert task_record(order_id="o-9", step="shipping").id == "o-9:shipping"


def test_a_step_whose_row_was_never_written_is_as_it_was_at_submission():
    record = new_task_record("o1", "packing")
    assert record == TaskRecord(
        order_id="o1", step="packing", state="pending", attempt=0, attempt_open=False,
        reassignments=0, runs=0, worker=None, result=None, error=None, retry_at=None,
    )
    assert record.id == "o1:packing"
    assert isinstance(record.attempt_open, bool)


# --------------------------------------------------------------------------- orders


def test_an_order_view_has_the_exact_shape_with_times_rounded_to_milliseconds():
    record = order_record()
    assert record.view() == {
        "id": "o1",
        "number": 7,
        "status": "in_progress",
        "workflow": "ecommerce",
        "priority": 3,
        "customer": "ada",
        "data": {"customer": "ada", "items": []},
        "tasks": {
            "payment": task_record().view(),
            "packing": record.tasks[1].view(),
        },
        "submitted_at": 100.123,
        "finished_at": None,
        "terminal": False,
        "waits": [],
    }
    assert list(record.view()["tasks"]) == ["payment", "packing"]  # the workflow's order


def test_a_finished_order_view_says_when_it_finished_to_the_millisecond():
    view = order_record(status="completed", finished_at=200.98765).view()
    assert view["finished_at"] == 200.988
    assert view["terminal"] is True
    assert order_record(finished_at=0.0004, status="failed").view()["finished_at"] == 0.0


def test_an_order_view_without_results_leaves_them_out_of_every_task():
    view = order_record().view(with_results=False)
    assert all("result" not in task for task in view["tasks"].values())
    assert view["tasks"]["payment"]["worker"] == "w1"


def test_an_order_view_says_why_each_waiting_step_waits_and_nothing_for_the_others():
    view = order_record().view(waiting={"packing": "waiting for a free slot"})
    assert view["tasks"]["packing"]["waiting_for"] == "waiting for a free slot"
    assert view["tasks"]["payment"]["waiting_for"] is None


def test_an_order_without_a_customer_shows_none():
    assert order_record(data={"items": []}).view()["customer"] is None


@pytest.mark.parametrize("status", sorted(FINISHED_STATUSES))
def test_completed_failed_and_cancelled_orders_are_finished(status):
    assert order_record(status=status).finished


@pytest.mark.parametrize("status", ["pending", "in_progress", "compensating"])
def test_pending_and_running_orders_are_not_finished(status):
    assert not order_record(status=status).finished


# --------------------------------------------------------------------------- from the core


def test_the_core_records_a_task_with_its_counts_worker_and_result():
    sim = Sim(workers=1)
    sim.submit("o1")
    d, _ = sim.start_next("w1")
    sim.succeed(d, {"charged": 19.0})
    record = sim.core.task_record(sim.task("o1", "payment"))
    succeeded = sim.types(type="task_succeeded")[0]["seq"]
    assert record == TaskRecord("o1", "payment", "succeeded", 1, True, 0, 1, "w1",
                                {"charged": 19.0}, None, None, 0, succeeded)


def test_a_reassigned_task_records_how_often_its_worker_died_under_it():
    sim = Sim(workers=2)
    sim.submit("o1")
    holder = sim.task("o1", "payment").worker
    sim.start_next(holder)
    other = next(w for w in sim.queues if w != holder)
    sim.advance(3.0, beating=(other,))
    record = sim.core.task_record(sim.task("o1", "payment"))
    assert (record.reassignments, record.worker, record.state) == (1, other, "assigned")


def test_the_core_records_an_order_in_wall_time_with_its_tasks_and_no_events_unless_asked():
    sim = Sim(workers=1)
    sim.core.epoch_offset = OFFSET
    sim.now = 2.5
    sim.apply(sim.core.submit("o1", dict(ORDER), now=sim.now, idempotency_key="K", priority=4))
    order = views.orders(sim.core)["o1"]
    record = sim.core.order_record(order)
    assert (record.id, record.number, record.workflow, record.data) == (
        "o1", 1, "ecommerce", ORDER)
    assert (record.idempotency_key, record.priority, record.status) == ("K", 4, "in_progress")
    assert record.submitted_at == OFFSET + 2.5 and record.finished_at is None
    assert [t.step for t in record.tasks] == ["payment", "packing", "shipping"]
    assert record.events == ()
    assert [e["type"] for e in sim.core.order_record(order, with_events=True).events][:1] == [
        "order_submitted"]
    assert sim.core.order_record(order, with_tasks=False).tasks == ()


def test_a_finished_order_is_recorded_with_when_it_finished_in_wall_time():
    sim = Sim(workers=1)
    sim.core.epoch_offset = OFFSET
    sim.submit("o1")
    sim.now = 4.0
    sim.run_all()
    record = sim.core.order_record(views.orders(sim.core)["o1"])
    assert record.status == "completed" and record.finished
    assert record.finished_at == OFFSET + 4.0
    assert record.view()["finished_at"] == round(OFFSET + 4.0, 3)


def test_a_text_query_matches_an_order_only_by_what_it_holds():
    query = OrderQuery(text="xx")
    assert not query.matches("failed", "ecommerce", "ada", 0.0, [None])  # no id given
    assert query.matches("failed", "ecommerce", "ada", 0.0, [None], order_id="o-xx1")


def test_each_field_of_an_order_query_must_hold_as_a_part_of_the_value():
    def matches(query, customer="Ada Lovelace", skus=("SKU-Red-1",),
                errors=(None, "Card declined")):
        return query.matches("failed", "ecommerce", customer, 10.0, list(errors),
                             order_id="o-1", skus=skus)

    assert matches(OrderQuery(customer="lovelace"))
    assert not matches(OrderQuery(customer="grace"))
    assert not matches(OrderQuery(customer="ada"), customer=None)  # not text: no match
    assert matches(OrderQuery(sku="red"))
    assert not matches(OrderQuery(sku="blue"))
    assert not matches(OrderQuery(sku="red"), skus=())
    assert matches(OrderQuery(error="declined"))
    assert not matches(OrderQuery(error="timeout"))
    assert not matches(OrderQuery(error="declined"), errors=(None,))
    assert matches(OrderQuery(text="ada"))
    assert not matches(OrderQuery(text="ada"), customer={"name": "ada"})
    assert not matches(OrderQuery(text="xx"), customer=None)


def test_an_order_query_compares_times_as_shown_to_the_millisecond():
    def at(submitted_at, **bounds):
        return OrderQuery(**bounds).matches("completed", "ecommerce", "ada", submitted_at, [])

    assert at(10.0004, since=10.0) and not at(10.0004, until=10.0)  # shown as 10.000
    assert not at(9.5, since=10.0) and at(9.5, until=10.0)


def test_the_skus_of_an_order_are_those_of_its_items_that_have_one():
    data = {"items": [{"sku": "A1"}, {"qty": 1}, "junk", {"sku": 7}, {"sku": "B2"}]}
    assert skus_of(data) == ["A1", "B2"]
    assert skus_of({"items": "A1"}) == [] and skus_of({}) == []

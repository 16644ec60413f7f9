"""The one encoder between records and database rows: tasks, orders and events.

Column lists come from the records' own fields, so a field is named in `engine/records.py`
and in the schema's description (`schema.py`), nowhere else (a test holds the two
together). Values that are not plain columns (order data, task results, an event's rarer
fields) are JSON.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Iterable
from typing import Any

from ..engine.records import OrderRecord, TaskRecord
from ..engine.text import escape_all
from ..engine.workflow import Workflow

# tasks: the id (order:step, the primary key), then the record's fields in order.
TASK_FIELDS = ("id", *TaskRecord._fields)
TASK_COLUMNS = ", ".join(TASK_FIELDS)
_RESULT = TaskRecord._fields.index("result")

ORDER_FIELDS = (
    "id",
    "number",
    "workflow",
    "data",
    "idempotency_key",
    "submitted_at",
    "status",
    "finished_at",
    "priority",
    "version",
)
ORDER_COLUMNS = ", ".join(ORDER_FIELDS)

# events: the fields every event has, `duration` (the common extra one), then JSON for the
# rest (error, delay, from_worker, ...).
EVENT_FIELDS = ("seq", "ts", "type", "order_id", "step", "worker_id", "attempt", "message")
EVENT_COLUMNS = ", ".join(EVENT_FIELDS) + ", duration, extra"
_EVENT_FIELDS = operator.itemgetter(*EVENT_FIELDS)


def task_row(record: TaskRecord) -> tuple:
    values = list(record)
    values[_RESULT] = _dumps(record.result)
    values[TaskRecord._fields.index("attempt_open")] = int(record.attempt_open)
    return (record.id, *values)


def task_from_row(row: tuple) -> TaskRecord:
    """A row in TASK_FIELDS order (id first) as a record."""
    record = TaskRecord._make(row[1:])
    return record._replace(attempt_open=bool(record.attempt_open), result=_loads(record.result))


def order_row(record: OrderRecord) -> tuple:
    return (
        record.id,
        record.number,
        record.workflow,
        json.dumps(record.data),
        record.idempotency_key,
        record.submitted_at,
        record.status,
        record.finished_at,
        record.priority,
        record.version,
    )


def order_from_row(
    row: tuple, tasks: Iterable[TaskRecord] = (), events: Iterable[dict] = ()
) -> OrderRecord:
    """A row in ORDER_FIELDS order, with the order's task records and events."""
    oid, number, workflow, data, key, submitted, status, finished, priority, version = row
    return OrderRecord(
        oid, number, workflow, json.loads(data), key, submitted, finished, status, priority,
        tuple(tasks), tuple(events), version or "",
    )


def event_row(event: dict) -> tuple:
    extra_count = len(event) - len(EVENT_FIELDS)
    if extra_count == 0:
        return (*_EVENT_FIELDS(event), None, None)
    duration = event.get("duration")
    if duration is not None and extra_count == 1:
        return (*_EVENT_FIELDS(event), duration, None)
    extra = {k: v for k, v in event.items() if k not in EVENT_FIELDS and k != "duration"}
    return (*_EVENT_FIELDS(event), duration, json.dumps(extra) if extra else None)


# incidents (scheduler/runtime/incidents.py): the columns a person or a query reads, then
# the rest of the record as JSON.
INCIDENT_FIELDS = ("id", "ts", "kind", "worker", "message")
INCIDENT_COLUMNS = ", ".join(INCIDENT_FIELDS) + ", detail"


def incident_row(view: dict) -> tuple:
    """An incident's view as a row. Its text comes from events (worker names, errors), so it
    is escaped here as an event's would be (engine/text.py): rare rows, cheaply made safe."""
    view = escape_all(view)
    detail = {k: v for k, v in view.items() if k not in INCIDENT_FIELDS and k != "title"}
    return (*(view.get(k) for k in INCIDENT_FIELDS), json.dumps(detail))


def incident_from_row(row: tuple) -> dict:
    """A row in INCIDENT_COLUMNS order as the incident's view (without its title, which the
    incident log makes)."""
    return {**dict(zip(INCIDENT_FIELDS, row[:5], strict=True)), **json.loads(row[5])}


def control_row(view: dict) -> tuple:
    """A step's controls (SchedulerCore.control_view) as a row; an operator's name and
    words are escaped as an event's would be."""
    view = escape_all(view)
    return view["step"], json.dumps({k: v for k, v in view.items() if k != "step"})


def control_from_row(row: tuple) -> dict:
    return {"step": row[0], **json.loads(row[1])}


# definitions (engine/definitions.py): one row per workflow definition, its shape as JSON.
DEFINITION_COLUMNS = "key, workflow, version, body"


def definition_row(workflow: Workflow) -> tuple:
    return workflow.key, workflow.name, workflow.version, json.dumps(workflow.body())


def definition_from_row(row: tuple) -> Workflow:
    """A row in DEFINITION_COLUMNS order as the definition it keeps."""
    _, name, version, body = row
    return Workflow.from_body(name, version, json.loads(body))


def schedule_row(view: dict) -> tuple:
    """A schedule's mark (engine/schedules.py `Mark.view`) as a row (numbers and ids)."""
    return view["name"], json.dumps({k: v for k, v in view.items() if k != "name"})


def schedule_from_row(row: tuple) -> dict:
    return {"name": row[0], **json.loads(row[1])}


def describe_event(event: dict) -> str:
    """How a log line names an event: "event 42 (task_failed, order o-1 step payment)"."""
    where = ""
    if event.get("order_id"):
        where = f", order {event['order_id']}"
        if event.get("step"):
            where += f" step {event['step']}"
    return f"event {event.get('seq')} ({event.get('type')}{where})"


def batch_rows(
    orders: Iterable[OrderRecord], tasks: Iterable[TaskRecord], events: Iterable[dict]
) -> Iterable[tuple[str, tuple, str]]:
    """Each row of a group commit as (table, row, what it is for a person: "order o-1",
    "order o-1 step payment", "event 42 (...)"), for writing them one at a time."""
    for record in orders:
        yield "orders", order_row(record), f"order {record.id}"
    for record in tasks:
        yield "tasks", task_row(record), f"order {record.order_id} step {record.step}"
    for event in events:
        yield "events", event_row(event), describe_event(event)


def event_from_row(row: tuple) -> dict:
    event = dict(zip(EVENT_FIELDS, row[:8], strict=True))
    if row[8] is not None:
        event["duration"] = row[8]
    if row[9] is not None:
        event.update(json.loads(row[9]))
    return event


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)

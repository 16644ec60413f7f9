"""The messages only the HTTP API takes, declared once (scheduler/engine/fields.py): request
bodies and query strings. The actions and views read with them, the OpenAPI document is
written from them. An order (scheduler/engine/orders.py) and the chaos settings
(scheduler/demo/handlers.py) are declared where they are checked for Python callers too.
"""

from __future__ import annotations

from scheduler import OrderStatus
from scheduler.engine.fields import Field, Kind, Message
from scheduler.engine.orders import MAX_TEXT

MAX_BULK_ORDERS = 10_000
MAX_NEW_WORKERS = 32
MAX_PAGE = 500
MAX_EVENTS_PAGE = 5000
# Order numbers and event seqs stay below this (an order's `number` is the list's cursor).
MAX_SEQ = 2**62
# Unix times a search may name: 0 to the year 5138.
MAX_TIME = 1e11
# The longest part of a SKU, or of anything (`text`), a search looks for. Short, so that a
# search with every filter at its longest still fits the front server's request line (8,190
# bytes; 12 per character percent-encoded at worst): a part that long finds what a longer
# one would (and more), and the page's search box stops there.
MAX_NEEDLE = 32


def _text(name: str, description: str = "", max_length: int = MAX_TEXT,
          **rules: object) -> Field:
    return Field(name, Kind.TEXT, max_length=max_length, description=description, **rules)


DEMO_ORDERS = Message(
    "DemoOrders",
    (
        Field("count", Kind.INTEGER, required=True, minimum=1, maximum=MAX_BULK_ORDERS),
        _text("workflow", "one of GET /api/workflows; default: ecommerce", min_length=1,
              not_blank=True, one_of="workflows"),
    ),
)

ID_LIST = Message(
    "IdList",
    (Field("ids", Kind.LIST, required=True, min_items=1, max_items=MAX_BULK_ORDERS,
           of=_text("id", min_length=1)),),
)

NEW_WORKERS = Message(
    "NewWorkers",
    (
        Field("count", Kind.INTEGER, minimum=1, maximum=MAX_NEW_WORKERS, default=1),
        Field("kind", Kind.TEXT, choices=("thread", "process"), default="thread",
              description="thread: joins at once; process: an `orderflow worker` process "
                          "started by this server, which joins once connected"),
    ),
)

# A worker named in a Socket.IO command (kill_worker, drain_worker): `{"id"}` or the id alone.
WORKER_REF = Message("WorkerRef", (_text("id", min_length=1, required=True),),
                     what="the command")

# Limits a step may be given while it runs (PUT /api/steps/{step}/limits).
MAX_STEP_IN_FLIGHT = 1_000_000
MAX_STEP_RATE = 1_000_000

STEP_PAUSE = Message(
    "StepPause",
    (_text("why", "what the operator says: shown with the step's waiting tasks"),),
    description="no body, an empty object, or why",
)

STEP_LIMITS = Message(
    "StepLimits",
    (
        Field("max_in_flight", Kind.INTEGER, minimum=0, maximum=MAX_STEP_IN_FLIGHT,
              description="at most this many attempts running across the cluster; 0: no limit"),
        Field("rate", Kind.NUMBER, minimum=0, maximum=MAX_STEP_RATE,
              description="at most this many starts a second; 0: no limit"),
    ),
    description="the limits to change (one or both); a limit not given stays as it is",
    min_fields=1,
)

MIGRATION = Message(
    "Migration",
    (
        _text("from", "the definition whose unfinished orders move: its key "
              "(checkout@2026.12.1, as GET /api/stats definitions lists them), or the name of "
              "a workflow of the running app", required=True, min_length=1),
        _text("to", "the definition they move to: a key, or the name of a workflow of the "
              "running app", required=True, min_length=1),
        Field("orders", Kind.LIST, min_items=1, max_items=MAX_BULK_ORDERS,
              of=_text("id", min_length=1),
              description="only these orders (each an unfinished order of `from`); "
                          "default: all of them"),
        Field("run_added", Kind.BOOLEAN, default=False,
              description="run a step the new definition adds before steps that ran, "
                          "after the fact, instead of skipping it"),
        Field("dry_run", Kind.BOOLEAN, default=False,
              description="only say what would happen to each order; nothing changes"),
    ),
    description="steps that succeeded are kept by name, steps added before steps that ran "
                "are skipped (unless run_added), steps the new definition lacks are dropped",
)

RERUN = Message(
    "Rerun",
    (
        _text("step", "the step to run again from: it and every step after it run again, "
              "and every step that did not succeed", required=True, min_length=1),
        Field("new_keys", Kind.BOOLEAN, default=False,
              description="hand the steps run again new idempotency keys (a charge IS "
                          "repeated); default: the same keys, so a gateway that saw them "
                          "answers with what it did the first time"),
    ),
)

REPLAY = Message(
    "Replay",
    (Field("pinned", Kind.BOOLEAN, default=False,
           description="on the definition the original was pinned to; default: its "
                       "workflow's current definition"),),
    description="no body, an empty object, or pinned",
)

# Commands without parameters: no body, or an empty JSON object.
NO_BODY = Message("NoBody", (), description="no body, or an empty JSON object")

ORDER_SEARCH = Message(
    "OrderSearch",
    (
        Field("status", Kind.TEXT, choices=tuple(s.value for s in OrderStatus),
              description="only this status"),
        _text("workflow", "only this workflow"),
        _text("customer", "a part of the customer (any case)"),
        _text("error", "a part of any step's last error (any case)"),
        _text("sku", "a part of any item's SKU (any case)", MAX_NEEDLE),
        _text("text", "a part of any of: the order's id, its customer, an item's SKU, a "
                      "step's last error, its workflow (any case): the dashboard's search box",
              MAX_NEEDLE),
        Field("since", Kind.NUMBER, minimum=0, maximum=MAX_TIME,
              description="submitted at or after (Unix time)"),
        Field("until", Kind.NUMBER, minimum=0, maximum=MAX_TIME,
              description="submitted before (Unix time)"),
        Field("limit", Kind.INTEGER, minimum=1, maximum=MAX_PAGE, default=50,
              description="page size"),
        Field("cursor", Kind.INTEGER, minimum=1, maximum=MAX_SEQ,
              description="next_cursor of the previous page"),
    ),
    what="the query",
)

EVENT_PAGE = Message(
    "EventPage",
    (
        Field("after", Kind.INTEGER, minimum=0, maximum=MAX_SEQ, default=0,
              description="last seq seen"),
        Field("limit", Kind.INTEGER, minimum=1, maximum=MAX_EVENTS_PAGE, default=500,
              description="page size"),
    ),
    what="the query",
)

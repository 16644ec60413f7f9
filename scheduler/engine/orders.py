"""What an order is, declared once: the message a client submits (`ORDER`, with its `ITEM`s),
the idempotency key that may come with it, and the one reading of both (`read_order`).

The Python API, the CLI and HTTP submit through `read_order`; the OpenAPI document and the
dashboard's order form are written from the same declarations (dashboard/api/schema.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .fields import Field, Kind, Message, MessageError

MAX_TEXT = 200
MAX_ITEMS = 1000
MAX_QTY = 1_000_000
MAX_PRICE = 1e9
MAX_PRIORITY = 100
# The times `not_before` may name (Unix seconds): 2000-01-01 to 2100-01-01. Earlier than now
# is no mistake (clocks differ): the order starts at once.
FIRST_TIME, LAST_TIME = 946_684_800, 4_102_444_800


class OrderValidationError(MessageError):
    """The order data is malformed; the message names the field."""


ITEM = Message(
    "Item",
    (
        Field("sku", Kind.TEXT, required=True, min_length=1, max_length=MAX_TEXT,
              not_blank=True),
        Field("qty", Kind.INTEGER, required=True, minimum=1, maximum=MAX_QTY),
        Field("price", Kind.NUMBER, required=True, minimum=0, maximum=MAX_PRICE),
    ),
    what="an item",
    description="one line of an order",
)

ORDER = Message(
    "OrderInput",
    (
        Field("customer", Kind.TEXT, required=True, min_length=1, max_length=MAX_TEXT,
              not_blank=True),
        Field("items", Kind.LIST, required=True, of=ITEM, min_items=1, max_items=MAX_ITEMS),
        Field("workflow", Kind.TEXT, min_length=1, max_length=MAX_TEXT, not_blank=True,
              one_of="workflows",
              description="one of GET /api/workflows; default: ecommerce"),
        Field("priority", Kind.INTEGER, minimum=-MAX_PRIORITY, maximum=MAX_PRIORITY,
              default=0,
              description="higher first among orders at the same stage (e.g. express "
                          "shipping)"),
        Field("not_before", Kind.TIME, minimum=FIRST_TIME, maximum=LAST_TIME,
              description="no step starts before this time (ISO-8601, or Unix seconds); "
                          "a time already past starts the order at once"),
    ),
    what="an order",
    error=OrderValidationError,
)

# The body of a signal (POST /api/orders/{id}/signals/{name}): its data becomes the result
# of the wait of that name, for the steps after it.
SIGNAL = Message(
    "Signal",
    (Field("data", Kind.ANY, description="any JSON value: the wait's result for the steps "
                                         "after it (absent: null)"),),
    what="a signal",
    description="no body, an empty object, or the data",
)

# Sent as a header with an order; kept with the order it created.
IDEMPOTENCY_KEY = Field(
    "Idempotency-Key", Kind.TEXT, min_length=1, max_length=MAX_TEXT, not_blank=True,
    description="the same key again answers with the order it created (200), for as long "
                "as the journal keeps that order")


@dataclass(frozen=True)
class NewOrder:
    """An order as `read_order` checked it, ready for the cluster to accept."""

    data: dict  # {"customer", "items"}: what is kept with the order
    workflow: str | None  # None: the default workflow
    priority: int
    idempotency_key: str | None
    not_before: float | None = None  # Unix seconds


def read_order(data: Any, workflow: str | None = None,
               idempotency_key: str | None = None) -> NewOrder:
    """`data` (and the key) checked once, against ORDER (and IDEMPOTENCY_KEY); a `workflow`
    given here wins over the data's. OrderValidationError names the first field at fault."""
    clean = ORDER.read(data)
    key = (None if idempotency_key is None
           else IDEMPOTENCY_KEY.read(idempotency_key, OrderValidationError))
    return NewOrder(
        data={"customer": clean["customer"], "items": clean["items"]},
        workflow=workflow or clean.get("workflow"),
        priority=clean["priority"],
        idempotency_key=key,
        not_before=clean.get("not_before"),
    )


def validate_order(data: Any) -> dict:
    """A clean copy of `data`: {"customer": str, "items": [{"sku", "qty", "price"}]}."""
    return read_order(data).data


def order_total(data: dict) -> float:
    return round(sum(i["qty"] * i["price"] for i in data.get("items", [])), 2)

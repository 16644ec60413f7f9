"""Plausible demo orders for `POST /api/orders/bulk` and load tests."""

from __future__ import annotations

import random

CUSTOMERS = ("ada", "grace", "alan", "edsger", "barbara", "donald", "margaret", "ken")
CATALOGUE = (
    ("BOOK-001", 12.5),
    ("MUG-002", 8.0),
    ("SHIRT-003", 19.99),
    ("LAMP-004", 34.0),
    ("PEN-005", 1.25),
    ("BAG-006", 45.5),
)


def demo_order(rng: random.Random) -> dict:
    """One order of one to three catalogue items, valid for `validate_order`."""
    items = [
        {"sku": sku, "qty": rng.randint(1, 3), "price": price}
        for sku, price in rng.sample(CATALOGUE, rng.randint(1, 3))
    ]
    return {"customer": rng.choice(CUSTOMERS), "items": items}

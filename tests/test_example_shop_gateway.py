"""The example gateway's rules without a server: an item missing from the shelf is refused
at every attempt, an undo must name what it undoes, and the nightly reconciliation's sums."""

from __future__ import annotations

from examples.shop.app import summarise
from examples.shop.gateway import Ledger


def ledger_with(kind: str, key: str, record: dict) -> Ledger:
    ledger = Ledger(fail=0.0, slow=0.0, slow_ms=0.0, seed=1,
                    out_of_stock=frozenset({"SOLD-OUT-1"}))
    assert ledger.begin(kind, key) is None
    ledger.finish(kind, key, record)
    return ledger


def test_a_parcel_with_an_out_of_stock_item_is_refused_naming_it_and_others_are_not():
    ledger = Ledger(0.0, 0.0, 0.0, 1, frozenset({"SOLD-OUT-1"}))
    items = [{"sku": "TEA-1", "qty": 1}, {"sku": "SOLD-OUT-1", "qty": 1}]
    assert ledger.refusal("parcels", {"items": items}) == "out of stock: SOLD-OUT-1"
    assert ledger.refusal("parcels", {"items": items[:1]}) is None


def test_a_refund_must_name_a_charge_the_gateway_made():
    ledger = ledger_with("charges", "o-1:payment", {"id": "ch_1", "replays": 0})
    assert ledger.refusal("refunds", {"charge_id": "ch_1"}) is None
    assert "names no record of charges" in ledger.refusal("refunds", {"charge_id": "ch_2"})
    assert "names no record of reservations" in ledger.refusal("releases",
                                                              {"reservation_id": "ch_1"})


def test_the_ledger_view_counts_what_was_done_and_what_was_repeated():
    ledger = ledger_with("reviews", "o-1:review_request", {"id": "re_1", "replays": 0})
    assert ledger.begin("reviews", "o-1:review_request")[0] == 200  # the repeat: first answer
    view = ledger.view()
    assert view["counts"]["reviews"] == 1 and view["counts"]["charges"] == 0
    assert view["replays"]["reviews"] == 1


def test_reconciliation_sums_charges_and_refunds_and_names_a_refund_of_no_charge():
    ledger = {
        "charges": {"a:payment": {"id": "ch_a", "request": {"amount": 9.0}},
                    "b:payment": {"id": "ch_b", "request": {"amount": 21.0}}},
        "refunds": {"b:payment:compensate": {"request": {"charge_id": "ch_b", "amount": 21.0}},
                    "x": {"request": {"charge_id": "ch_x", "amount": 1.5}}},
    }
    assert summarise(ledger) == {"charges": 2, "refunds": 2, "charged": 30.0,
                                 "refunded": 22.5, "net": 7.5, "unmatched_refunds": ["ch_x"]}

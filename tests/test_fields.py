"""The engine's field tables (scheduler/engine/fields.py) and the order declared with them
(scheduler/engine/orders.py): each rule checked as it is declared, errors naming the field,
and a clean copy out. That the OpenAPI document says the same is tests/test_api_schema.py."""

from __future__ import annotations

import sys

import pytest

from scheduler import OrderValidationError, validate_order
from scheduler.engine.fields import BLANK, Field, Kind, Message, MessageError, is_blank
from scheduler.engine.orders import IDEMPOTENCY_KEY, ORDER, order_total, read_order

ITEM = {"sku": "A1", "qty": 2, "price": 9.5}
ORDER_DATA = {"customer": "ada", "items": [ITEM]}

# ECMA-262's WhiteSpace and LineTerminator: what \s means in a JSON Schema or HTML pattern.
ECMA_WHITESPACE = set("\t\n\x0b\x0c\r \xa0\u1680\u2028\u2029\u202f\u205f\u3000\ufeff") | {
    chr(c) for c in range(0x2000, 0x200B)}


def test_blank_is_the_whitespace_of_python_and_of_json_schema_patterns_together():
    python = {chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()}
    assert set(BLANK) == python | ECMA_WHITESPACE
    assert len(BLANK) == len(set(BLANK))


@pytest.mark.parametrize("text", ["", " ", "\t\n", "\u3000", "\ufeff", "\x1c \x85"])
def test_text_of_blank_characters_only_is_blank(text):
    assert is_blank(text)


@pytest.mark.parametrize("text", ["a", " a ", "\u200b", "\x00"])
def test_text_with_another_character_is_not_blank(text):
    assert not is_blank(text)


@pytest.mark.parametrize("customer", [" ", "   ", "\t", "\u3000", "\ufeff", "\x1f"])
def test_a_whitespace_only_customer_is_refused_naming_it(customer):
    with pytest.raises(OrderValidationError, match="^customer must be a non-blank string"):
        read_order({**ORDER_DATA, "customer": customer})


@pytest.mark.parametrize(("workflow", "ok"), [("w" * 200, True), ("w" * 201, False),
                                              (" ", False), ("", False)])
def test_an_orders_workflow_is_capped_and_not_blank(workflow, ok):
    data = {**ORDER_DATA, "workflow": workflow}
    if ok:
        assert read_order(data).workflow == workflow
    else:
        with pytest.raises(OrderValidationError, match="^workflow must be a non-blank string"):
            read_order(data)


def test_an_order_is_read_into_what_is_kept_and_what_steers_it():
    order = read_order({**ORDER_DATA, "workflow": "checkout", "priority": 7}, None, "k-1")
    assert order.data == ORDER_DATA  # only customer and items are kept with the order
    assert (order.workflow, order.priority, order.idempotency_key) == ("checkout", 7, "k-1")
    assert read_order(ORDER_DATA, "invoiced").workflow == "invoiced"
    default = read_order(ORDER_DATA)
    assert (default.workflow, default.priority, default.idempotency_key) == (None, 0, None)
    assert validate_order({**ORDER_DATA, "priority": 3}) == ORDER_DATA


def test_a_json_integer_may_be_written_with_a_zero_fraction_as_json_schema_counts_it():
    order = read_order({"customer": "ada", "items": [{**ITEM, "qty": 3.0}], "priority": -2.0})
    assert order.data["items"][0]["qty"] == 3 and type(order.data["items"][0]["qty"]) is int
    assert order.priority == -2 and type(order.priority) is int
    for qty in (1.5, True, "3", float("inf"), float("nan")):
        with pytest.raises(OrderValidationError, match=r"^items\[0\]\.qty must be an integer"):
            read_order({"customer": "ada", "items": [{**ITEM, "qty": qty}]})


@pytest.mark.parametrize(("data", "message"), [
    ([ORDER_DATA], "an order must be a JSON object"),
    ({"items": [ITEM]}, "customer is required"),
    ({"customer": "ada"}, "items is required"),
    ({"customer": "ada", "items": []}, "items must be a list of 1 to 1000 items"),
    ({"customer": "ada", "items": [ITEM] * 1001}, "items must be a list of 1 to 1000 items"),
    ({"customer": "ada", "items": ["A1"]}, "items[0] must be a JSON object"),
    ({"customer": "ada", "items": [{**ITEM, "colour": "red"}]},
     "items[0] has unknown field(s): colour"),
    ({"customer": "ada", "items": [{"sku": "A1", "qty": 1}]}, "items[0].price is required"),
    ({"customer": "ada", "items": [{**ITEM, "price": 1e9 + 1}]},
     "items[0].price must be a number from 0 to 1000000000"),
    ({"customer": "ada", "items": [{**ITEM, "price": 10**400}]},
     "items[0].price must be a number from 0 to 1000000000"),
    ({**ORDER_DATA, "coupon": "X"}, "unknown field(s): coupon"),
    ({**ORDER_DATA, "priority": 101}, "priority must be an integer from -100 to 100"),
    ({**ORDER_DATA, "priority": None}, "priority must be an integer from -100 to 100"),
    ({**ORDER_DATA, "customer": "c" * 201}, "customer must be a non-blank string of at most"),
    ({**ORDER_DATA, "customer": "ada\x00"}, "customer contains a NUL character"),
    ({**ORDER_DATA, "ad\ud800": 1}, "a field name in the object"),
])
def test_a_bad_order_is_refused_with_the_first_field_at_fault_named(data, message):
    with pytest.raises(OrderValidationError) as refused:
        read_order(data)
    assert str(refused.value).startswith(message), str(refused.value)


@pytest.mark.parametrize(("key", "message"), [
    ("", "Idempotency-Key must be a non-blank string of at most 200 characters"),
    ("  ", "Idempotency-Key must be a non-blank string of at most 200 characters"),
    ("k" * 201, "Idempotency-Key must be a non-blank string of at most 200 characters"),
    ("k\x00", "Idempotency-Key contains a NUL character"),
    (5, "Idempotency-Key must be a non-blank string"),
])
def test_an_idempotency_key_is_read_with_its_order_and_refused_naming_it(key, message):
    with pytest.raises(OrderValidationError) as refused:
        read_order(ORDER_DATA, idempotency_key=key)
    assert str(refused.value).startswith(message)
    assert read_order(ORDER_DATA, idempotency_key="k" * 200).idempotency_key == "k" * 200
    assert IDEMPOTENCY_KEY.max_length == 200


def test_a_message_fills_defaults_refuses_too_few_fields_and_raises_its_own_error():
    class Refused(ValueError):
        pass

    knobs = Message("Knobs", (
        Field("rate", Kind.NUMBER, minimum=0, maximum=1),
        Field("mode", Kind.TEXT, choices=("a", "b"), default="a"),
        Field("pair", Kind.LIST, min_items=2, max_items=2, of=Field("end", Kind.INTEGER)),
    ), min_fields=1, error=Refused)
    assert knobs.read({"rate": 0.5}) == {"rate": 0.5, "mode": "a"}
    assert knobs.read({"pair": [2, 1.0]}) == {"pair": [2, 1], "mode": "a"}
    for data, message in [({}, "the body must give at least 1 of rate, mode, pair"),
                          ({"mode": "c"}, 'mode must be one of "a", "b"'),
                          ({"pair": [1]}, "pair must be a list of 2 items"),
                          ({"pair": [1, 0.5]}, "pair[1] must be an integer"),
                          ({"rate": None}, "rate must be a number from 0 to 1")]:
        with pytest.raises(Refused) as refused:
            knobs.read(data)
        assert str(refused.value) == message
    with pytest.raises(KeyError):
        knobs.field("nope")
    assert issubclass(OrderValidationError, MessageError) and ORDER.error is OrderValidationError


# Each rule, said in the words an error gives back to the client (the API answers these).
@pytest.mark.parametrize(("field", "words"), [
    (Field("note", Kind.TEXT), "a string"),
    (Field("note", Kind.TEXT, max_length=10), "a string of at most 10 characters"),
    (Field("note", Kind.TEXT, min_length=1, max_length=10),
     "a non-empty string of at most 10 characters"),
    (Field("note", Kind.TEXT, min_length=1, max_length=10, not_blank=True),
     "a non-blank string of at most 10 characters"),
    (Field("note", Kind.TEXT, min_length=2, max_length=10), "a string of 2 to 10 characters"),
    (Field("note", Kind.TEXT, min_length=2), "a string"),
    (Field("n", Kind.INTEGER), "an integer"),
    (Field("n", Kind.INTEGER, minimum=1), "an integer >= 1"),
    (Field("n", Kind.NUMBER, maximum=5), "a number <= 5"),
    (Field("n", Kind.NUMBER, minimum=0.5, maximum=1e16), "a number from 0.5 to 1e+16"),
    (Field("n", Kind.NUMBER, maximum=1e15), "a number <= 1000000000000000"),
    (Field("n", Kind.INTEGER, choices=(1, 2)), "one of 1, 2"),
    (Field("ids", Kind.LIST), "a list"),
    (Field("ids", Kind.LIST, min_items=1), "a list of at least 1 items"),
    (Field("ids", Kind.LIST, max_items=5), "a list of at most 5 items"),
    (Field("ids", Kind.LIST, min_items=2, max_items=5), "a list of 2 to 5 items"),
    (Field("meta", Kind.OBJECT), "a JSON object"),
])
def test_each_rule_is_said_in_words_in_the_error_that_breaks_it(field, words):
    assert field.rule() == words
    with pytest.raises(MessageError) as refused:
        field.check(object(), field.name)
    assert str(refused.value) == f"{field.name} must be {words}"


def test_values_on_the_bounds_are_accepted_and_a_bool_is_not_a_number():
    assert Field("n", Kind.TEXT, min_length=3).check("abc", "n") == "abc"
    assert Field("n", Kind.NUMBER, minimum=0, maximum=1).check(1, "n") == 1
    assert Field("n", Kind.NUMBER, minimum=0, maximum=1).check(0, "n") == 0
    for flag in (True, False):
        with pytest.raises(MessageError, match="^n must be a number$"):
            Field("n", Kind.NUMBER).check(flag, "n")


def test_a_list_that_is_not_a_list_is_refused_as_a_whole_not_by_its_items():
    ids = Field("ids", Kind.LIST, of=Field("id", Kind.INTEGER))
    for value in ("12", None, {"0": 1}):
        with pytest.raises(MessageError) as refused:
            ids.check(value, "ids")
        assert str(refused.value) == "ids must be a list"


def test_an_object_field_is_checked_by_its_own_message_with_its_path_in_errors():
    address = Message("Address", (Field("city", Kind.TEXT, required=True),))
    person = Message("Person", (Field("address", Kind.OBJECT, of=address),))
    assert person.read({"address": {"city": "Oslo"}}) == {"address": {"city": "Oslo"}}
    for data, message in [({"address": {"city": 5}}, "address.city must be a string"),
                          ({"address": {}}, "address.city is required"),
                          ({"address": "Oslo"}, "address must be a JSON object")]:
        with pytest.raises(MessageError) as refused:
            person.read(data)
        assert str(refused.value) == message


def test_a_free_object_field_takes_any_object_a_journal_can_hold_and_nothing_else():
    meta = Field("meta", Kind.OBJECT)
    assert meta.check({"k": ["v", 1]}, "meta") == {"k": ["v", 1]}
    for value in ("text", ["k"], 3):
        with pytest.raises(MessageError, match="^meta must be a JSON object$"):
            meta.check(value, "meta")
    with pytest.raises(MessageError, match="^meta must be a JSON object$"):
        meta.check({"k": ["a\x00"]}, "meta")
    # Read as a whole, the message says where the unstorable text is.
    with pytest.raises(MessageError, match=r"^meta\.k\[0\] contains a NUL character"):
        meta.read({"k": ["a\x00"]})


def test_a_body_that_is_not_an_object_names_the_body_when_it_holds_unstorable_text():
    knobs = Message("Knobs", (Field("rate", Kind.NUMBER),), what="the chaos settings")
    with pytest.raises(MessageError) as refused:
        knobs.read("\x00")
    assert str(refused.value).startswith("the chaos settings contains a NUL character")
    with pytest.raises(MessageError) as refused:
        knobs.read(["ok", "\ud800"])
    assert str(refused.value).startswith("the chaos settings[1] contains a lone surrogate")


def test_unknown_fields_are_all_named_sorted_and_a_missing_field_name_is_a_key_error():
    knobs = Message("Knobs", (Field("rate", Kind.NUMBER),))
    with pytest.raises(MessageError) as refused:
        knobs.read({"rate": 1, "zeta": 1, "alpha": 2})
    assert str(refused.value) == "unknown field(s): alpha, zeta"
    with pytest.raises(KeyError) as missing:
        knobs.field("nope")
    assert missing.value.args == ("nope",)
    assert knobs.field("rate").kind is Kind.NUMBER


def test_an_orders_total_is_quantity_times_price_summed_to_the_cent():
    items = [{"sku": "A", "qty": 2, "price": 6.1728}, {"sku": "B", "qty": 1, "price": 0.5}]
    assert order_total({"customer": "ada", "items": items}) == 12.85  # 12.3456 + 0.5
    assert order_total({"customer": "ada", "items": items[:1]}) == 12.35
    assert order_total({"customer": "ada"}) == 0


@pytest.mark.parametrize("text, seconds", [
    ("2026-12-24T09:00:00Z", 1_798_102_800.0),
    ("2026-12-24T09:00:00+00:00", 1_798_102_800.0),
    ("2026-12-24T09:00", 1_798_102_800.0),  # no zone: UTC; no seconds: 0
    ("2026-12-24 10:30:00+01:30", 1_798_102_800.0),
    ("2026-12-24T07:15:00-01:45", 1_798_102_800.0),
    ("2026-12-24T09:00:00.5Z", 1_798_102_800.5),  # a fraction is of a second
    ("2026-12-24T09:00:07.000123Z", 1_798_102_807.000123),
    ("2026-02-30T00:00", 1_772_409_600.0),  # Feb 30 runs on into March 2
    ("2000-01-01T00:00:00Z", 946_684_800.0),
    ("2099-12-31T23:59:59Z", 4_102_444_799.0),
])
def test_an_iso_time_is_read_as_unix_seconds_with_its_zone_and_fraction(text, seconds):
    from scheduler.engine.fields import iso_seconds

    assert iso_seconds(text) == pytest.approx(seconds, abs=1e-6)


@pytest.mark.parametrize("text", [
    "2026-12-24T09:00:00Z\n", "2026-12-24", "2026-12-24T24:00", "2026-13-01T00:00",
    "1999-12-31T23:59", "2026-12-24T09:00:00.1234567Z", "2026-12-24T09:00+1:00",
    "2026-12-24T09:00+24:00", "2026-12-24t09:00", "next tuesday", ""])
def test_text_that_is_not_such_a_time_is_none(text):
    from scheduler.engine.fields import iso_seconds

    assert iso_seconds(text) is None


def test_a_time_without_a_zone_is_utc_whatever_the_machines_zone(monkeypatch):
    import time

    from scheduler.engine.fields import iso_seconds

    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    try:
        assert iso_seconds("2026-12-24T09:00") == 1_798_102_800.0
    finally:
        monkeypatch.undo()
        time.tzset()

"""The one rule for text a journal can hold (scheduler/engine/text.py), and the doors that
escape what the server records itself: an attempt's outcome (`check_outcome`, whoever
reports it), an operator's name, and log lines."""

from __future__ import annotations

import json
import logging
from typing import NamedTuple

import pytest

from scheduler import Cluster, OrderValidationError, validate_order
from scheduler.engine.text import escape, escape_all, find_unstorable, problem, storable
from scheduler.runtime.logfile import SafeFormatter, escape_controls
from scheduler.steps.run import check_outcome

ORDER = {"customer": "ada", "items": [{"sku": "A1", "qty": 1, "price": 2.0}]}


@pytest.mark.parametrize("text", ["", "plain", "é à ü", "😀 emoji", "tab\tnewline\n", "中文"])
def test_text_any_journal_holds_is_storable_and_left_as_it_is(text):
    assert storable(text) and problem(text) is None
    assert escape(text) is text


@pytest.mark.parametrize(("text", "why"), [
    ("a\x00b", "NUL character (\\x00)"),
    ("\ud800", "lone surrogate (\\ud800)"),
    ("ok \udfff", "lone surrogate (\\udfff)"),
    ("\ud83d\ude00", "lone surrogate (\\ud83d)"),  # a pair as two code points is two lone ones
])
def test_a_nul_or_a_lone_surrogate_is_not_storable_and_says_which(text, why):
    assert not storable(text)
    assert why in problem(text)


def test_escaping_writes_nul_as_backslash_x00_and_a_surrogate_as_its_code_visibly():
    assert escape("a\x00b") == "a\\x00b"
    assert escape("\ud800x\udc01") == "\\ud800x\\udc01"
    assert escape("caf\u00e9 \x00") == "caf\u00e9 \\x00"
    # What comes out can be stored and encoded, and escaping it again changes nothing.
    out = escape("\x00\ud800")
    assert storable(out) and out.encode("utf-8") and escape(out) == out


def test_escaping_a_json_value_reaches_every_string_and_key_and_copies_only_when_needed():
    clean = {"a": [1, 2.5, None, True, {"b": "text"}]}
    assert escape_all(clean) is clean
    dirty = {"body\x00": ["ok", {"k": "x\ud800"}], "n": 3}
    assert escape_all(dirty) == {"body\\x00": ["ok", {"k": "x\\ud800"}], "n": 3}
    assert dirty == {"body\x00": ["ok", {"k": "x\ud800"}], "n": 3}  # the original untouched
    assert json.dumps(escape_all(dirty), ensure_ascii=False).encode("utf-8")


def test_finding_unstorable_text_names_the_field_where_it_is():
    body = {"customer": "ada", "items": [{"sku": "A1"}, {"sku": "B\x00"}]}
    assert find_unstorable(body, "").startswith("items[1].sku contains a NUL character")
    assert find_unstorable({"ids": ["o-1", "\ud800"]}, "").startswith(
        "ids[1] contains a lone surrogate")
    assert find_unstorable({"a\x00": 1}, "") .startswith("a field name in the object")
    assert find_unstorable("key\x00", "Idempotency-Key").startswith("Idempotency-Key contains")
    assert find_unstorable(body | {"items": [{"sku": "A1"}]}, "") is None


@pytest.mark.parametrize("customer", ["\u0000x", "\ud800", "ada\x00"])
def test_order_data_no_journal_can_hold_is_refused_naming_the_field(customer):
    with pytest.raises(OrderValidationError, match="^customer contains"):
        validate_order({**ORDER, "customer": customer})
    with pytest.raises(OrderValidationError, match=r"^items\[0\]\.sku contains"):
        validate_order({**ORDER, "items": [{"sku": customer, "qty": 1, "price": 1}]})


def test_the_python_api_refuses_an_idempotency_key_no_journal_can_hold():
    cluster = Cluster(workers=0)
    for key in ("k\x00", "\udc80"):
        with pytest.raises(OrderValidationError, match="^Idempotency-Key contains"):
            cluster.submit(ORDER, idempotency_key=key)
    assert cluster.stats()["orders_total"] == 0  # nothing was accepted


# ---------------------------------------------------------------- what the server records


def test_an_attempt_error_quoting_a_gateway_body_is_escaped_where_every_outcome_is_bounded():
    body = "502 Bad Gateway\x00\x00<html>\ud800"
    ok, error = check_outcome(False, f"gateway answered: {body}", 65536, 2000)
    assert not ok and error == "gateway answered: 502 Bad Gateway\\x00\\x00<html>\\ud800"
    # Escaped first, then bounded: the bound holds for what is recorded.
    ok, error = check_outcome(False, "\x00" * 100, 65536, 50)
    assert error.startswith("\\x00" * 12) and "more characters cut" in error


def test_a_result_holding_a_nul_or_a_lone_surrogate_is_recorded_escaped_and_emoji_kept():
    ok, result = check_outcome(True, {"body": "a\x00b", "k\ud800": ["\udfff"], "e": "😀"},
                               65536, 2000)
    assert ok and result == {"body": "a\\x00b", "k\\ud800": ["\\udfff"], "e": "😀"}
    plain = {"charge_id": "ch_1", "amount": 9.5, "note": "😀 中文"}
    assert check_outcome(True, plain, 65536, 2000) == (True, plain)


def test_an_escaped_result_that_grows_past_the_size_limit_is_a_failed_attempt():
    ok, error = check_outcome(True, {"b": "\x00" * 40}, 100, 2000)
    assert not ok and "the result is too large" in error


def test_an_operator_action_records_who_asked_escaped():
    cluster = Cluster(workers=0)
    cluster.record_action("token holder at 10.0.0.1\x00", "chaos", "set chaos \ud800",
                          target="chaos\x00", note="x\x00")
    event = cluster.events()[-1]
    assert event["type"] == "operator_action"
    assert event["who"] == "token holder at 10.0.0.1\\x00"
    assert event["message"] == "token holder at 10.0.0.1\\x00: set chaos \\ud800"
    assert event["target"] == "chaos\\x00" and event["note"] == "x\\x00"


def test_a_log_line_escapes_a_lone_surrogate_as_the_journal_does(tmp_path):
    assert escape_controls("bad\ud800 line\nnext\x00") == "bad\\ud800 line\\nnext\\x00"
    handler = logging.FileHandler(tmp_path / "x.log", encoding="utf-8")
    handler.setFormatter(SafeFormatter("%(message)s"))
    record = logging.LogRecord("orderflow", logging.ERROR, __file__, 1,
                               "attempt failed: %s", ("body\ud800",), None)
    handler.emit(record)  # would be a "--- Logging error ---" on stderr, and no line
    handler.close()
    assert (tmp_path / "x.log").read_text(encoding="utf-8") == "attempt failed: body\\ud800\n"


def test_why_a_lone_surrogate_cannot_be_stored_is_said_in_full():
    assert problem("a\udc01") == ("contains a lone surrogate (\\udc01), which is not Unicode "
                                  "text and cannot be stored")


def test_escaping_reaches_a_dirty_key_beside_clean_values_and_a_dirty_list_on_its_own():
    assert escape_all({"a\x00": 1}) == {"a\\x00": 1}
    assert escape_all(["ok", "\x00"]) == ["ok", "\\x00"]
    assert escape_all([["\ud800"]]) == [["\\ud800"]]


def test_escaping_keeps_a_named_tuple_a_named_tuple_and_a_plain_tuple_a_tuple():
    class Attempt(NamedTuple):
        step: str
        error: str

    escaped = escape_all(Attempt("payment", "bad \x00"))
    assert type(escaped) is Attempt and escaped == Attempt("payment", "bad \\x00")
    plain = escape_all(("x\x00", 2))
    assert type(plain) is tuple and plain == ("x\\x00", 2)

"""The door for a client's text (dashboard/boundary.py, parsing.json_body, realtime): text
no journal can hold (a NUL, a lone surrogate) is refused with a 4xx JSON error naming the
parameter or field, on every route, before anything reaches the journal: on SQLite (which
would have answered 200/404) and on PostgreSQL (which answered 500: its text cannot hold a
NUL, and a lone surrogate cannot even be sent)."""

from __future__ import annotations

from contextlib import contextmanager
from urllib.parse import quote

import pytest
from ha import ha_app, leading
from web import ORDER, app_over, fast_cluster

from dashboard import services
from scheduler.journal.sqlite import SQLiteJournal

NUL = "a%00b"  # as a client puts it in a URL
SURROGATE = "a%ED%A0%80b"  # the bytes of an encoded U+D800: not UTF-8


@contextmanager
def sqlite_app(tmp_path):
    journal = SQLiteJournal(tmp_path / "door.db")
    with app_over(fast_cluster(workers=1, journal=journal)) as app:
        yield app


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def door_app(request, tmp_path):
    """A running app over a journal of each kind (on PostgreSQL: a server that leads)."""
    if request.param == "sqlite":
        with sqlite_app(tmp_path) as app:
            yield app
    else:
        with ha_app(request.getfixturevalue("pg_url")) as app:
            leading(app)
            yield app


def routes(app) -> list[tuple[str, str, list[str]]]:
    """Every route of the app: (method, rule, its path parameters)."""
    found = []
    for rule in app.url_map.iter_rules():
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            found.append((method, rule.rule, sorted(rule.arguments)))
    return found


def url_of(rule: str, arguments: list[str], value: str) -> str:
    url = rule
    for name in arguments:
        url = url.replace(f"<path:{name}>", value).replace(f"<{name}>", value)
    return url


def assert_refused(response, status: int, code: str, names: str) -> None:
    assert response.status_code == status, (response.status_code, response.get_data(True))
    assert response.is_json
    error = response.json["error"]
    assert error["code"] == code
    assert error["message"].startswith(names), error["message"]


def nothing_was_accepted(app) -> bool:
    cluster = services(app).cluster
    return cluster.stats()["orders_total"] == 0 and cluster.orders() == []


def test_a_nul_in_any_routes_path_parameter_is_refused_naming_it(door_app):
    client = door_app.test_client()
    with_parameters = [r for r in routes(door_app) if r[2]]
    assert {rule for _, rule, _ in with_parameters} >= {
        "/api/orders/<order_id>", "/api/orders/<order_id>/cancel",
        "/api/orders/<order_id>/retry", "/api/workers/<worker_id>/kill",
        "/api/workers/<worker_id>/drain"}
    for method, rule, arguments in with_parameters:
        response = client.open(url_of(rule, arguments, NUL), method=method)
        first = min(arguments, key=rule.index)  # the first in the path
        assert_refused(response, 400, "invalid_parameter",
                       f"path parameter {first} contains a NUL character")
    assert nothing_was_accepted(door_app)


def test_a_path_that_is_not_utf8_an_encoded_surrogate_is_refused(door_app):
    client = door_app.test_client()
    for method, rule, arguments in [r for r in routes(door_app) if r[2]]:
        response = client.open(url_of(rule, arguments, SURROGATE), method=method)
        assert_refused(response, 400, "invalid_parameter", "the path is not valid UTF-8")


@pytest.mark.parametrize("value", [NUL, SURROGATE])
def test_a_nul_or_surrogate_in_any_query_parameter_of_any_route_is_refused_naming_it(
        door_app, value):
    client = door_app.test_client()
    # The parameters the routes read, and one they do not: every one is checked.
    for name in ("customer", "error", "workflow", "status", "since", "limit", "cursor",
                 "after", "anything"):
        for method, rule, arguments in routes(door_app):
            url = url_of(rule, arguments, "x") + f"?{name}={value}"
            response = client.open(url, method=method)
            assert_refused(response, 400, "invalid_parameter", f"query parameter {name} ")
    assert nothing_was_accepted(door_app)


def test_the_searches_the_finding_named_are_refused_not_answered_500(door_app):
    client = door_app.test_client()
    for query in ("customer", "error", "workflow"):
        assert_refused(client.get(f"/api/orders?{query}=%00zzz"), 400, "invalid_parameter",
                       f"query parameter {query} contains a NUL character")
    assert_refused(client.get("/api/orders/a%00b"), 400, "invalid_parameter",
                   "path parameter order_id contains a NUL")
    assert_refused(client.post("/api/orders/a%00b/cancel"), 400, "invalid_parameter",
                   "path parameter order_id")


@pytest.mark.parametrize("customer", ["\u0000x", "\ud800", "ada\x00"])
def test_an_order_whose_customer_no_journal_can_hold_is_refused_422_at_submit(
        door_app, customer):
    client = door_app.test_client()
    response = client.post("/api/orders", json={**ORDER, "customer": customer})
    assert_refused(response, 422, "validation_error", "customer contains")
    item = {"sku": customer, "qty": 1, "price": 1.0}
    response = client.post("/api/orders", json={**ORDER, "items": [item]})
    assert_refused(response, 422, "validation_error", "items[0].sku contains")
    response = client.post("/api/orders", json={**ORDER, "workflow": customer})
    assert_refused(response, 422, "validation_error", "workflow contains")
    assert nothing_was_accepted(door_app)


def test_every_json_body_with_unstorable_text_is_refused_naming_the_field(door_app):
    client = door_app.test_client()
    for method, url, body, field in [
        ("POST", "/api/orders/bulk", {"count": 1, "workflow": "x\x00"}, "workflow"),
        ("POST", "/api/orders/cancel", {"ids": ["o-1", "o\x00"]}, "ids[1]"),
        ("POST", "/api/orders/retry", {"ids": ["\ud800"]}, "ids[0]"),
        ("POST", "/api/workers", {"count": 1, "kind": "thread\x00"}, "kind"),
        ("PUT", "/api/chaos", {"failure_rate": 0.1, "note\ud800": 1}, "a field name"),
        ("POST", "/api/orders/o-1/cancel", {"x": "\x00"}, "x"),
    ]:
        response = client.open(url, method=method, json=body)
        assert_refused(response, 422, "validation_error", f"{field}")
    assert nothing_was_accepted(door_app)


def test_an_idempotency_key_holding_a_nul_is_refused_and_creates_nothing(door_app):
    client = door_app.test_client()
    response = client.post("/api/orders", json=ORDER, headers={"Idempotency-Key": "k\x00ey"})
    assert_refused(response, 422, "validation_error", "Idempotency-Key contains a NUL")
    assert nothing_was_accepted(door_app)
    # A storable key still works: the door refuses only what no journal can hold.
    created = client.post("/api/orders", json=ORDER, headers={"Idempotency-Key": "k-1 é"})
    assert created.status_code == 201


def test_a_socketio_command_holding_a_nul_is_refused_with_the_same_error(tmp_path):
    with sqlite_app(tmp_path) as app:
        socketio = services(app).socketio
        client = socketio.test_client(app)
        try:
            answer = client.emit("submit_order", {**ORDER, "customer": "\x00"}, callback=True)
            assert answer["status"] == 422
            assert answer["error"]["message"].startswith("customer contains a NUL")
            answer = client.emit("kill_worker", "w-\ud800", callback=True)
            assert answer["status"] == 422
            assert answer["error"]["message"].startswith("the value contains a lone surrogate")
        finally:
            client.disconnect()
        assert nothing_was_accepted(app)


def test_text_a_journal_holds_passes_the_door(tmp_path):
    with sqlite_app(tmp_path) as app:
        client = app.test_client()
        created = client.post("/api/orders", json={**ORDER, "customer": "Zoë 😀 中文"})
        assert created.status_code == 201
        oid = created.json["id"]
        found = client.get(f"/api/orders?customer={quote('Zoë 😀')}")
        assert [o["id"] for o in found.json["orders"]] == [oid]
        assert client.get(f"/api/orders/{oid}").status_code == 200


def test_serve_refuses_a_tag_no_journal_can_hold_in_one_line(capsys, tmp_path):
    """`orderflow serve --tags`: bytes that are not UTF-8 come into argv as lone
    surrogates; the thread workers' tags are recorded, so they are refused at start."""
    from scheduler.cli import main

    argv = ["serve", "--port", "0", "--db", str(tmp_path / "x.db"), "--tags",
            "payments,eu\udcff"]
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "the tag eu\\udcff contains a lone surrogate" in err

"""The HTTP API's description is written from the messages the server reads with
(dashboard/api/schema.py), so what the document allows the server accepts and what it refuses
the server refuses; the drifts issue 20 found are each tested here, and the page's form limits
come from the same fields."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import jsonschema_rs
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from web import ORDER, app_over

from dashboard import services
from dashboard.api import actions
from dashboard.config import MAX_REQUEST_LINE
from scheduler import Cluster, Conflict

ITEM = ORDER["items"][0]
# What a request whose data fits the document may still be told: no such id, not in this
# state, or not now (the cluster here is full: a valid submit is refused 503, overloaded,
# after it was read, so nothing is ever made).
REFUSED_FOR_NOW = {404, 409, 503}


@pytest.fixture(scope="module")
def full_app():
    """An app over a cluster that never starts and is at its cap of unfinished orders, so
    nothing a request asks is carried out: a body the server reads is answered 503 (or 404,
    409), one it refuses 400 or 422. Workers are never added (threads): 409 instead; a bulk
    is refused as full before its (up to 10,000) demo orders are made."""
    cluster = Cluster(workers=0, max_unfinished_orders=1)

    def no_thread_workers(*args, **kwargs):
        raise Conflict("no workers are added in this test")

    submit_many = cluster.submit_many

    def full(orders, workflow=None):
        # The checks of a bulk, on its first order alone: the cluster is full either way.
        return submit_many(orders[:1], workflow)

    cluster.add_worker = no_thread_workers
    cluster.submit_many = full
    with pytest.MonkeyPatch.context() as patch, app_over(cluster, start=False) as app:
        patch.setattr(actions, "demo_order", lambda rng: ORDER)
        cluster.submit(ORDER)
        yield app


@pytest.fixture(scope="module")
def document(full_app):
    return full_app.test_client().get("/api/openapi.json").get_json()


def schema_of(document: dict, name: str) -> jsonschema_rs.Validator:
    return jsonschema_rs.validator_for({"$ref": f"#/components/schemas/{name}",
                                        "components": document["components"]})


def valid(document: dict, name: str, value: object) -> bool:
    return schema_of(document, name).is_valid(value)


# ---------------------------------------------------------------- the drifts of issue 20


class Inputs(HTMLParser):
    """Every <input> of a page, by id: its attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.found: dict[str, dict[str, str]] = {}

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "input":
            attributes = {k: v or "" for k, v in attrs}
            self.found[attributes.get("id", "")] = attributes


def page_inputs(app) -> dict[str, dict[str, str]]:
    parser = Inputs()
    parser.feed(app.test_client().get("/").get_data(as_text=True))
    return parser.found


def html_accepts(attributes: dict[str, str], value: str) -> bool:
    """What an HTML input's own checks allow, as a browser applies them (the pattern
    matches the whole value; a required input is not empty)."""
    if "required" in attributes and value == "":
        return False
    if "maxlength" in attributes and len(value) > int(attributes["maxlength"]):
        return False
    return "pattern" not in attributes or re.fullmatch(attributes["pattern"], value) is not None


@pytest.mark.parametrize("customer", [" ", "   ", "\t \u3000", "\ufeff"])
def test_a_whitespace_only_customer_is_refused_by_the_document_the_server_and_the_page(
        full_app, document, customer):
    body = {**ORDER, "customer": customer}
    assert not valid(document, "OrderInput", body)
    response = full_app.test_client().post("/api/orders", json=body)
    assert response.status_code == 422
    assert response.get_json()["error"]["message"].startswith("customer must be")
    field = page_inputs(full_app)["f-customer"]
    assert not html_accepts(field, customer)
    assert html_accepts(field, "ada") and valid(document, "OrderInput", ORDER)


def test_a_workflow_longer_than_the_cap_is_refused_by_the_document_and_the_server(
        full_app, document):
    client = full_app.test_client()
    long_name = "w" * 201
    assert not valid(document, "OrderInput", {**ORDER, "workflow": long_name})
    assert not valid(document, "DemoOrders", {"count": 1, "workflow": long_name})
    assert client.post("/api/orders", json={**ORDER, "workflow": long_name}).status_code == 422
    refused = client.post("/api/orders/bulk", json={"count": 1, "workflow": long_name})
    assert refused.status_code == 422


def test_an_orders_workflow_is_documented_as_one_of_the_servers_workflows(full_app, document):
    names = services(full_app).cluster.workflow_names()
    for message in ("OrderInput", "DemoOrders"):
        assert document["components"]["schemas"][message]["properties"]["workflow"][
            "enum"] == names
        assert not valid(document, message, {**ORDER, "count": 1, "workflow": "nope"}
                         if message == "DemoOrders" else {**ORDER, "workflow": "nope"})


@pytest.mark.parametrize(("message", "body"), [
    ("DemoOrders", {"count": 1, "extra": 1}),
    ("Chaos", {}),
    ("Chaos", {"failure_rate": 0.1, "seed": 1}),
    ("Chaos", {"failure_rate": None}),
    ("IdList", {"ids": []}),
    ("IdList", {"ids": ["o-1"], "all": True}),
    ("NewWorkers", {"count": 1, "colour": "red"}),
])
def test_what_the_server_refuses_in_bulk_chaos_and_worker_bodies_the_document_refuses_too(
        document, message, body):
    assert not valid(document, message, body)


def test_what_the_document_allows_in_a_chaos_body_the_server_accepts(full_app, document):
    client = full_app.test_client()
    for body in ({"latency_ms": [5, 1]}, {"failure_rate": 0.0}, {"hang_rate": 1}):
        assert valid(document, "Chaos", body)
        response = client.put("/api/chaos", json=body)
        assert response.status_code == 200, response.get_json()
    assert client.get("/api/chaos").get_json()["latency_ms"] == [1.0, 5.0]


def test_an_integer_written_with_a_zero_fraction_is_what_the_document_says_it_is(
        full_app, document):
    """JSON Schema counts 2.0 as an integer, so the server reads it as 2."""
    body = {**ORDER, "items": [{**ITEM, "qty": 2.0}], "priority": 1.0}
    assert valid(document, "OrderInput", body)
    client = full_app.test_client()
    # Read and accepted: refused only because the cluster is full.
    assert client.post("/api/orders", json=body).get_json()["error"]["code"] == "overloaded"
    assert client.post("/api/orders/bulk", json={"count": 2.0}).status_code == 503


def test_the_search_cursor_is_documented_as_the_integer_the_server_reads(full_app, document):
    (cursor,) = [p for p in document["paths"]["/api/orders"]["get"]["parameters"]
                 if p["name"] == "cursor"]
    assert cursor["schema"]["type"] == "integer"
    assert full_app.test_client().get("/api/orders?cursor=abc").status_code == 400


def test_the_pages_form_limits_are_the_documented_ones(full_app, document):
    inputs = page_inputs(full_app)
    schemas = document["components"]["schemas"]
    order, item = schemas["OrderInput"]["properties"], schemas["Item"]["properties"]
    assert inputs["f-customer"]["maxlength"] == str(order["customer"]["maxLength"])
    assert inputs["f-sku"]["maxlength"] == str(item["sku"]["maxLength"])
    for input_id, schema in [("f-qty", item["qty"]), ("f-price", item["price"]),
                             ("f-priority", order["priority"]),
                             ("f-demo-count", schemas["DemoOrders"]["properties"]["count"]),
                             ("c-failure", schemas["Chaos"]["properties"]["failure_rate"])]:
        assert float(inputs[input_id]["min"]) == schema["minimum"], input_id
        assert float(inputs[input_id]["max"]) == schema["maximum"], input_id
    assert {"f-customer", "f-sku", "f-qty", "f-price", "f-demo-count"} == {
        i for i, attributes in inputs.items()
        if "required" in attributes and i != "token-input"}


# ---------------------------------------------------------------- generated from the document


def body_operations(app) -> list:
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", app)
    found = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.body:
            found.append(operation)
    return found


def header_schemas(operation) -> dict[str, dict]:
    return {p["name"]: p["schema"]
            for p in operation.definition.raw.get("parameters", []) if p["in"] == "header"}


def fits(document: dict, operation, case) -> bool:
    """Whether the case's body (and headers) are what the document allows."""
    body = operation.body[0].definition["schema"] if operation.body else None
    if case.body is schemathesis.core.NOT_SET:  # no body (None is a JSON null)
        if operation.definition.raw["requestBody"].get("required", False):
            return False
    elif isinstance(case.body, bytes) or case.media_type != "application/json":
        return False  # not JSON at all
    elif not jsonschema_rs.validator_for({**body, "components": document["components"]}
                                         ).is_valid(case.body):
        return False
    for name, schema in header_schemas(operation).items():
        value = (case.headers or {}).get(name)
        if value is not None and not jsonschema_rs.validator_for(schema).is_valid(value):
            return False
    return True


def over_the_limit(response, limit: int) -> bool:
    """A 413 for a request whose body was larger than the server reads (MAX_CONTENT_LENGTH,
    which the document lists for every body: "Body larger than 1 MiB"): what a generated
    body of long strings in a long list can be, whether the document allows it or not."""
    length = response.request.headers.get("Content-Length")
    return response.status_code == 413 and length is not None and int(length) > limit


def body_cases(document: dict, operation, mode: GenerationMode, limit: int):
    """A hypothesis test of one operation: each body the document allows is read (never a
    400 or 422), each other one is refused 400, 415 or 422; one over the size `limit` may
    be refused 413 instead."""

    @settings(max_examples=40, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case):
        response = case.call()
        where = (case.method, case.formatted_path, case.body, case.headers)
        if over_the_limit(response, limit):
            return
        if fits(document, operation, case):
            assert response.status_code < 300 or response.status_code in REFUSED_FOR_NOW, (
                where, response.status_code, response.text[:300])
        else:
            assert response.status_code in (400, 415, 422), (
                where, response.status_code, response.text[:300])

    return run


# Every operation that takes a body, each its own test (and its own time limit: on a busy
# machine all of them in one test outran it).
BODY_OPERATIONS = [
    "POST /api/orders", "POST /api/orders/bulk", "POST /api/orders/cancel",
    "POST /api/orders/retry", "POST /api/orders/{order_id}/cancel",
    "POST /api/orders/{order_id}/retry", "POST /api/orders/{order_id}/signals/{name}",
    "POST /api/steps/{step}/pause", "POST /api/steps/{step}/resume", "POST /api/workers",
    "POST /api/workers/{worker_id}/drain", "POST /api/workers/{worker_id}/kill",
    "PUT /api/chaos", "PUT /api/steps/{step}/limits",
]


def test_the_body_operations_tested_one_by_one_are_every_one_the_document_has(full_app):
    assert sorted(f"{o.method.upper()} {o.path}" for o in body_operations(full_app)) == sorted(
        BODY_OPERATIONS)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
                         ids=["documented", "not_documented"])
@pytest.mark.parametrize("name", BODY_OPERATIONS)
def test_every_body_the_document_allows_is_read_and_every_other_is_refused_400_or_422(
        full_app, document, mode, name):
    (operation,) = [o for o in body_operations(full_app)
                    if f"{o.method.upper()} {o.path}" == name]
    body_cases(document, operation, mode, full_app.config["MAX_CONTENT_LENGTH"])()


def test_a_body_over_the_size_limit_is_refused_413_which_the_generated_cases_allow_for(
        full_app):
    """A negative case once generated a list of long strings over 1 MiB: refused 413, as
    the document says, which the generated test did not allow for."""
    limit = full_app.config["MAX_CONTENT_LENGTH"]
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", full_app)
    retry = schema["/api/orders/retry"]["POST"]
    big = retry.Case(body={"ids": ["o" * 1000] * (limit // 1000)}, media_type="application/json")
    refused = big.call()
    assert refused.status_code == 413 and over_the_limit(refused, limit)
    small = retry.Case(body={"ids": 7}, media_type="application/json")
    assert not over_the_limit(small.call(), limit)


def test_every_operation_lists_what_the_way_to_it_can_answer(document):
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            statuses = set(operation["responses"])
            assert {"400", "408", "414", "421", "429", "431", "500", "503"} <= statuses, path
            if method in ("post", "put"):
                assert "403" in statuses, (method, path)


def test_every_documented_request_line_fits_the_front_door(document):
    """The longest request line the document allows, each text parameter at its longest in
    the longest percent-encoding (12 bytes for a 4-byte character), is shorter than the
    front server's limit: its 414 is for what the document does not allow."""
    longest_number = len("-1.7976931348623157e+308")
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            line = len(method) + 1 + len(path) + len(" HTTP/1.1")
            query = 0
            for parameter in operation.get("parameters", []):
                schema = parameter["schema"]
                if "enum" in schema:
                    size = max(len(str(v)) for v in schema["enum"])
                elif schema["type"] == "string":
                    size = 12 * schema["maxLength"]
                else:
                    size = longest_number
                if parameter["in"] == "path":
                    line += size
                elif parameter["in"] == "query":
                    query += len(parameter["name"]) + 2 + size
            assert line + query <= MAX_REQUEST_LINE, (method, path, line + query)

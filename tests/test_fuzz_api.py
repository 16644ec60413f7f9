"""Fuzzing the HTTP API from its own OpenAPI document (schemathesis builds the requests,
hypothesis runs them): valid and hostile requests alike never get a 5xx and only statuses the
document lists, a request the document allows is accepted (or refused for a reason that is
not its shape: an unknown id, a state, a full cluster), a rejected request changes nothing,
and the cluster's invariants hold after every request. Bodies are held to the document both
ways in test_api_schema.py."""

from __future__ import annotations

import threading

import pytest
import schemathesis
from conftest import wait_for
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import response_schema_conformance, status_code_conformance
from web import ORDER, app_over, fast_cluster

# Accepted requests here create real work: bulk orders (up to 10,000 each) and workers (up to
# 32 threads each, or processes) are fuzzed with invalid input only; their valid forms have
# targeted tests in test_api_orders.py and test_api_workers.py.
EXPENSIVE = {("POST", "/api/orders/bulk"), ("POST", "/api/workers")}


@pytest.fixture(autouse=True)
def no_thread_leaks():
    """Accepted fuzzed requests may add workers to the shared cluster while a test runs;
    the module fixture checks instead that stopping it leaves no thread behind."""
    yield


@pytest.fixture(scope="module")
def fuzzed_app():
    before = set(threading.enumerate())
    # Heartbeats tolerant of a busy machine: a worker wrongly declared dead is not a bug,
    # but it would change the worker list under the "rejected requests change nothing" check.
    with app_over(fast_cluster(workers=2, latency_ms=(0, 1), heartbeat_interval=0.2,
                               heartbeat_timeout=5.0)) as app:
        cluster = app.extensions["orderflow"].cluster
        for _ in range(3):
            cluster.submit(ORDER)
        yield app
    wait_for(lambda: not [t for t in threading.enumerate() if t not in before and t.is_alive()],
             10, message="the fuzzed cluster's threads to end")


def operations(app, mode: GenerationMode):
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", app)
    for result in schema.get_all_operations():
        operation = result.ok()
        key = (operation.method.upper(), operation.path)
        if mode is GenerationMode.POSITIVE and key in EXPENSIVE:
            continue
        yield operation


def observable_state(app) -> tuple:
    """What a rejected request must not change (work in flight may change the rest)."""
    cluster = app.extensions["orderflow"].cluster
    kinds = ("order_cancelled", "order_retried", "worker_draining", "worker_added")
    events = sum(1 for e in cluster.events(after=0) if e["type"] in kinds)
    return (cluster.stats()["orders_total"], sorted(w["id"] for w in cluster.workers()),
            cluster.chaos.view(), events)


# What a request the document allows may still be told: no such id, not in this state, or
# not now. Never that its parameters or body are wrong (400, 422).
REFUSED_FOR_NOW = {404, 409, 503}


def check_case(app, case, mode: GenerationMode) -> None:
    before = observable_state(app)
    response = case.call()
    assert response.status_code < 500, (case.method, case.formatted_path, response.status_code,
                                        response.text[:300])
    if mode is GenerationMode.POSITIVE:
        assert response.status_code < 300 or response.status_code in REFUSED_FOR_NOW, (
            case.method, case.formatted_path, case.query, case.body, response.status_code,
            response.text[:300])
    # Every status a route answers is one its OpenAPI description lists.
    case.validate_response(response, checks=[status_code_conformance,
                                             response_schema_conformance])
    if 400 <= response.status_code < 500:
        assert observable_state(app) == before, (case.method, case.formatted_path, case.body)
        error = response.json()["error"]
        assert isinstance(error["code"], str) and error["message"]
    app.extensions["orderflow"].cluster.validate()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
                         ids=["valid", "hostile"])
def test_fuzzed_requests_never_get_a_5xx_and_rejected_ones_change_nothing(fuzzed_app, mode):
    checked = 0
    for operation in operations(fuzzed_app, mode):

        @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck),
                  database=None)
        @given(case=operation.as_strategy(generation_mode=mode))
        def fuzz(case):
            check_case(fuzzed_app, case, mode)

        try:
            fuzz()
        except Unsatisfiable:
            continue  # nothing in this operation can be made invalid (no parameters, no body)
        checked += 1
    # Every route of the API description was exercised (fewer have something to corrupt).
    assert checked >= (14 if mode is GenerationMode.POSITIVE else 8)

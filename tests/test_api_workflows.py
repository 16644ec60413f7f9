"""GET /api/workflows: every workflow a client may submit, its DAG and its steps' policies,
as the server's app declares them; each listed workflow is accepted by POST /api/orders."""

from __future__ import annotations

import pytest
from web import ORDER, app_over, fast_cluster

from scheduler import App, Cluster, TaskContext

POLICY_FIELDS = {"name", "deps", "doc", "async", "timeout", "retries", "backoff",
                 "max_in_flight", "rate", "burst", "tags", "breaker", "compensate", "delay"}


@pytest.fixture
def demo():
    with app_over(fast_cluster(), start=False) as app:
        yield app.test_client()


def shop() -> App:
    app = App("shop")

    @app.step(retries=4, backoff=(0.5, 8.0), timeout=10, max_in_flight=50, rate=100, burst=20,
              tags={"payments", "eu"})
    async def charge(ctx: TaskContext) -> dict:
        """Charge the card once per order."""
        return {}

    @app.step(timeout=30)
    def pick(ctx: TaskContext) -> dict:
        return {}

    @app.step()
    def label(ctx: TaskContext) -> dict:
        return {}

    @app.step(retries=0)
    def notify(ctx: TaskContext) -> dict:
        return {}

    app.workflow("express", ["charge", "notify"])
    app.workflow("checkout", {"charge": [], "pick": ["charge"], "label": ["charge"],
                              "notify": ["pick", "label"]})
    return app


@pytest.fixture
def custom():
    with app_over(Cluster(workers=0, app=shop(), heartbeat_interval=0.05,
                          heartbeat_timeout=0.3), start=False) as app:
        yield app.test_client()


def by_name(items: list[dict]) -> dict[str, dict]:
    return {item["name"]: item for item in items}


def test_the_demo_lists_its_chain_and_its_fan_out_with_every_steps_policy(demo):
    response = demo.get("/api/workflows")
    assert response.status_code == 200
    workflows = response.get_json()["workflows"]
    assert [w["name"] for w in workflows] == ["ecommerce", "ecommerce_invoiced"]
    chain, fan = (by_name(w["steps"]) for w in workflows)
    assert {s: chain[s]["deps"] for s in chain} == {
        "payment": [], "packing": ["payment"], "shipping": ["packing"]}
    assert {s: fan[s]["deps"] for s in fan} == {
        "payment": [], "packing": ["payment"], "invoice": ["payment"],
        "shipping": ["packing", "invoice"]}
    for step in [*chain.values(), *fan.values()]:
        assert set(step) == POLICY_FIELDS, step["name"]
        # The demo declares no limits: the server's defaults apply.
        assert (step["timeout"], step["retries"], step["max_in_flight"], step["rate"],
                step["tags"]) == (None, None, None, None, [])


def test_steps_come_in_an_order_where_each_follows_the_steps_it_waits_for(custom):
    for workflow in custom.get("/api/workflows").get_json()["workflows"]:
        seen: set[str] = set()
        for step in workflow["steps"]:
            assert set(step["deps"]) <= seen, (workflow["name"], step["name"])
            seen.add(step["name"])


def test_a_shops_app_shows_each_steps_declared_policy(custom):
    workflows = by_name(custom.get("/api/workflows").get_json()["workflows"])
    assert list(workflows) == ["checkout", "express"]  # by name
    checkout = by_name(workflows["checkout"]["steps"])
    assert [s for s in checkout] == ["charge", "pick", "label", "notify"]
    assert checkout["charge"] == {
        "name": "charge", "doc": "Charge the card once per order.", "async": True,
        "timeout": 10, "retries": 4, "backoff": [0.5, 8.0], "max_in_flight": 50,
        "rate": 100, "burst": 20, "tags": ["eu", "payments"], "breaker": None, "deps": [],
        "compensate": None, "delay": None}
    assert checkout["pick"]["timeout"] == 30 and checkout["pick"]["async"] is False
    assert checkout["pick"]["retries"] is None  # the cluster's retry policy
    assert checkout["notify"]["retries"] == 0
    # Fan-out after charge, fan-in at notify.
    assert checkout["pick"]["deps"] == checkout["label"]["deps"] == ["charge"]
    assert checkout["notify"]["deps"] == ["pick", "label"]
    express = by_name(workflows["express"]["steps"])
    assert express["notify"]["deps"] == ["charge"] and express["charge"]["rate"] == 100


def test_every_listed_workflow_is_accepted_with_its_steps(custom):
    for workflow in custom.get("/api/workflows").get_json()["workflows"]:
        response = custom.post("/api/orders", json={**ORDER, "workflow": workflow["name"]})
        assert response.status_code == 201, response.get_json()
        order = response.get_json()
        assert order["workflow"] == workflow["name"]
        assert list(order["tasks"]) == [s["name"] for s in workflow["steps"]]


@pytest.mark.parametrize(("path", "body"), [("/api/orders", {**ORDER, "workflow": "nope"}),
                                            ("/api/orders/bulk", {"count": 2, "workflow": "nope"})])
def test_an_unknown_workflow_is_refused_naming_the_valid_ones(custom, path, body):
    response = custom.post(path, json=body)
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "validation_error"
    assert "'nope'" in error["message"] and "known: checkout, express" in error["message"]
    assert custom.get("/api/orders").get_json()["orders"] == []


def test_the_openapi_document_describes_the_answer(demo):
    doc = demo.get("/api/openapi.json").get_json()
    schemas = doc["components"]["schemas"]
    step = demo.get("/api/workflows").get_json()["workflows"][0]["steps"][0]
    # A wait (a step with no handler) describes itself with `wait` and `on_timeout` too.
    assert set(schemas["WorkflowStep"]["properties"]) == set(step) | {"wait", "on_timeout"}
    ok = doc["paths"]["/api/workflows"]["get"]["responses"]["200"]
    assert ok["content"]["application/json"]["schema"]["properties"]["workflows"]["items"] == {
        "$ref": "#/components/schemas/Workflow"}


def test_a_clusters_own_step_policy_is_the_one_listed():
    # The cluster's `steps=` override the app's policy step by step, and the listing shows
    # what is in force, not what the app declared.
    from scheduler.engine.config import StepPolicy

    pick = StepPolicy(timeout=5, tags=frozenset({"eu"}))
    cluster = Cluster(workers=0, app=shop(), steps={"pick": pick},
                      heartbeat_interval=0.05, heartbeat_timeout=0.3)
    with app_over(cluster, start=False) as app:
        listed = by_name(app.test_client().get("/api/workflows").get_json()["workflows"])
    steps = by_name(listed["checkout"]["steps"])
    assert (steps["pick"]["timeout"], steps["pick"]["tags"]) == (5, ["eu"])
    assert (steps["charge"]["timeout"], steps["charge"]["retries"]) == (10, 4)

"""A shop's App: steps declared with their policy, workflows made of them, every mistake
refused when the module is imported, and the app run by a cluster."""

from __future__ import annotations

import sys
import textwrap

import pytest

from scheduler import App, AppError, Cluster, RetryPolicy, TaskContext, TaskError, load_app

ORDER = {"customer": "ada", "items": [{"sku": "A1", "qty": 1, "price": 5.0}]}
FAST = {"heartbeat_interval": 0.05, "heartbeat_timeout": 0.5}


def shop() -> App:
    app = App("shop")

    @app.step(retries=0, timeout=3, max_in_flight=5, rate=50, tags={"payments"})
    async def payment(ctx: TaskContext) -> dict:
        """Charge the card."""
        await ctx.asleep(0)
        return {"charged": ctx.idempotency_key}

    @app.step(retries=2, backoff=(0.001, 0.002))
    def packing(ctx: TaskContext) -> dict:
        return {"parcel": ctx.results["payment"]["charged"]}

    app.workflow("checkout", ["payment", "packing"])
    return app


def test_a_step_keeps_its_handler_and_its_policy_in_one_place():
    app = shop()
    payment = app.steps["payment"]
    assert payment.is_async and payment.doc == "Charge the card."
    policy = payment.policy
    assert (policy.timeout, policy.max_in_flight, policy.rate) == (3, 5, 50)
    assert policy.retry.max_retries == 0 and policy.tags == frozenset({"payments"})
    assert app.steps["packing"].policy.retry == RetryPolicy(2, 0.001, 0.002)
    [checkout] = app.describe()
    assert [s["name"] for s in checkout["steps"]] == ["payment", "packing"]
    assert checkout["steps"][1]["deps"] == ["payment"] and checkout["steps"][0]["tags"] == [
        "payments"]


def test_a_workflow_can_be_a_mapping_of_dependencies_with_fan_out_and_fan_in():
    app = App("fan")
    for name in ("a", "b", "c", "d"):
        app.add_step(name, lambda ctx: None)
    wf = app.workflow("diamond", {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]})
    assert wf.dependents["a"] == ("b", "c") and wf.deps["d"] == ("b", "c")


@pytest.mark.parametrize(
    ("build", "fragment"),
    [
        (lambda app: app.workflow("w", ["payment", "refund"]), "uses step 'refund'"),
        (lambda app: app.workflow("w", {"payment": ["packing"], "packing": ["payment"]}),
         "cycle"),
        (lambda app: app.add_step("payment", lambda ctx: None), "declared twice"),
        (lambda app: app.add_step("x", "not callable"), "no callable handler"),
        (lambda app: app.add_step("x", lambda ctx: None, timeout=-1), "step 'x': timeout"),
        (lambda app: app.add_step("x", lambda ctx: None, retries=-1), "max_retries"),
        (lambda app: app.add_step("x", lambda ctx: None, burst=3), "burst needs a rate"),
    ],
)
def test_a_broken_definition_is_refused_naming_what_is_wrong(build, fragment):
    app = App("shop")
    app.add_step("payment", lambda ctx: None)
    app.add_step("packing", lambda ctx: None)
    with pytest.raises(AppError, match=fragment):
        build(app)


def test_an_app_without_workflows_cannot_run():
    with pytest.raises(AppError, match="declares no workflow"):
        Cluster(workers=0, app=App("empty"))


def test_a_cluster_runs_the_apps_workflows_sync_and_async_steps_together():
    with Cluster(workers=2, app=shop(), tags={"payments"}, **FAST) as cluster:
        oid = cluster.submit(ORDER, "checkout")
        assert cluster.wait_until_idle(10)
        order = cluster.get_order(oid)
        assert order["status"] == "completed"
        assert order["tasks"]["packing"]["result"] == {"parcel": f"{oid}:payment"}
        assert cluster.workflow_names() == ["checkout"]
        assert cluster.config.policy("payment").max_in_flight == 5


def test_each_step_retries_under_its_own_policy():
    app = App("strict")
    calls = {"once": 0, "thrice": 0}

    @app.step(retries=0)
    def once(ctx):
        calls["once"] += 1
        raise TaskError("declined")

    @app.step(retries=2, backoff=(0.001, 0.001))
    def thrice(ctx):
        calls["thrice"] += 1
        raise TaskError("busy")

    app.workflow("one", ["once"])
    app.workflow("three", ["thrice"])
    with Cluster(workers=1, app=app, **FAST) as cluster:
        cluster.submit(ORDER, "one")
        cluster.submit(ORDER, "three")
        assert cluster.wait_until_idle(10)
    assert calls == {"once": 1, "thrice": 3}


def test_load_app_finds_an_app_in_a_module_and_refuses_anything_else(tmp_path, monkeypatch):
    (tmp_path / "myshop.py").write_text(textwrap.dedent("""
        from scheduler import App
        app = App("myshop")
        @app.step()
        def pay(ctx):
            return 1
        app.workflow("buy", ["pay"])
        def make():
            return app
        not_an_app = 42
        """))
    (tmp_path / "broken.py").write_text("raise RuntimeError('boom at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert load_app("myshop:app").name == "myshop"
        assert load_app("myshop:make").name == "myshop"
        for spec, fragment in [
            ("myshop", "module:attr"),
            ("nosuchmodule:app", "cannot import 'nosuchmodule'"),
            ("broken:app", "RuntimeError: boom at import"),
            ("myshop:not_an_app", "not an orderflow App"),
            ("myshop:missing", "not an orderflow App"),
        ]:
            with pytest.raises(AppError, match=fragment):
                load_app(spec)
    finally:
        for name in ("myshop", "broken"):
            sys.modules.pop(name, None)
